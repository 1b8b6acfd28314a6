//! ReLU6 (`min(max(x, 0), 6)`, MobileNetV2's activation) as a Burn backend extension, fused into
//! one pass over the data forward and one pass backward.
//!
//! Why it exists: `x.clamp(0.0, 6.0)` under autodiff is Burn's default clamp, a `clamp_max` then a
//! `clamp_min`, each a comparison into a mask plus a `mask_fill` (four passes and two bool
//! tensors kept for the backward), and its gradient is two more `mask_fill`s. That was ~18 % of a
//! mobilenet-v2 training step on the CPU.
//!
//! How it is wired, as in [`super::depthwise`]: [`Relu6Backend`] is declared with Burn's
//! `#[backend_extension]` macro, which generates the `Dispatch` implementation that routes a call
//! to the backend a tensor lives on:
//! - `Flex` (CPU): f32 loops here, in place where the tensor's buffer is not shared, in chunks
//!   run in parallel with rayon for large tensors. Other dtypes use Burn's own ops.
//! - `Cube` (CUDA): the default bodies, Burn's own clamp / comparison / mask ops.
//! - `Autodiff<B>`: records the op, keeping only the input, and on the way back asks `B` for the
//!   gradient.
//!
//! [`relu6`] sends any other backend straight to Burn's `clamp`, because the generated dispatch
//! panics on a backend the extension does not list.
//!
//! Exactly Burn's clamp, bit for bit, so that a network trains identically:
//! - forward: below 0 gives +0.0, above 6 gives 6.0, everything else (0, -0.0, 6, NaN) passes
//!   unchanged. Flex's own `float_clamp` is `f32::clamp`, and the autodiff chain
//!   (`mask_fill(x, x > 6, 6)` then `mask_fill(y, y < 0, 0)`) gives the same values.
//! - backward: Burn's gradient is the upstream gradient with both masks filled by zero, i.e. zero
//!   where `x < 0` or `x > 6`, and the upstream gradient passed through everywhere else —
//!   including at exactly `x == 0` and `x == 6` (and at NaN, where neither comparison holds).
//!   The output cannot tell `x < 0` from `x == 0` (both give 0), so the input is what is kept.

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    backend_extension, get_or_init_device_settings, Autodiff, Backend, Cube, DType, Dispatch, Flex, Scalar,
    TensorMetadata,
};
use burn::prelude::*;

use super::extension::{extension_runs_on, map_f32, map_grad_f32, record_elementwise, ElementwiseOp};

/// The upper bound of ReLU6.
const SIX: f32 = 6.0;

/// ReLU6 and its gradient. The default bodies are Burn's own ops (the clamp and the clamp
/// gradient's masks); a backend overrides what it can do faster.
#[backend_extension(Flex, Cube, Autodiff)]
pub trait Relu6Backend: Backend {
    /// `min(max(x, 0), 6)`, element-wise; NaN stays NaN.
    fn relu6(x: FloatTensor<Self>) -> FloatTensor<Self> {
        burn_relu6::<Self>(x)
    }

    /// Gradient of a loss with respect to ReLU6's input `x`, given its gradient with respect to
    /// the output: `grad` where `0 <= x <= 6` (or `x` is NaN), zero where `x < 0` or `x > 6`.
    fn relu6_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        burn_relu6_backward::<Self>(x, grad)
    }
}

/// Burn's own clamp to `[0, 6]`.
fn burn_relu6<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let dtype = x.dtype();
    B::float_clamp(x, Scalar::new(0.0, &dtype), Scalar::new(SIX, &dtype))
}

/// Burn's clamp gradient, from Burn's ops: `grad` with zeros where `x < 0` or `x > 6` (the two
/// masks autodiff's default clamp fills), unchanged elsewhere.
fn burn_relu6_backward<B: Backend>(x: FloatTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B> {
    let dtype = x.dtype();
    let bool_dtype = get_or_init_device_settings::<B>(&x.device()).bool_dtype;
    let below = B::float_lower_elem(x.clone(), Scalar::new(0.0, &dtype), bool_dtype);
    let above = B::float_greater_elem(x, Scalar::new(SIX, &dtype), bool_dtype);
    let grad_dtype = grad.dtype();
    B::float_mask_fill(grad, B::bool_or(below, above), Scalar::new(0.0, &grad_dtype))
}

/// CUDA (and every other cubecl runtime): Burn's kernels, unchanged.
impl Relu6Backend for Cube {}

impl Relu6Backend for Flex {
    fn relu6(x: FloatTensor<Self>) -> FloatTensor<Self> {
        if x.dtype() != DType::F32 {
            return burn_relu6::<Flex>(x);
        }
        map_f32(x, relu6_value)
    }

    fn relu6_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        if x.dtype() != DType::F32 || grad.dtype() != DType::F32 {
            return burn_relu6_backward::<Flex>(x, grad);
        }
        map_grad_f32(x, grad, relu6_grad_value)
    }
}

/// ReLU6 of one value, exactly as `f32::clamp(x, 0.0, 6.0)` (flex's clamp): NaN and -0.0 pass
/// unchanged. Both selects compile to one max / min instruction each and vectorise.
#[inline(always)]
fn relu6_value(x: f32) -> f32 {
    let y = if x < 0.0 { 0.0 } else { x };
    if y > SIX {
        SIX
    } else {
        y
    }
}

/// Burn's clamp gradient for one value: zero outside `[0, 6]`, `grad` at the bounds, inside and
/// at NaN. A compare, an or and an and-not per vector.
#[inline(always)]
// Not `!(0.0..=SIX).contains(&x)`: that is true for NaN, where Burn passes the gradient.
#[allow(clippy::manual_range_contains)]
fn relu6_grad_value(x: f32, grad: f32) -> f32 {
    if x < 0.0 || x > SIX {
        0.0
    } else {
        grad
    }
}

/// ReLU6 as the inner backend of an autodiff backend computes it.
#[derive(Debug)]
struct Relu6Op;

impl<B: Relu6Backend> ElementwiseOp<B> for Relu6Op {
    fn forward(x: FloatTensor<B>) -> FloatTensor<B> {
        B::relu6(x)
    }

    fn backward(x: FloatTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B> {
        B::relu6_backward(x, grad)
    }
}

impl<B: Relu6Backend, C: CheckpointStrategy> Relu6Backend for Autodiff<B, C> {
    fn relu6(x: FloatTensor<Self>) -> FloatTensor<Self> {
        record_elementwise::<B, C, Relu6Op>(x)
    }
    // The gradient op keeps the default body (Burn's differentiable mask ops): only a second
    // derivative would use it.
}

/// ReLU6, `min(max(x, 0), 6)`: the same values and gradients as `x.clamp(0.0, 6.0)`, bit for
/// bit. Differentiable; on the CPU both directions are the single fused passes in this file.
pub fn relu6<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if !extension_runs_on(&x.device()) {
        return x.clamp(0.0, SIX);
    }
    Tensor::from_dispatch(<Dispatch as Relu6Backend>::relu6(x.into_dispatch()))
}

#[cfg(test)]
mod tests {
    use burn::backend::flex::FlexTensor;

    use super::super::extension::CHUNK;
    use super::*;

    /// Negatives, both zeros, the bounds, their neighbours, values between and above, infinities
    /// and NaN: every case the two comparisons can decide differently.
    fn edge_values() -> Vec<f32> {
        vec![
            -7.5,
            -1.0,
            -f32::MIN_POSITIVE,
            -0.0,
            0.0,
            f32::MIN_POSITIVE,
            1e-30,
            0.25,
            3.0,
            5.999_999_5,
            6.0,
            6.000_000_5,
            6.5,
            100.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
        ]
    }

    /// Deterministic values spread over [-3, 9] (so about a quarter below 0 and a quarter above
    /// 6), with the edge values mixed in at fixed positions.
    fn pattern(count: usize, salt: usize) -> Vec<f32> {
        let edges = edge_values();
        (0..count)
            .map(|i| {
                if i % 97 < edges.len() && i % 3 == 0 {
                    edges[i % 97]
                } else {
                    ((i * 7_919 + salt * 104_729) % 4_001) as f32 * 12.0 / 4_000.0 - 3.0
                }
            })
            .collect()
    }

    fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
        Tensor::from_data(TensorData::new(values, shape), device)
    }

    fn bits<const D: usize>(tensor: Tensor<D>) -> Vec<u32> {
        tensor
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect()
    }

    fn assert_same_bits(actual: Vec<u32>, expected: Vec<u32>, what: &str) {
        assert_eq!(actual.len(), expected.len(), "{what}: length");
        for (i, (a, e)) in actual.iter().zip(&expected).enumerate() {
            assert_eq!(
                a,
                e,
                "{what}: element {i}: {} (bits {a:#010x}) vs Burn's {} (bits {e:#010x})",
                f32::from_bits(*a),
                f32::from_bits(*e)
            );
        }
    }

    /// Shapes: tiny, the edge values alone, just over one chunk (a short last chunk), several
    /// chunks in 4-D.
    fn shapes() -> Vec<[usize; 4]> {
        vec![[1, 1, 1, 3], [1, 1, 3, 6], [1, 1, 1, CHUNK + 5], [3, 8, 65, 67]]
    }

    #[test]
    fn forward_matches_burns_clamp_bit_for_bit() {
        for device in [Device::flex(), Device::flex().autodiff()] {
            for shape in shapes() {
                let count = shape.iter().product();
                let values = if count == 18 { edge_values() } else { pattern(count, 1) };
                let expected = bits(tensor(values.clone(), shape, &device).clamp(0.0, 6.0));
                // Uniquely held (written in place) and shared (written to a new buffer).
                let unique = bits(relu6(tensor(values.clone(), shape, &device)));
                let input = tensor(values, shape, &device);
                let shared = bits(relu6(input.clone()));
                assert_same_bits(unique, expected.clone(), &format!("{device:?} {shape:?} in place"));
                assert_same_bits(shared, expected, &format!("{device:?} {shape:?} copied"));
                // The shared input itself is untouched.
                assert_eq!(bits(input).len(), count);
            }
        }
    }

    #[test]
    fn edge_values_give_what_burns_clamp_gives() {
        // Spelled out: NaN propagates, -0.0 stays -0.0, below 0 becomes +0.0.
        let device = Device::flex();
        let out = relu6(tensor(vec![-2.0, -0.0, 0.0, 3.5, 6.0, 7.0, f32::NAN], [7], &device))
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(out[0].to_bits(), 0.0f32.to_bits());
        assert_eq!(out[1].to_bits(), (-0.0f32).to_bits());
        assert_eq!(&out[2..6], &[0.0, 3.5, 6.0, 6.0]);
        assert!(out[6].is_nan());
    }

    #[test]
    fn non_contiguous_input_matches_burns_clamp() {
        let device = Device::flex();
        let x = tensor(pattern(6 * 7 * 9 * 11, 2), [6, 7, 9, 11], &device).swap_dims(1, 3);
        assert_same_bits(bits(relu6(x.clone())), bits(x.clamp(0.0, 6.0)), "transposed");
    }

    #[test]
    fn gradients_match_burns_clamp_bit_for_bit() {
        let device = Device::flex().autodiff();
        for shape in shapes() {
            let count: usize = shape.iter().product();
            let values = if count == 18 { edge_values() } else { pattern(count, 3) };
            // The same upstream gradient for both (a pattern, so every position weighs
            // differently; it has NaNs and infinities too, which the zeroed positions must drop).
            let upstream = tensor(pattern(count, 4), shape, &device);
            let leaf = || tensor(values.clone(), shape, &device).require_grad();

            let x = leaf();
            let grads = (relu6(x.clone()) * upstream.clone()).sum().backward();
            let x_ref = leaf();
            let grads_ref = (x_ref.clone().clamp(0.0, 6.0) * upstream).sum().backward();

            assert_same_bits(
                bits(x.grad(&grads).expect("x gradient")),
                bits(x_ref.grad(&grads_ref).expect("reference gradient")),
                &format!("gradient {shape:?}"),
            );
        }
    }

    #[test]
    fn gradient_is_passed_at_both_bounds_and_zero_outside() {
        // Burn's clamp: zero strictly below 0 and strictly above 6; the bounds themselves (and
        // -0.0) pass the gradient.
        let device = Device::flex().autodiff();
        let x = tensor(vec![-1.0, -0.0, 0.0, 3.0, 6.0, 6.5], [6], &device).require_grad();
        let upstream = tensor(vec![2.0; 6], [6], &device);
        let grads = (relu6(x.clone()) * upstream).sum().backward();
        let grad = x.grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(grad, vec![0.0, 2.0, 2.0, 2.0, 2.0, 0.0]);

        // And Burn agrees.
        let x = tensor(vec![-1.0, -0.0, 0.0, 3.0, 6.0, 6.5], [6], &device).require_grad();
        let grads = (x.clone().clamp(0.0, 6.0) * 2.0).sum().backward();
        let grad = x.grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(grad, vec![0.0, 2.0, 2.0, 2.0, 2.0, 0.0]);
    }

    #[test]
    fn chained_through_other_ops_and_untracked() {
        // Inside a graph (the input is an intermediate, the output feeds further ops), and with
        // nothing tracked at all.
        let device = Device::flex().autodiff();
        let count = 2 * 4 * 33 * 40;
        let w = tensor(pattern(count, 5), [2, 4, 33, 40], &device).require_grad();
        let w_ref = tensor(pattern(count, 5), [2, 4, 33, 40], &device).require_grad();
        let a = relu6(w.clone() * 1.5 + 0.5);
        let b = (w_ref.clone() * 1.5 + 0.5).clamp(0.0, 6.0);
        let grads = (relu6(a.clone() - 1.0) * a).sum().backward();
        let grads_ref = ((b.clone() - 1.0).clamp(0.0, 6.0) * b).sum().backward();
        assert_same_bits(
            bits(w.grad(&grads).unwrap()),
            bits(w_ref.grad(&grads_ref).unwrap()),
            "chained gradient",
        );

        let plain = tensor(pattern(count, 6), [2, 4, 33, 40], &device);
        assert_same_bits(bits(relu6(plain.clone())), bits(plain.clamp(0.0, 6.0)), "untracked");
    }

    #[test]
    fn flex_kernels_match_burns_ops() {
        // The Flex implementations called directly, against the Burn-op defaults, in place and
        // copied, one chunk and several.
        let flex = |values: Vec<f32>, len: usize| {
            Tensor::<1>::from_data(TensorData::new(values, [len]), &Device::flex())
                .try_into_primitive::<Flex>()
                .expect("a flex tensor")
        };
        let back = |primitive: FlexTensor| bits(Tensor::<1>::from_primitive::<Flex>(primitive));
        for len in [18, 1_000, 3 * CHUNK + 7] {
            let values = if len == 18 { edge_values() } else { pattern(len, 7) };
            let upstream = pattern(len, 8);
            let x = flex(values.clone(), len);
            let g = flex(upstream.clone(), len);
            assert_same_bits(
                back(Flex::relu6(x.clone())),
                back(burn_relu6::<Flex>(x.clone())),
                &format!("flex forward {len}"),
            );
            assert_same_bits(
                back(Flex::relu6(flex(values.clone(), len))),
                back(burn_relu6::<Flex>(x.clone())),
                &format!("flex forward in place {len}"),
            );
            let expected = back(burn_relu6_backward::<Flex>(x.clone(), g.clone()));
            assert_same_bits(
                back(Flex::relu6_backward(x.clone(), g.clone())),
                expected.clone(),
                &format!("flex backward copied {len}"),
            );
            assert_same_bits(
                back(Flex::relu6_backward(x, flex(upstream, len))),
                expected,
                &format!("flex backward in place {len}"),
            );
        }
    }

    #[test]
    fn flex_and_autodiff_flex_go_through_the_extension() {
        // Otherwise the tests above would compare Burn's clamp with itself.
        assert!(extension_runs_on(&Device::flex()));
        assert!(extension_runs_on(&Device::flex().autodiff()));
    }
}
