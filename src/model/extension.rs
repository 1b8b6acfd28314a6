//! What our own Burn extension operations (`depthwise`, `relu6`, `silu`) share: which devices they
//! have an implementation for, reading a flex tensor's f32 values, and running an element-wise
//! f32 kernel over a flex tensor (in place when its buffer is not shared, in parallel chunks, with
//! AVX2/FMA code where the CPU has it), and recording an element-wise op for autodiff.

use std::fmt::Debug;
use std::marker::PhantomData;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::retro_forward::RetroForward;
use burn::backend::autodiff::checkpoint::state::BackwardStates;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, DispatchDevice, TensorMetadata};
use burn::prelude::*;
use rayon::prelude::*;

/// Whether our extensions have an implementation for the backend `device` runs on (flex and the
/// cubecl runtimes, with or without autodiff). Burn's generated dispatch panics on any other, so
/// callers fall back to Burn's own operations there.
#[allow(unreachable_patterns)]
pub(super) fn extension_runs_on(device: &Device) -> bool {
    matches!(
        device.clone().inner().as_dispatch(),
        DispatchDevice::Flex(_) | DispatchDevice::Cube(_)
    )
}

/// The values of a contiguous f32 flex tensor, in row-major order.
pub(super) fn f32_values(tensor: &FlexTensor) -> &[f32] {
    tensor
        .as_slice::<f32>()
        .expect("a contiguous f32 tensor has a plain slice of values")
}

/// Tensors up to this many elements run on the calling thread; larger ones in chunks of this
/// size, in parallel (64K f32 = 256 KiB: big enough to amortise rayon's hand-off).
pub(super) const CHUNK: usize = 1 << 16;

/// `f` applied to every value of a contiguous f32 flex tensor (the caller checks the dtype): in
/// place when nobody else holds the buffer (inference, untracked tensors), into a new buffer
/// otherwise. `f` should be `#[inline(always)]` so that the loops vectorise.
pub(super) fn map_f32(x: FlexTensor, f: impl Fn(f32) -> f32 + Sync) -> FlexTensor {
    let mut x = contiguous(x);
    if let Some((start, end)) = x.layout().contiguous_offsets() {
        if let Some(values) = x.try_storage_mut::<f32>() {
            in_chunks(&mut values[start..end], |chunk, _| {
                with_fast_simd(|| chunk.iter_mut().for_each(|v| *v = f(*v)))
            });
            return x;
        }
    }
    let input = f32_values(&x);
    let mut output = vec![0.0f32; input.len()];
    in_chunks(&mut output, |chunk, offset| {
        let input = &input[offset..offset + chunk.len()];
        with_fast_simd(|| chunk.iter_mut().zip(input).for_each(|(y, &x)| *y = f(x)))
    });
    FlexTensor::from_data(TensorData::new(output, x.shape()))
}

/// An element-wise op's input gradient, `f(x, upstream gradient)` for every value of `x` and
/// `grad` (both f32, the same shape): in place in `grad` when it is ours alone (the usual case),
/// otherwise into a new buffer.
pub(super) fn map_grad_f32(x: FlexTensor, grad: FlexTensor, f: impl Fn(f32, f32) -> f32 + Sync) -> FlexTensor {
    assert_eq!(
        x.shape(),
        grad.shape(),
        "element-wise gradient: input and gradient shapes differ"
    );
    let x = x.to_contiguous();
    let input = f32_values(&x);
    let mut grad = contiguous(grad);
    if let Some((start, end)) = grad.layout().contiguous_offsets() {
        if let Some(values) = grad.try_storage_mut::<f32>() {
            in_chunks(&mut values[start..end], |chunk, offset| {
                let input = &input[offset..offset + chunk.len()];
                with_fast_simd(|| chunk.iter_mut().zip(input).for_each(|(g, &x)| *g = f(x, *g)))
            });
            return grad;
        }
    }
    let upstream = f32_values(&grad);
    let mut output = vec![0.0f32; input.len()];
    in_chunks(&mut output, |chunk, offset| {
        let range = offset..offset + chunk.len();
        let (input, upstream) = (&input[range.clone()], &upstream[range]);
        with_fast_simd(|| {
            for ((out, &x), &g) in chunk.iter_mut().zip(input).zip(upstream) {
                *out = f(x, g);
            }
        })
    });
    FlexTensor::from_data(TensorData::new(output, x.shape()))
}

/// The tensor itself if it is contiguous (so that a buffer nobody else holds stays unshared and
/// can be overwritten), otherwise a contiguous copy.
fn contiguous(tensor: FlexTensor) -> FlexTensor {
    if tensor.is_contiguous() {
        tensor
    } else {
        tensor.to_contiguous()
    }
}

/// Calls `run(chunk, offset of the chunk)` over `values` in chunks of [`CHUNK`]: on this thread
/// for one chunk, in parallel for more.
fn in_chunks(values: &mut [f32], run: impl Fn(&mut [f32], usize) + Sync) {
    if values.len() <= CHUNK {
        run(values, 0);
    } else {
        values
            .par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(index, chunk)| run(chunk, index * CHUNK));
    }
}

/// Runs `body` compiled for AVX2 and FMA when the CPU has them (the build targets baseline
/// x86-64, whose SSE2 vectors are half as wide and have no fused multiply-add), as it is
/// otherwise. `body` and what it calls inline into the wrapper and so get its instructions.
#[inline(always)]
fn with_fast_simd(body: impl FnOnce()) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            #[target_feature(enable = "avx2,fma")]
            fn with_avx2(body: impl FnOnce()) {
                body()
            }
            // SAFETY: the CPU was just checked to support both features the wrapper enables.
            unsafe { with_avx2(body) };
            return;
        }
    }
    body()
}

/// An element-wise op of one tensor whose gradient needs only the op's input (ReLU6, SiLU), as
/// the inner backend `B` computes it; [`record_elementwise`] makes it differentiable.
pub(super) trait ElementwiseOp<B: Backend>: Debug + Send + Sync + 'static {
    fn forward(x: FloatTensor<B>) -> FloatTensor<B>;
    /// The gradient with respect to the input `x`, given the gradient `grad` of the output.
    fn backward(x: FloatTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B>;
}

/// The autodiff body of an [`ElementwiseOp`]: runs the inner backend's forward and, when the
/// input is tracked, records a backward step that keeps only the input (memory-bound, like Burn's
/// own activations: under gradient checkpointing the output may be dropped and recomputed).
pub(super) fn record_elementwise<B, C, Op>(x: FloatTensor<Autodiff<B, C>>) -> FloatTensor<Autodiff<B, C>>
where
    B: Backend,
    C: CheckpointStrategy,
    Op: ElementwiseOp<B>,
{
    match ElementwiseStep::<Op>(PhantomData)
        .prepare::<C>([x.node()])
        .memory_bound()
        .retro_forward(RecomputeElementwise::<B, Op> {
            input: x.id(),
            _op: PhantomData,
        })
        .parents([&x])
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let x_id = prep.checkpoint(&x);
            let output = Op::forward(x.into_primitive());
            prep.finish(x_id, output)
        }
        OpsKind::UnTracked(prep) => prep.finish(Op::forward(x.into_primitive())),
    }
}

/// The backward step of an [`ElementwiseOp`]: the inner backend's gradient.
#[derive(Debug)]
struct ElementwiseStep<Op>(PhantomData<fn() -> Op>);

impl<B: Backend, Op: ElementwiseOp<B>> Backward<B, 1> for ElementwiseStep<Op> {
    /// The checkpointed input (recomputed if a checkpointing strategy dropped it).
    type State = NodeId;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(ops.state);
        unary::<B, _>(ops.parents, ops.node, grads, |grad| Op::backward(x, grad));
    }
}

/// Under gradient checkpointing, how to recompute an [`ElementwiseOp`]'s output from its
/// checkpointed input.
#[derive(Debug)]
struct RecomputeElementwise<B, Op> {
    input: NodeId,
    _op: PhantomData<fn() -> (B, Op)>,
}

impl<B: Backend, Op: ElementwiseOp<B>> RetroForward for RecomputeElementwise<B, Op> {
    fn forward(&self, states: &mut BackwardStates, out_node: NodeId) {
        let input = states.get_state::<FloatTensor<B>>(&self.input);
        states.save(out_node, Op::forward(input));
    }
}
