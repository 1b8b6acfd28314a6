//! Depthwise 2-D convolution (one k×k filter per channel: groups = in = out channels) as a Burn
//! backend extension, with a CPU backward of its own, and the layer MobileNetV2 and
//! EfficientNet-B0 build their depthwise stages from.
//!
//! Why it exists: Burn 0.22's flex backend has a fast depthwise *forward*, but no depthwise
//! gradients. The weight gradient falls back to burn-backend's per-group loop (a slice, a conv2d
//! and a slice-assign for every channel: 960 tiny convolutions for one 960-channel layer, every
//! step) and the input gradient goes through a grouped transposed convolution. Those dominated
//! mobilenet-v2 / efficientnet-b0 training on the CPU.
//!
//! How it is wired: [`DepthwiseConv2dBackend`] is declared with Burn's `#[backend_extension]`
//! macro, which generates the `Dispatch` implementation that routes a call to the backend a
//! tensor lives on:
//! - `Flex` (CPU): the forward is flex's own conv2d (already a direct depthwise kernel); the two
//!   gradients are direct f32 loops here, parallel with rayon. Other dtypes use Burn's own ops.
//! - `Cube` (CUDA): Burn's own `conv2d` / `conv2d_x_backward` / `conv2d_weight_backward` with
//!   groups = channels, i.e. exactly what CUDA ran before this file existed.
//! - `Autodiff<B>`: records the op and, on the way back, asks `B` for both gradients.
//!
//! [`depthwise_conv2d`] sends any other backend straight to Burn's grouped `conv2d`, because the
//! generated dispatch panics on a backend the extension does not list. Only what the models need
//! is supported: square stride and symmetric padding, no dilation, no bias.

use std::ops::Range;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::flex::FlexTensor;
use burn::backend::ops::{ConvOptions, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Cube, DType, Dispatch, Flex, TensorMetadata};
use burn::module::Param;
use burn::nn::Initializer;
use burn::prelude::*;
use rayon::prelude::*;

use super::extension::{extension_runs_on, f32_values};

/// A depthwise convolution: `x` `[N, C, H, W]`, `weight` `[C, 1, kh, kw]`, the same `stride` on
/// both axes and `padding` zeros on every side, dilation 1. The default bodies are Burn's own
/// grouped convolution ops; a backend overrides what it can do faster.
#[backend_extension(Flex, Cube, Autodiff)]
pub trait DepthwiseConv2dBackend: Backend {
    /// The convolution: `[N, C, H_out, W_out]`.
    fn depthwise_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        padding: usize,
    ) -> FloatTensor<Self> {
        let options = conv_options(&weight, stride, padding);
        <Self as ModuleOps<Self>>::conv2d(x, weight, None, options)
    }

    /// Gradient of a loss with respect to `x`, given its gradient with respect to the output.
    fn depthwise_conv2d_x_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        stride: usize,
        padding: usize,
    ) -> FloatTensor<Self> {
        let options = conv_options(&weight, stride, padding);
        <Self as ModuleOps<Self>>::conv2d_x_backward(x, weight, output_grad, options)
    }

    /// Gradient of a loss with respect to `weight`, given its gradient with respect to the output.
    fn depthwise_conv2d_weight_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        stride: usize,
        padding: usize,
    ) -> FloatTensor<Self> {
        let options = conv_options(&weight, stride, padding);
        <Self as ModuleOps<Self>>::conv2d_weight_backward(x, weight, output_grad, options)
    }
}

/// Burn's options for the same convolution: one group per channel.
fn conv_options<P: TensorMetadata>(weight: &P, stride: usize, padding: usize) -> ConvOptions<2> {
    let channels = weight.shape().dims::<4>()[0];
    ConvOptions::new([stride, stride], [padding, padding], [1, 1], channels)
}

/// CUDA (and every other cubecl runtime): Burn's kernels, unchanged.
impl DepthwiseConv2dBackend for Cube {}

impl DepthwiseConv2dBackend for Flex {
    // The forward is the default: flex's conv2d already takes a direct depthwise path.

    fn depthwise_conv2d_x_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        stride: usize,
        padding: usize,
    ) -> FloatTensor<Self> {
        if !all_f32(&[&x, &weight, &output_grad]) {
            let options = conv_options(&weight, stride, padding);
            return Flex::conv2d_x_backward(x, weight, output_grad, options);
        }
        let geometry = Geometry::new(&x, &weight, stride, padding);
        let (weight, output_grad) = (weight.to_contiguous(), output_grad.to_contiguous());
        let grad = input_grad_f32(&geometry, f32_values(&weight), f32_values(&output_grad));
        let shape = [geometry.batch, geometry.channels, geometry.in_h, geometry.in_w];
        FlexTensor::from_data(TensorData::new(grad, shape))
    }

    fn depthwise_conv2d_weight_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        stride: usize,
        padding: usize,
    ) -> FloatTensor<Self> {
        if !all_f32(&[&x, &weight, &output_grad]) {
            let options = conv_options(&weight, stride, padding);
            return Flex::conv2d_weight_backward(x, weight, output_grad, options);
        }
        let geometry = Geometry::new(&x, &weight, stride, padding);
        let (x, output_grad) = (x.to_contiguous(), output_grad.to_contiguous());
        let grad = weight_grad_f32(&geometry, f32_values(&x), f32_values(&output_grad));
        let shape = [geometry.channels, 1, geometry.kernel_h, geometry.kernel_w];
        FlexTensor::from_data(TensorData::new(grad, shape))
    }
}

fn all_f32(tensors: &[&FlexTensor]) -> bool {
    tensors.iter().all(|tensor| tensor.dtype() == DType::F32)
}

impl<B: DepthwiseConv2dBackend, C: CheckpointStrategy> DepthwiseConv2dBackend for Autodiff<B, C> {
    fn depthwise_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        padding: usize,
    ) -> FloatTensor<Self> {
        /// The backward step: both gradients from the inner backend's own depthwise ops.
        #[derive(Debug)]
        struct DepthwiseConv2dStep;

        impl<B: DepthwiseConv2dBackend> Backward<B, 2> for DepthwiseConv2dStep {
            /// The checkpointed input and weight (recomputed if a checkpointing strategy dropped
            /// them), stride and padding.
            type State = (NodeId, NodeId, usize, usize);

            fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
                let [node_x, node_weight] = ops.parents;
                let output_grad = grads.consume::<B>(&ops.node);
                let (x_id, weight_id, stride, padding) = ops.state;
                let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_id);
                let weight = checkpointer.retrieve_node_output::<FloatTensor<B>>(weight_id);

                if let Some(node) = node_x {
                    let grad =
                        B::depthwise_conv2d_x_grad(x.clone(), weight.clone(), output_grad.clone(), stride, padding);
                    grads.register::<B>(node.id, grad);
                }
                if let Some(node) = node_weight {
                    let grad = B::depthwise_conv2d_weight_grad(x, weight, output_grad, stride, padding);
                    grads.register::<B>(node.id, grad);
                }
            }
        }

        // Compute-bound: under gradient checkpointing its output is kept, never recomputed; x and
        // the weight are checkpointed for the backward step.
        match DepthwiseConv2dStep
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_id = prep.checkpoint(&x);
                let weight_id = prep.checkpoint(&weight);
                let output = B::depthwise_conv2d(x.into_primitive(), weight.into_primitive(), stride, padding);
                prep.finish((x_id, weight_id, stride, padding), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::depthwise_conv2d(
                x.into_primitive(),
                weight.into_primitive(),
                stride,
                padding,
            )),
        }
    }
    // The gradient ops keep the default bodies (Burn's differentiable grouped ops): only a second
    // derivative would use them.
}

/// Depthwise convolution of `x` `[N, C, H, W]` with `weight` `[C, 1, kh, kw]`: `stride` on both
/// axes, `padding` zeros on every side. Differentiable; on the CPU its backward is the fast one
/// in this file.
pub fn depthwise_conv2d(x: Tensor<4>, weight: Tensor<4>, stride: usize, padding: usize) -> Tensor<4> {
    let [_, channels, _, _] = x.dims();
    let [filters, per_group, _, _] = weight.dims();
    assert!(
        filters == channels && per_group == 1,
        "depthwise_conv2d: weight {:?} does not fit {channels} channels (expected [{channels}, 1, kh, kw])",
        weight.dims()
    );
    if !extension_runs_on(&x.device()) {
        let options = ConvOptions::new([stride, stride], [padding, padding], [1, 1], channels);
        return burn::tensor::module::conv2d(x, weight, None, options);
    }
    Tensor::from_dispatch(<Dispatch as DepthwiseConv2dBackend>::depthwise_conv2d(
        x.into_dispatch(),
        weight.into_dispatch(),
        stride,
        padding,
    ))
}

/// A bias-free depthwise convolution layer (a norm always follows) with "same" padding of
/// `kernel / 2`, initialised like [`super::layers::conv`]: He/Kaiming normal over fan-out, which
/// for one filter per channel is `kernel²`. Its one parameter, `weight` `[C, 1, k, k]`, has the
/// name and shape of Burn's `Conv2d` weight with `groups = C`, so records are interchangeable.
#[derive(Module, Debug)]
pub struct DepthwiseConv2d {
    pub weight: Param<Tensor<4>>,
    stride: usize,
    padding: usize,
}

impl DepthwiseConv2d {
    pub fn new(channels: usize, kernel: usize, stride: usize, device: &Device) -> Self {
        let taps = kernel * kernel;
        let initializer = Initializer::KaimingNormal {
            gain: std::f64::consts::SQRT_2,
            fan_out_only: true,
        };
        DepthwiseConv2d {
            weight: initializer.init_with([channels, 1, kernel, kernel], Some(taps), Some(taps), device),
            stride,
            padding: kernel / 2,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        depthwise_conv2d(x, self.weight.val(), self.stride, self.padding)
    }
}

/// Sizes of one depthwise convolution.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    batch: usize,
    channels: usize,
    in_h: usize,
    in_w: usize,
    out_h: usize,
    out_w: usize,
    kernel_h: usize,
    kernel_w: usize,
    stride: usize,
    padding: usize,
}

impl Geometry {
    fn new<P: TensorMetadata>(x: &P, weight: &P, stride: usize, padding: usize) -> Self {
        let [batch, channels, in_h, in_w] = x.shape().dims::<4>();
        let [filters, per_group, kernel_h, kernel_w] = weight.shape().dims::<4>();
        assert!(
            filters == channels && per_group == 1,
            "depthwise: weight [{filters}, {per_group}, ..] does not fit {channels} channels"
        );
        assert!(stride > 0, "depthwise: stride must be positive");
        let out = |input: usize, kernel: usize| {
            assert!(
                input + 2 * padding >= kernel,
                "depthwise: kernel larger than the padded input"
            );
            (input + 2 * padding - kernel) / stride + 1
        };
        Geometry {
            batch,
            channels,
            in_h,
            in_w,
            out_h: out(in_h, kernel_h),
            out_w: out(in_w, kernel_w),
            kernel_h,
            kernel_w,
            stride,
            padding,
        }
    }

    /// For each kernel row, the output rows whose input row (`o * stride + tap - padding`) lies
    /// inside the image; the loops below then need no padding checks.
    fn rows(&self) -> Vec<Range<usize>> {
        (0..self.kernel_h)
            .map(|tap| valid_outputs(tap, self.stride, self.padding, self.in_h, self.out_h))
            .collect()
    }

    /// As [`Self::rows`], for kernel columns.
    fn cols(&self) -> Vec<Range<usize>> {
        (0..self.kernel_w)
            .map(|tap| valid_outputs(tap, self.stride, self.padding, self.in_w, self.out_w))
            .collect()
    }
}

/// Output positions `o` along one axis whose input index `o * stride + tap - padding` is in
/// `0..input`, i.e. `padding <= o * stride + tap < input + padding`.
fn valid_outputs(tap: usize, stride: usize, padding: usize, input: usize, output: usize) -> Range<usize> {
    let start = padding.saturating_sub(tap).div_ceil(stride);
    let end = (input + padding).saturating_sub(tap).div_ceil(stride).min(output);
    start.min(end)..end
}

/// `dx[n, c, ih, iw] = Σ dy[n, c, oh, ow] · w[c, kh, kw]` over `ih = oh·s + kh − p` (and the same
/// for columns). Each (n, c) plane is independent, so planes run in parallel. Output rows are the
/// outer loop: every kernel tap adds one row of `dy` into one of the few input rows under it, so
/// the rows being written stay in cache even when a whole plane does not.
fn input_grad_f32(geometry: &Geometry, weight: &[f32], output_grad: &[f32]) -> Vec<f32> {
    let g = *geometry;
    let (rows, cols) = (g.rows(), g.cols());
    let taps = g.kernel_h * g.kernel_w;
    let in_plane = g.in_h * g.in_w;
    let out_plane = g.out_h * g.out_w;
    let mut grad = vec![0.0f32; g.batch * g.channels * in_plane];
    grad.par_chunks_mut(in_plane.max(1))
        .enumerate()
        .for_each(|(plane, dx)| {
            let channel = plane % g.channels;
            let w = &weight[channel * taps..(channel + 1) * taps];
            let dy = &output_grad[plane * out_plane..(plane + 1) * out_plane];
            let mut spread = SpreadRow::new(&g);
            for oh in 0..g.out_h {
                let dy_row = spread.of(&dy[oh * g.out_w..(oh + 1) * g.out_w]);
                for (kh, rows) in rows.iter().enumerate() {
                    if !rows.contains(&oh) {
                        continue;
                    }
                    let ih = oh * g.stride + kh - g.padding;
                    let dx_row = &mut dx[ih * g.in_w..(ih + 1) * g.in_w];
                    for (kw, cols) in cols.iter().enumerate() {
                        if cols.is_empty() {
                            continue;
                        }
                        let tap = w[kh * g.kernel_w + kw];
                        let (up, iw_start) = spread_run(&g, dy_row, cols, kw);
                        for (d, &u) in dx_row[iw_start..iw_start + up.len()].iter_mut().zip(up) {
                            *d += tap * u;
                        }
                    }
                }
            }
        });
    grad
}

/// A row of `dy` laid out on the input's column grid: at stride 1 the row itself; at stride `s`
/// its values `s` apart with zeros between. The taps then read and write contiguous runs, which
/// vectorise, instead of every `s`-th element, which does not (twice the multiplications at
/// stride 2, but several times faster).
struct SpreadRow {
    stride: usize,
    row: Vec<f32>,
}

impl SpreadRow {
    fn new(geometry: &Geometry) -> Self {
        let len = if geometry.stride == 1 {
            0
        } else {
            geometry.out_w * geometry.stride
        };
        SpreadRow {
            stride: geometry.stride,
            row: vec![0.0; len],
        }
    }

    /// `dy_row` spread out; index `ow · stride` holds `dy_row[ow]`.
    fn of<'a>(&'a mut self, dy_row: &'a [f32]) -> &'a [f32] {
        if self.stride == 1 {
            return dy_row;
        }
        for (slot, &value) in self.row.chunks_exact_mut(self.stride).zip(dy_row) {
            slot[0] = value;
        }
        &self.row
    }
}

/// For kernel column `kw`, the part of a spread `dy` row (see [`SpreadRow`]) that lands inside
/// the input row, and the input column its first element lands on.
fn spread_run<'a>(geometry: &Geometry, spread_row: &'a [f32], cols: &Range<usize>, kw: usize) -> (&'a [f32], usize) {
    let g = geometry;
    let first = cols.start * g.stride;
    let last = (cols.end - 1) * g.stride;
    (&spread_row[first..=last], first + kw - g.padding)
}

/// `dw[c, kh, kw] = Σ_n Σ dy[n, c, oh, ow] · x[n, c, oh·s + kh − p, ow·s + kw − p]`. Channels run
/// in parallel, each summing over the batch. Output rows are the outer loop so that one row of
/// `dy` and the few input rows under it stay in cache while every kernel tap takes its dot
/// product over them: each output position is visited once per tap, with no per-channel Burn
/// calls.
fn weight_grad_f32(geometry: &Geometry, x: &[f32], output_grad: &[f32]) -> Vec<f32> {
    let g = *geometry;
    let (rows, cols) = (g.rows(), g.cols());
    let taps = g.kernel_h * g.kernel_w;
    let in_plane = g.in_h * g.in_w;
    let out_plane = g.out_h * g.out_w;
    let mut grad = vec![0.0f32; g.channels * taps];
    grad.par_chunks_mut(taps.max(1)).enumerate().for_each(|(channel, dw)| {
        let mut spread = SpreadRow::new(&g);
        for n in 0..g.batch {
            let plane = n * g.channels + channel;
            let xs = &x[plane * in_plane..(plane + 1) * in_plane];
            let dy = &output_grad[plane * out_plane..(plane + 1) * out_plane];
            for oh in 0..g.out_h {
                let dy_row = spread.of(&dy[oh * g.out_w..(oh + 1) * g.out_w]);
                for (kh, rows) in rows.iter().enumerate() {
                    if !rows.contains(&oh) {
                        continue;
                    }
                    let ih = oh * g.stride + kh - g.padding;
                    let x_row = &xs[ih * g.in_w..(ih + 1) * g.in_w];
                    for (kw, cols) in cols.iter().enumerate() {
                        if cols.is_empty() {
                            continue;
                        }
                        let (up, iw_start) = spread_run(&g, dy_row, cols, kw);
                        dw[kh * g.kernel_w + kw] += dot(up, &x_row[iw_start..iw_start + up.len()]);
                    }
                }
            }
        }
    });
    grad
}

/// Partial sums per dot product: independent accumulators the compiler can keep in one vector
/// register (a single running sum is a dependency chain it may not reorder).
const LANES: usize = 8;

/// Dot product of two equally long slices, in [`LANES`] partial sums.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut partial = [0.0f32; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for lane in 0..LANES {
            partial[lane] += x[lane] * y[lane];
        }
    }
    partial.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::module::conv2d;

    const TOLERANCE: f32 = 1e-4;

    /// Deterministic values in [-1, 1] that differ per position and per `salt`.
    fn pattern(shape: [usize; 4], salt: usize, device: &Device) -> Tensor<4> {
        let count = shape.iter().product::<usize>();
        let values: Vec<f32> = (0..count)
            .map(|i| (((i * 7_919 + salt * 104_729) % 2_003) as f32 / 1_001.5) - 1.0)
            .collect();
        Tensor::from_data(TensorData::new(values, shape), device)
    }

    fn values(tensor: Tensor<4>) -> Vec<f32> {
        tensor.into_data().try_to_vec::<f32>().unwrap()
    }

    fn assert_close(actual: Tensor<4>, expected: Tensor<4>, what: &str) {
        assert_eq!(actual.dims(), expected.dims(), "{what}: shape");
        let (actual, expected) = (values(actual), values(expected));
        let worst = actual
            .iter()
            .zip(&expected)
            .map(|(a, e)| (a - e).abs() / e.abs().max(1.0))
            .fold(0.0f32, f32::max);
        assert!(worst <= TOLERANCE, "{what}: largest difference {worst}");
    }

    /// (batch, channels, height, width, kernel, stride, padding): every combination of C in
    /// {1, 3, 8}, kernel 3 and 5, stride 1 and 2, padding 0, 1 and 2, batch 1 and 2, H ≠ W, and a
    /// few wide images.
    fn cases() -> Vec<(usize, usize, usize, usize, usize, usize, usize)> {
        let mut cases = Vec::new();
        for channels in [1, 3, 8] {
            for kernel in [3, 5] {
                for stride in [1, 2] {
                    for padding in [0, 1, 2] {
                        for batch in [1, 2] {
                            let (h, w) = if batch == 1 { (9, 7) } else { (6, 11) };
                            cases.push((batch, channels, h, w, kernel, stride, padding));
                        }
                    }
                }
            }
        }
        // Rows of 8+ outputs, so the dot products' full-lane chunks run too (with a stride-2 row
        // that ends exactly at the last input column).
        cases.extend([(2, 3, 10, 32, 3, 2, 1), (1, 8, 12, 33, 5, 2, 2), (2, 4, 5, 40, 3, 1, 1)]);
        cases
    }

    fn burn_options(channels: usize, stride: usize, padding: usize) -> ConvOptions<2> {
        ConvOptions::new([stride, stride], [padding, padding], [1, 1], channels)
    }

    #[test]
    fn forward_matches_burns_grouped_conv2d() {
        let device = Device::flex();
        for (n, c, h, w, k, s, p) in cases() {
            let x = pattern([n, c, h, w], 1, &device);
            let weight = pattern([c, 1, k, k], 2, &device);
            let expected = conv2d(x.clone(), weight.clone(), None, burn_options(c, s, p));
            let actual = depthwise_conv2d(x, weight, s, p);
            assert_close(actual, expected, &format!("forward n{n} c{c} {h}x{w} k{k} s{s} p{p}"));
        }
    }

    #[test]
    fn gradients_match_burns_grouped_conv2d() {
        let device = Device::flex().autodiff();
        for (n, c, h, w, k, s, p) in cases() {
            let case = format!("n{n} c{c} {h}x{w} k{k} s{s} p{p}");
            // Both sides get their own leaves with the same values, and the same upstream
            // gradient (a fixed pattern, so every output position weighs differently).
            let leaves = || {
                (
                    pattern([n, c, h, w], 3, &device).require_grad(),
                    pattern([c, 1, k, k], 4, &device).require_grad(),
                )
            };
            let (x, weight) = leaves();
            let output = depthwise_conv2d(x.clone(), weight.clone(), s, p);
            let upstream = pattern(output.dims(), 5, &device);
            let grads = (output * upstream.clone()).sum().backward();

            let (x_ref, weight_ref) = leaves();
            let expected = conv2d(x_ref.clone(), weight_ref.clone(), None, burn_options(c, s, p));
            let grads_ref = (expected * upstream).sum().backward();

            assert_close(
                x.grad(&grads).expect("x gradient"),
                x_ref.grad(&grads_ref).expect("reference x gradient"),
                &format!("x gradient {case}"),
            );
            assert_close(
                weight.grad(&grads).expect("weight gradient"),
                weight_ref.grad(&grads_ref).expect("reference weight gradient"),
                &format!("weight gradient {case}"),
            );
        }
    }

    #[test]
    fn flex_and_autodiff_flex_go_through_the_extension() {
        // Otherwise the tests above would compare Burn's conv2d with itself.
        assert!(extension_runs_on(&Device::flex()));
        assert!(extension_runs_on(&Device::flex().autodiff()));
    }

    #[test]
    fn flex_gradient_kernels_match_burns_grouped_backward_ops() {
        let device = Device::flex();
        let flex = |tensor: Tensor<4>| tensor.try_into_primitive::<Flex>().expect("a flex tensor");
        let back = |primitive: FlexTensor| Tensor::<4>::from_primitive::<Flex>(primitive);
        for (n, c, h, w, k, s, p) in cases() {
            let case = format!("n{n} c{c} {h}x{w} k{k} s{s} p{p}");
            let x = pattern([n, c, h, w], 9, &device);
            let weight = pattern([c, 1, k, k], 10, &device);
            let output_dims = conv2d(x.clone(), weight.clone(), None, burn_options(c, s, p)).dims();
            let output_grad = pattern(output_dims, 11, &device);
            let (x, weight, output_grad) = (flex(x), flex(weight), flex(output_grad));
            let options = burn_options(c, s, p);
            assert_close(
                back(Flex::depthwise_conv2d_x_grad(
                    x.clone(),
                    weight.clone(),
                    output_grad.clone(),
                    s,
                    p,
                )),
                back(Flex::conv2d_x_backward(
                    x.clone(),
                    weight.clone(),
                    output_grad.clone(),
                    options.clone(),
                )),
                &format!("flex x gradient {case}"),
            );
            assert_close(
                back(Flex::depthwise_conv2d_weight_grad(
                    x.clone(),
                    weight.clone(),
                    output_grad.clone(),
                    s,
                    p,
                )),
                back(Flex::conv2d_weight_backward(x, weight, output_grad, options)),
                &format!("flex weight gradient {case}"),
            );
        }
    }

    #[test]
    fn only_the_inputs_that_require_grad_get_one() {
        let device = Device::flex().autodiff();
        let x = pattern([2, 4, 8, 8], 6, &device).require_grad();
        let weight = pattern([4, 1, 3, 3], 7, &device);
        let grads = depthwise_conv2d(x.clone(), weight.clone(), 1, 1).sum().backward();
        assert!(x.grad(&grads).is_some());
        assert!(weight.grad(&grads).is_none());

        // Nothing tracked at all: the untracked path still computes the convolution.
        let plain = depthwise_conv2d(pattern([1, 4, 8, 8], 6, &device), weight.clone(), 2, 1);
        let reference = conv2d(pattern([1, 4, 8, 8], 6, &device), weight, None, burn_options(4, 2, 1));
        assert_close(plain, reference, "untracked forward");
    }

    #[test]
    fn the_layer_keeps_conv2ds_weight_name_shape_and_initialisation() {
        let device = Device::flex();
        let layer = DepthwiseConv2d::new(96, 5, 2, &device);
        assert_eq!(
            super::super::layers::param_paths(&layer),
            vec![("weight".to_string(), vec![96, 1, 5, 5])]
        );

        // Kaiming normal over fan-out = 25 taps: std = sqrt(2 / 25) ≈ 0.283.
        let weights = values(layer.weight.val());
        let mean = weights.iter().sum::<f32>() / weights.len() as f32;
        let std = (weights.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / weights.len() as f32).sqrt();
        assert!((std - 0.283).abs() < 0.03, "std {std}");

        let x = pattern([2, 96, 9, 10], 8, &device);
        let expected = conv2d(x.clone(), layer.weight.val(), None, burn_options(96, 2, 2));
        let output = layer.forward(x);
        assert_eq!(output.dims(), [2, 96, 5, 5]);
        assert_close(output, expected, "layer forward");
    }
}
