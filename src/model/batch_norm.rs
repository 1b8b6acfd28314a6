//! Batch normalisation as a Burn backend extension: two passes over the activation forward and
//! two backward on the CPU, where Burn's default takes about ten plus four layout copies.
//!
//! Why it exists: flex 0.22 keeps burn-backend's default `batch_norm_train`, which builds the
//! per-channel statistics out of tensor ops: `swap_dims(0, 1)` + reshape (a full NCHW → CNHW
//! copy) for the mean, a subtraction, a square, a second copy for the variance, then `batch_norm`
//! as four broadcast passes (sub, div, mul, add); its backward does the same with two more copies
//! and about six passes. Every convolution of resnet, densenet, mobilenet and efficientnet is
//! followed by one.
//!
//! The same layer as Burn's [`BatchNorm`] (parameters, running statistics and their momentum
//! update, biased batch variance, the training / inference choice), so checkpoints and training
//! are unchanged; values agree with Burn's to f32 rounding (sums here are in f64).
//!
//! - `Flex` f32: NCHW loops here, parallel over channels (statistics, gradient sums) and over
//!   planes (the element-wise passes). Other dtypes use Burn's ops.
//! - `Cube` (CUDA): Burn's own batch norm ops (the default bodies).
//! - `Autodiff<B>`: the training op is recorded as one node with three parents (x, γ, β) whose
//!   backward is [`BatchNormBackend::batch_norm_train_fused_backward`]; the running-statistics op
//!   keeps its default body, Burn's differentiable ops (Grad-CAM differentiates an eval-mode
//!   network).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::flex::FlexTensor;
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Cube, DType, Dispatch, Flex, TensorMetadata};
use burn::nn::BatchNorm;
use burn::prelude::*;
use rayon::prelude::*;

use super::extension::{extension_runs_on, f32_values};

/// Batch norm forward with batch statistics, its gradient, and the forward with given
/// statistics. The default bodies are Burn's own ops.
#[backend_extension(Flex, Cube, Autodiff)]
pub trait BatchNormBackend: Backend {
    /// `γ·(x − μ)/√(σ² + ε) + β` with μ and σ² (biased) over every axis but the channel axis 1;
    /// returns the output, μ and σ² (both `[C]`).
    fn batch_norm_train_fused(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let result = Self::batch_norm_train(x, gamma, beta, epsilon);
        (result.output, result.mean, result.variance)
    }

    /// The gradients of [`Self::batch_norm_train_fused`] with respect to x, γ and β, given the
    /// gradient of its output and the statistics it returned; returns them in that order.
    fn batch_norm_train_fused_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
        output_grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let grads = Self::batch_norm_train_backward(x, gamma, mean, variance, epsilon, output_grad);
        (grads.x_grad, grads.gamma_grad, grads.beta_grad)
    }

    /// `γ·(x − mean)/√(variance + ε) + β` with the given (running) statistics.
    fn batch_norm_with_stats(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        Self::batch_norm(x, gamma, beta, mean, variance, epsilon)
    }
}

/// CUDA (and every other cubecl runtime): Burn's kernels, unchanged.
impl BatchNormBackend for Cube {}

impl BatchNormBackend for Flex {
    fn batch_norm_train_fused(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        if !all_f32(&[&x, &gamma, &beta]) {
            let result = Flex::batch_norm_train(x, gamma, beta, epsilon);
            return (result.output, result.mean, result.variance);
        }
        let x = x.to_contiguous();
        let planes = Planes::of(&x);
        let values = f32_values(&x);
        let stats: Vec<(f64, f64)> = (0..planes.channels)
            .into_par_iter()
            .map(|channel| planes.mean_and_variance(values, channel))
            .collect();
        let (scale, shift) = affine(&stats, &f32_vec(gamma), &f32_vec(beta), epsilon);
        let mut output = vec![0.0f32; values.len()];
        planes.for_each_plane(&mut output, |plane, channel, out| {
            let input = &values[plane * planes.plane_len..][..planes.plane_len];
            let (a, b) = (scale[channel], shift[channel]);
            out.iter_mut().zip(input).for_each(|(y, &x)| *y = x * a + b);
        });
        let mean = stats.iter().map(|&(mean, _)| mean as f32).collect();
        let variance = stats.iter().map(|&(_, variance)| variance as f32).collect();
        (
            FlexTensor::from_data(TensorData::new(output, x.shape())),
            channel_tensor(mean),
            channel_tensor(variance),
        )
    }

    fn batch_norm_train_fused_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
        output_grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        if !all_f32(&[&x, &gamma, &mean, &variance, &output_grad]) {
            let grads = Flex::batch_norm_train_backward(x, gamma, mean, variance, epsilon, output_grad);
            return (grads.x_grad, grads.gamma_grad, grads.beta_grad);
        }
        assert_eq!(
            x.shape(),
            output_grad.shape(),
            "batch norm backward: input and gradient shapes differ"
        );
        let x = x.to_contiguous();
        let planes = Planes::of(&x);
        let (values, grad) = (f32_values(&x), output_grad.to_contiguous());
        let upstream = f32_values(&grad);
        let (mean, variance, gamma) = (f32_vec(mean), f32_vec(variance), f32_vec(gamma));
        let inv_std: Vec<f32> = variance
            .iter()
            .map(|&v| (1.0 / (f64::from(v) + epsilon).sqrt()) as f32)
            .collect();
        // Σ g and Σ g·x̂ per channel: β's and γ's gradients, and the two means the input
        // gradient subtracts.
        let sums: Vec<(f64, f64)> = (0..planes.channels)
            .into_par_iter()
            .map(|channel| {
                let (mut sum_grad, mut sum_grad_normalised) = (0.0f64, 0.0f64);
                for plane in planes.planes_of(channel) {
                    let range = plane * planes.plane_len..(plane + 1) * planes.plane_len;
                    let (mut g_sum, mut gx_sum) = (0.0f32, 0.0f32);
                    for (&g, &x) in upstream[range.clone()].iter().zip(&values[range]) {
                        g_sum += g;
                        gx_sum += g * (x - mean[channel]);
                    }
                    sum_grad += f64::from(g_sum);
                    sum_grad_normalised += f64::from(gx_sum) * f64::from(inv_std[channel]);
                }
                (sum_grad, sum_grad_normalised)
            })
            .collect();
        let count = planes.per_channel() as f64;
        let mut x_grad = vec![0.0f32; values.len()];
        planes.for_each_plane(&mut x_grad, |plane, channel, out| {
            let range = plane * planes.plane_len..(plane + 1) * planes.plane_len;
            let (sum_grad, sum_grad_normalised) = sums[channel];
            let (mu, istd) = (mean[channel], inv_std[channel]);
            let scale = gamma[channel] * istd;
            let mean_grad = (sum_grad / count) as f32;
            let mean_grad_normalised = (sum_grad_normalised / count) as f32;
            for ((dx, &g), &x) in out.iter_mut().zip(&upstream[range.clone()]).zip(&values[range]) {
                let normalised = (x - mu) * istd;
                *dx = scale * (g - mean_grad - normalised * mean_grad_normalised);
            }
        });
        let gamma_grad = sums.iter().map(|&(_, gx)| gx as f32).collect();
        let beta_grad = sums.iter().map(|&(g, _)| g as f32).collect();
        (
            FlexTensor::from_data(TensorData::new(x_grad, x.shape())),
            channel_tensor(gamma_grad),
            channel_tensor(beta_grad),
        )
    }

    fn batch_norm_with_stats(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        if !all_f32(&[&x, &gamma, &beta, &mean, &variance]) {
            return Flex::batch_norm(x, gamma, beta, mean, variance, epsilon);
        }
        let stats: Vec<(f64, f64)> = f32_vec(mean)
            .iter()
            .zip(f32_vec(variance))
            .map(|(&m, v)| (f64::from(m), f64::from(v)))
            .collect();
        let (scale, shift) = affine(&stats, &f32_vec(gamma), &f32_vec(beta), epsilon);
        let mut x = if x.is_contiguous() { x } else { x.to_contiguous() };
        let planes = Planes::of(&x);
        let apply = |plane: usize, out: &mut [f32]| {
            let channel = plane % planes.channels;
            let (a, b) = (scale[channel], shift[channel]);
            out.iter_mut().for_each(|v| *v = *v * a + b);
        };
        if let Some((start, end)) = x.layout().contiguous_offsets() {
            if let Some(values) = x.try_storage_mut::<f32>() {
                // Nobody else holds the input (plain inference): overwrite it.
                let values = &mut values[start..end];
                planes.for_each_plane(values, |plane, _, out| apply(plane, out));
                return x;
            }
        }
        let mut output = f32_values(&x).to_vec();
        planes.for_each_plane(&mut output, |plane, _, out| apply(plane, out));
        FlexTensor::from_data(TensorData::new(output, x.shape()))
    }
}

/// An NCHW (or any `[N, C, …]`) tensor seen as N·C contiguous planes, plane `n·C + c` holding
/// sample n's channel c.
struct Planes {
    channels: usize,
    plane_len: usize,
    count: usize,
}

impl Planes {
    fn of(x: &FlexTensor) -> Self {
        let shape = x.shape();
        assert!(
            shape.num_dims() >= 2,
            "batch norm needs [batch, channels, ...], got {shape:?}"
        );
        let channels = shape[1];
        let plane_len = (2..shape.num_dims()).map(|axis| shape[axis]).product();
        Planes {
            channels,
            plane_len,
            count: shape[0] * channels,
        }
    }

    fn planes_of(&self, channel: usize) -> impl Iterator<Item = usize> + '_ {
        (channel..self.count).step_by(self.channels.max(1))
    }

    fn per_channel(&self) -> usize {
        self.count / self.channels.max(1) * self.plane_len
    }

    /// μ and the biased σ² of one channel, two passes in f64 (f32 sums per plane).
    fn mean_and_variance(&self, values: &[f32], channel: usize) -> (f64, f64) {
        let plane = |index: usize| &values[index * self.plane_len..][..self.plane_len];
        let count = self.per_channel() as f64;
        let sum: f64 = self
            .planes_of(channel)
            .map(|p| f64::from(plane(p).iter().sum::<f32>()))
            .sum();
        let mean = sum / count;
        let mean32 = mean as f32;
        let squares: f64 = self
            .planes_of(channel)
            .map(|p| f64::from(plane(p).iter().map(|&x| (x - mean32) * (x - mean32)).sum::<f32>()))
            .sum();
        (mean, squares / count)
    }

    /// Calls `run(plane index, its channel, the plane's slice of output)` for every plane, in
    /// parallel when there is more than one chunk's worth of work.
    fn for_each_plane(&self, output: &mut [f32], run: impl Fn(usize, usize, &mut [f32]) + Sync) {
        if self.plane_len == 0 {
            return;
        }
        let body = |(plane, out): (usize, &mut [f32])| run(plane, plane % self.channels, out);
        if output.len() <= super::extension::CHUNK {
            output.chunks_mut(self.plane_len).enumerate().for_each(body);
        } else {
            output.par_chunks_mut(self.plane_len).enumerate().for_each(body);
        }
    }
}

/// Per channel, `a = γ/√(σ² + ε)` and `b = β − μ·a`, so that the output is `x·a + b`.
fn affine(stats: &[(f64, f64)], gamma: &[f32], beta: &[f32], epsilon: f64) -> (Vec<f32>, Vec<f32>) {
    stats
        .iter()
        .zip(gamma.iter().zip(beta))
        .map(|(&(mean, variance), (&g, &b))| {
            let scale = f64::from(g) / (variance + epsilon).sqrt();
            (scale as f32, (f64::from(b) - mean * scale) as f32)
        })
        .unzip()
}

fn all_f32(tensors: &[&FlexTensor]) -> bool {
    tensors.iter().all(|tensor| tensor.dtype() == DType::F32)
}

fn f32_vec(tensor: FlexTensor) -> Vec<f32> {
    f32_values(&tensor.to_contiguous()).to_vec()
}

fn channel_tensor(values: Vec<f32>) -> FlexTensor {
    let channels = values.len();
    FlexTensor::from_data(TensorData::new(values, [channels]))
}

/// The recorded training op's backward: the inner backend's fused gradient, registered for each
/// parent that is tracked.
#[derive(Debug)]
struct BatchNormTrainStep;

impl<B: BatchNormBackend> Backward<B, 3> for BatchNormTrainStep {
    /// x and γ (checkpointed), the batch statistics, ε.
    type State = (NodeId, NodeId, FloatTensor<B>, FloatTensor<B>, f64);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [x_node, gamma_node, beta_node] = ops.parents;
        let output_grad = grads.consume::<B>(&ops.node);
        let (x_state, gamma_state, mean, variance, epsilon) = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
        let gamma = checkpointer.retrieve_node_output::<FloatTensor<B>>(gamma_state);
        let (x_grad, gamma_grad, beta_grad) =
            B::batch_norm_train_fused_backward(x, gamma, mean, variance, epsilon, output_grad);
        for (node, grad) in [(x_node, x_grad), (gamma_node, gamma_grad), (beta_node, beta_grad)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

impl<B: BatchNormBackend, C: CheckpointStrategy> BatchNormBackend for Autodiff<B, C> {
    fn batch_norm_train_fused(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        // The statistics leave as constants: only the running averages use them.
        let untracked = <FloatTensor<Self>>::new;
        match BatchNormTrainStep
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let gamma_state = prep.checkpoint(&gamma);
                let (output, mean, variance) = B::batch_norm_train_fused(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                );
                let state = (x_state, gamma_state, mean.clone(), variance.clone(), epsilon);
                (prep.finish(state, output), untracked(mean), untracked(variance))
            }
            OpsKind::UnTracked(prep) => {
                let (output, mean, variance) = B::batch_norm_train_fused(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                );
                (prep.finish(output), untracked(mean), untracked(variance))
            }
        }
    }
    // The backward op is only called on the inner backend; the running-statistics op keeps its
    // default body (Burn's differentiable ops).
}

/// `norm.forward(x)`, through the fused ops on backends that have them: batch statistics and a
/// momentum update of the running statistics when `x` is on an autodiff device and the layer
/// trains (Burn's rule), the running statistics otherwise.
pub fn batch_norm<const D: usize>(norm: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    if !extension_runs_on(&device) {
        return norm.forward(x);
    }
    let [channels] = norm.gamma.dims();
    assert_eq!(
        x.dims()[1],
        channels,
        "batch norm over {channels} channels got {:?}",
        x.dims()
    );
    if !(device.is_autodiff() && norm.training.is_enabled()) {
        let output = <Dispatch as BatchNormBackend>::batch_norm_with_stats(
            x.into_dispatch(),
            norm.gamma.val().into_dispatch(),
            norm.beta.val().into_dispatch(),
            norm.running_mean.value().to_device(&device).into_dispatch(),
            norm.running_var.value().to_device(&device).into_dispatch(),
            norm.epsilon,
        );
        return Tensor::from_dispatch(output);
    }
    let (output, mean, variance) = <Dispatch as BatchNormBackend>::batch_norm_train_fused(
        x.into_dispatch(),
        norm.gamma.val().into_dispatch(),
        norm.beta.val().into_dispatch(),
        norm.epsilon,
    );
    let (mean, variance) = (Tensor::<1>::from_dispatch(mean), Tensor::<1>::from_dispatch(variance));
    let momentum = norm.momentum;
    let blend = |running: Tensor<1>, batch: Tensor<1>| {
        running
            .to_device(&device)
            .mul_scalar(1.0 - momentum)
            .add(batch.detach().mul_scalar(momentum))
            .detach()
    };
    norm.running_mean.update(blend(norm.running_mean.value_sync(), mean));
    norm.running_var.update(blend(norm.running_var.value_sync(), variance));
    Tensor::from_dispatch(output)
}

#[cfg(test)]
mod tests {
    use burn::module::{Param, RunningState};
    use burn::nn::BatchNormConfig;

    use super::*;

    /// Deterministic values of either sign with a per-position offset, so channels have
    /// different means and spreads.
    fn pattern(count: usize, salt: usize) -> Vec<f32> {
        (0..count)
            .map(|i| ((i * 7_919 + salt * 104_729) % 1_009) as f32 / 1_009.0 * 4.0 - 1.5 + (i % 7) as f32 * 0.3)
            .collect()
    }

    fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
        Tensor::from_data(TensorData::new(values, shape), device)
    }

    fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
        tensor.into_data().try_to_vec::<f32>().unwrap()
    }

    /// A batch norm layer with γ, β and running statistics set from patterns (not Burn's 1 / 0
    /// initial values, which would hide a swapped γ and β).
    fn layer(channels: usize, device: &Device) -> BatchNorm {
        let mut norm = BatchNormConfig::new(channels).init(device);
        norm.gamma = Param::from_tensor(tensor(pattern(channels, 1), [channels], device) + 0.5);
        norm.beta = Param::from_tensor(tensor(pattern(channels, 2), [channels], device));
        norm.running_mean = RunningState::new(tensor(pattern(channels, 3), [channels], device));
        norm.running_var = RunningState::new(tensor(pattern(channels, 4), [channels], device).abs() + 0.2);
        norm
    }

    /// The layer with its training flag off, on whatever device it is.
    fn eval_mode(mut norm: BatchNorm) -> BatchNorm {
        norm.training = Param::from_bool(false);
        norm
    }

    fn assert_close(actual: &[f32], expected: &[f32], tolerance: f32, what: &str) {
        assert_eq!(actual.len(), expected.len(), "{what}: length");
        let biggest = expected.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
            assert!(
                (a - e).abs() <= tolerance * biggest,
                "{what}: element {i}: {a} vs Burn's {e}"
            );
        }
    }

    /// Batch 1 and several, one channel and several, a 1×1 map, odd sizes, and one big enough
    /// for the parallel paths.
    fn shapes() -> Vec<[usize; 4]> {
        vec![
            [1, 1, 1, 5],
            [2, 3, 4, 5],
            [3, 8, 1, 1],
            [4, 16, 9, 7],
            [2, 5, 130, 131],
        ]
    }

    #[test]
    fn training_forward_gradients_and_running_statistics_match_burns_layer() {
        let device = Device::flex().autodiff();
        for shape in shapes() {
            let [_, channels, _, _] = shape;
            let count = shape.iter().product();
            let (ours, burns) = (layer(channels, &device), layer(channels, &device));
            let upstream = tensor(pattern(count, 9), shape, &device);
            let x = tensor(pattern(count, 5), shape, &device).require_grad();
            let x_ref = tensor(pattern(count, 5), shape, &device).require_grad();

            let output = batch_norm(&ours, x.clone());
            let output_ref = burns.forward(x_ref.clone());
            assert_close(
                &values(output.clone()),
                &values(output_ref.clone()),
                2e-6,
                &format!("output {shape:?}"),
            );

            let grads = (output * upstream.clone()).sum().backward();
            let grads_ref = (output_ref * upstream).sum().backward();
            let grad = |t: &Tensor<4>, g| values(t.grad(g).expect("input gradient"));
            assert_close(
                &grad(&x, &grads),
                &grad(&x_ref, &grads_ref),
                1e-5,
                &format!("input gradient {shape:?}"),
            );
            let param_grad = |norm: &BatchNorm, g, of_gamma: bool| {
                let param = if of_gamma { norm.gamma.val() } else { norm.beta.val() };
                values(param.grad(g).expect("parameter gradient"))
            };
            for of_gamma in [true, false] {
                assert_close(
                    &param_grad(&ours, &grads, of_gamma),
                    &param_grad(&burns, &grads_ref, of_gamma),
                    1e-5,
                    &format!("{} gradient {shape:?}", if of_gamma { "γ" } else { "β" }),
                );
            }
            assert_close(
                &values(ours.running_mean.value()),
                &values(burns.running_mean.value()),
                1e-6,
                "running mean",
            );
            assert_close(
                &values(ours.running_var.value()),
                &values(burns.running_var.value()),
                1e-6,
                "running variance",
            );
        }
    }

    #[test]
    fn inference_matches_burns_layer_in_place_shared_and_transposed() {
        for device in [Device::flex(), Device::flex().autodiff()] {
            for shape in shapes() {
                let [_, channels, _, _] = shape;
                let count = shape.iter().product();
                let norm = layer(channels, &device).no_grad();
                // On an autodiff device, eval mode is a layer whose training flag is off.
                let norm = eval_mode(norm);
                let input = tensor(pattern(count, 6), shape, &device);
                let expected = values(norm.forward(input.clone()));
                assert_close(
                    &values(batch_norm(&norm, input.clone())),
                    &expected,
                    2e-6,
                    "shared input",
                );
                assert_close(
                    &values(batch_norm(&norm, tensor(pattern(count, 6), shape, &device))),
                    &expected,
                    2e-6,
                    "input overwritten in place",
                );
                assert_eq!(values(input), pattern(count, 6), "a shared input is left as it was");
            }
        }
        // Not contiguous: NHWC memory seen as NCHW.
        let device = Device::flex();
        let norm = layer(6, &device);
        let x = tensor(pattern(2 * 5 * 7 * 6, 7), [2, 5, 7, 6], &device).permute([0, 3, 1, 2]);
        assert_close(
            &values(batch_norm(&norm, x.clone())),
            &values(norm.forward(x)),
            2e-6,
            "permuted",
        );
    }

    #[test]
    fn eval_mode_on_an_autodiff_device_is_differentiable_and_leaves_statistics_alone() {
        // Grad-CAM differentiates an eval-mode network with respect to its activations.
        let device = Device::flex().autodiff();
        let shape = [2, 4, 6, 5];
        let count = shape.iter().product();
        let ours = eval_mode(layer(4, &device));
        let burns = eval_mode(layer(4, &device));
        let x = tensor(pattern(count, 8), shape, &device).require_grad();
        let x_ref = tensor(pattern(count, 8), shape, &device).require_grad();
        let grads = (batch_norm(&ours, x.clone()) * 3.0).sum().backward();
        let grads_ref = (burns.forward(x_ref.clone()) * 3.0).sum().backward();
        assert_close(
            &values(x.grad(&grads).unwrap()),
            &values(x_ref.grad(&grads_ref).unwrap()),
            1e-6,
            "gradient",
        );
        assert_eq!(
            values(ours.running_mean.value()),
            pattern(4, 3),
            "running mean untouched"
        );
    }

    #[test]
    fn flex_and_autodiff_flex_go_through_the_extension() {
        // Otherwise the tests above would compare Burn's layer with itself.
        assert!(extension_runs_on(&Device::flex()));
        assert!(extension_runs_on(&Device::flex().autodiff()));
    }
}
