//! SiLU (`x · sigmoid(x)`, EfficientNet's activation) as a Burn backend extension: one pass
//! forward and one pass backward, with an exponential that vectorises.
//!
//! Why it exists: Burn's `silu` is `x * sigmoid(x)`, and flex's sigmoid calls the C library's
//! scalar `expf` per element behind a branch, so nothing vectorises; under autodiff that is a
//! sigmoid, a product, and on the way back two products, a sigmoid gradient and a sum. SiLU was
//! about a fifth of an efficientnet-b0 training step on the CPU (`expf` alone 11 %).
//!
//! Wired as [`super::relu6`] is: [`SiluBackend`] goes through Burn's `#[backend_extension]`; flex
//! f32 runs the loops here, other dtypes and CUDA keep Burn's own ops (the default bodies), and
//! autodiff keeps only the input and recomputes the sigmoid on the way back.
//!
//! Not bit for bit Burn's: the exponential here is a polynomial (Cephes' `expf` coefficients,
//! about 1 ulp), so values and gradients agree with Burn's to a few ulp (tested against Burn and
//! against f64). NaN stays NaN; SiLU(-inf) is -inf here where Burn gives NaN (`-inf · 0`).

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Cube, DType, Dispatch, Flex};
use burn::prelude::*;

use super::extension::{extension_runs_on, map_f32, map_grad_f32, record_elementwise, ElementwiseOp};

/// SiLU and its gradient. The default bodies are Burn's own ops; a backend overrides what it can
/// do faster.
#[backend_extension(Flex, Cube, Autodiff)]
pub trait SiluBackend: Backend {
    /// `x · sigmoid(x)`, element-wise.
    fn silu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        burn_silu::<Self>(x)
    }

    /// Gradient of a loss with respect to SiLU's input `x`, given its gradient with respect to
    /// the output: `grad · s · (1 + x · (1 − s))` with `s = sigmoid(x)`.
    fn silu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        burn_silu_backward::<Self>(x, grad)
    }
}

/// Burn's SiLU from Burn's ops.
fn burn_silu<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    B::float_mul(x.clone(), B::sigmoid(x))
}

/// SiLU's gradient from Burn's ops, as Burn's autodiff composes it for `x * sigmoid(x)`: the
/// product rule's two terms, `grad · s` and `(grad · x) · s · (1 − s)`, summed.
fn burn_silu_backward<B: Backend>(x: FloatTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B> {
    let s = B::sigmoid(x.clone());
    let through_x = B::float_mul(grad.clone(), s.clone());
    let through_sigmoid = B::sigmoid_backward(s, B::float_mul(grad, x));
    B::float_add(through_x, through_sigmoid)
}

/// CUDA (and every other cubecl runtime): Burn's kernels, unchanged.
impl SiluBackend for Cube {}

impl SiluBackend for Flex {
    fn silu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        if x.dtype() != DType::F32 {
            return burn_silu::<Flex>(x);
        }
        map_f32(x, silu_value)
    }

    fn silu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        if x.dtype() != DType::F32 || grad.dtype() != DType::F32 {
            return burn_silu_backward::<Flex>(x, grad);
        }
        map_grad_f32(x, grad, silu_grad_value)
    }
}

/// Rounds to the nearest integer when added to a float of magnitude below 2²²: 1.5 · 2²³.
const ROUND_TO_INTEGER: f32 = 12_582_912.0;
/// ln 2 in two parts, the first exact in few bits, so `x − n·ln 2` loses nothing for |n| ≤ 126.
const LN2_HIGH: f32 = 0.693_359_4;
const LN2_LOW: f32 = -2.121_944_4e-4;
/// Below this, e^x is under f32's smallest normal number (2^n needs n ≥ −126): taken as 0.
const EXP_FLOOR: f32 = -87.0;

/// e^x for x ≤ 0 (larger x is not asked for), branch-free so that a loop of it vectorises:
/// x = n·ln 2 + r with |r| ≤ ln 2 / 2, e^r by Cephes' degree-7 polynomial, 2^n built in the
/// exponent bits. Relative error about 1 ulp; 0 below [`EXP_FLOOR`] (where the true value is
/// subnormal, under 1e-37); NaN gives e^-87 (the callers' products carry the NaN of `x` itself).
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    let underflows = x < EXP_FLOOR;
    let x = x.max(EXP_FLOOR);
    let shifted = x * std::f32::consts::LOG2_E + ROUND_TO_INTEGER;
    let n = shifted - ROUND_TO_INTEGER;
    let r = x - n * LN2_HIGH - n * LN2_LOW;
    let p = 1.987_569_2e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 5e-1;
    let e_r = p * r * r + r + 1.0;
    // n as an integer is the difference of the two floats' bit patterns (same exponent).
    let exponent = shifted.to_bits() as i32 - ROUND_TO_INTEGER.to_bits() as i32;
    let e = e_r * f32::from_bits(((exponent + 127) << 23) as u32);
    if underflows {
        0.0
    } else {
        e
    }
}

/// sigmoid(x) without overflow on either side: e = e^−|x| ≤ 1, then 1/(1+e) for x ≥ 0 and
/// e/(1+e) below, one division either way.
#[inline(always)]
fn sigmoid_value(x: f32) -> f32 {
    let e = exp_nonpositive(-x.abs());
    let numerator = if x >= 0.0 { 1.0 } else { e };
    numerator / (1.0 + e)
}

#[inline(always)]
fn silu_value(x: f32) -> f32 {
    x * sigmoid_value(x)
}

#[inline(always)]
fn silu_grad_value(x: f32, grad: f32) -> f32 {
    let s = sigmoid_value(x);
    grad * s * (1.0 + x * (1.0 - s))
}

/// SiLU as the inner backend of an autodiff backend computes it.
#[derive(Debug)]
struct SiluOp;

impl<B: SiluBackend> ElementwiseOp<B> for SiluOp {
    fn forward(x: FloatTensor<B>) -> FloatTensor<B> {
        B::silu(x)
    }

    fn backward(x: FloatTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B> {
        B::silu_backward(x, grad)
    }
}

impl<B: SiluBackend, C: CheckpointStrategy> SiluBackend for Autodiff<B, C> {
    fn silu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        record_elementwise::<B, C, SiluOp>(x)
    }
    // The gradient op keeps the default body (Burn's differentiable ops): only a second
    // derivative would use it.
}

/// SiLU, `x · sigmoid(x)`: Burn's `silu` to a few ulp, differentiable; on the CPU both
/// directions are the single passes in this file.
pub fn silu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if !extension_runs_on(&x.device()) {
        return burn::tensor::activation::silu(x);
    }
    Tensor::from_dispatch(<Dispatch as SiluBackend>::silu(x.into_dispatch()))
}

#[cfg(test)]
mod tests {
    use burn::backend::flex::FlexTensor;

    use super::super::extension::CHUNK;
    use super::*;

    /// Deterministic values over [-24, 24] (deep into both tails of the sigmoid), with zeros,
    /// the gradient's zero crossing near −1.28, tiny and large values mixed in.
    fn pattern(count: usize, salt: usize) -> Vec<f32> {
        const SPECIAL: [f32; 10] = [0.0, -0.0, -1.278_464_6, 1e-30, -1e-30, 40.0, -40.0, 90.0, -90.0, -120.0];
        (0..count)
            .map(|i| {
                if i % 89 < SPECIAL.len() && i % 2 == 0 {
                    SPECIAL[i % 89]
                } else {
                    ((i * 7_919 + salt * 104_729) % 6_007) as f32 * 48.0 / 6_006.0 - 24.0
                }
            })
            .collect()
    }

    fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
        Tensor::from_data(TensorData::new(values, shape), device)
    }

    fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
        tensor.into_data().try_to_vec::<f32>().unwrap()
    }

    fn sigmoid_f64(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    /// Asserts `actual` is within `ulps` f32 rounding steps of `expected`, measured on `scale`
    /// (the size of the terms that make up the value, so that cancellation is not held against
    /// a kernel that computes the same terms differently), or apart by under 1e-34 (the
    /// exponential's flush to 0 below e^-87).
    fn assert_close(actual: &[f32], expected: &[f32], scale: &[f64], ulps: f64, what: &str) {
        assert_eq!(actual.len(), expected.len(), "{what}: length");
        for i in 0..actual.len() {
            let tolerance = ulps * f64::from(f32::EPSILON) * scale[i] + 1e-34;
            let difference = (f64::from(actual[i]) - f64::from(expected[i])).abs();
            assert!(
                difference <= tolerance,
                "{what}: element {i}: {} vs {} (difference {difference:e}, tolerance {tolerance:e})",
                actual[i],
                expected[i]
            );
        }
    }

    fn forward_scale(input: &[f32]) -> Vec<f64> {
        input
            .iter()
            .map(|&x| (f64::from(x) * sigmoid_f64(f64::from(x))).abs())
            .collect()
    }

    /// |g|·s·(1 + |x|): the size of the product-rule terms, counting `1 − s` at its absolute
    /// f32 precision (where s rounds near 1, `x · (1 − s)` keeps only |x|·ε of accuracy, in Burn
    /// as here).
    fn gradient_scale(input: &[f32], upstream: &[f32]) -> Vec<f64> {
        input
            .iter()
            .zip(upstream)
            .map(|(&x, &g)| {
                let (x, g) = (f64::from(x), f64::from(g));
                let s = sigmoid_f64(x);
                g.abs() * s * (1.0 + x.abs())
            })
            .collect()
    }

    fn shapes() -> Vec<[usize; 4]> {
        vec![[1, 1, 1, 3], [1, 1, 3, 30], [1, 1, 1, CHUNK + 5], [3, 8, 65, 67]]
    }

    #[test]
    fn exp_is_within_two_ulp_of_f64_over_its_range() {
        let mut x = -87.0f32;
        while x <= 0.0 {
            let exact = f64::from(x).exp();
            let error = (f64::from(exp_nonpositive(x)) - exact).abs() / exact;
            assert!(
                error <= 2.0 * f64::from(f32::EPSILON),
                "e^{x}: relative error {error:e}"
            );
            x += 0.003_17;
        }
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-88.0), 0.0, "subnormal results are taken as 0");
    }

    #[test]
    fn forward_matches_burns_silu() {
        for device in [Device::flex(), Device::flex().autodiff()] {
            for shape in shapes() {
                let count = shape.iter().product();
                let input = pattern(count, 1);
                let expected = values(burn::tensor::activation::silu(tensor(input.clone(), shape, &device)));
                let scale = forward_scale(&input);
                // Uniquely held (written in place) and shared (written to a new buffer).
                let unique = values(silu(tensor(input.clone(), shape, &device)));
                let shared_input = tensor(input.clone(), shape, &device);
                let shared = values(silu(shared_input.clone()));
                assert_close(
                    &unique,
                    &expected,
                    &scale,
                    4.0,
                    &format!("{device:?} {shape:?} in place"),
                );
                assert_close(&shared, &expected, &scale, 4.0, &format!("{device:?} {shape:?} copied"));
                assert_eq!(values(shared_input), input, "the shared input is left as it was");
            }
        }
    }

    #[test]
    fn values_are_within_a_few_ulp_of_f64() {
        let input = pattern(20_000, 2);
        let exact: Vec<f32> = input
            .iter()
            .map(|&x| (f64::from(x) * sigmoid_f64(f64::from(x))) as f32)
            .collect();
        let ours = values(silu(tensor(input.clone(), [20_000], &Device::flex())));
        assert_close(&ours, &exact, &forward_scale(&input), 3.0, "against f64");
    }

    #[test]
    fn nan_and_signed_zero() {
        let out = values(silu(tensor(vec![f32::NAN, 0.0, -0.0, 1.0], [4], &Device::flex())));
        assert!(out[0].is_nan());
        assert_eq!(out[1].to_bits(), 0.0f32.to_bits());
        assert_eq!(out[2].to_bits(), (-0.0f32).to_bits(), "-0 · ½ is -0, as in Burn");
        assert!((out[3] - 0.731_058_6).abs() < 1e-7);
    }

    #[test]
    fn gradients_match_burns_silu_and_f64() {
        let device = Device::flex().autodiff();
        for shape in shapes() {
            let count: usize = shape.iter().product();
            let input = pattern(count, 3);
            let upstream_values: Vec<f32> = pattern(count, 4).iter().map(|g| g / 8.0).collect();
            let upstream = tensor(upstream_values.clone(), shape, &device);
            let leaf = || tensor(input.clone(), shape, &device).require_grad();

            let x = leaf();
            let grads = (silu(x.clone()) * upstream.clone()).sum().backward();
            let x_ref = leaf();
            let grads_ref = (burn::tensor::activation::silu(x_ref.clone()) * upstream)
                .sum()
                .backward();

            let ours = values(x.grad(&grads).expect("x gradient"));
            let burns = values(x_ref.grad(&grads_ref).expect("reference gradient"));
            let scale = gradient_scale(&input, &upstream_values);
            assert_close(&ours, &burns, &scale, 8.0, &format!("against Burn {shape:?}"));
            let exact: Vec<f32> = input
                .iter()
                .zip(&upstream_values)
                .map(|(&x, &g)| {
                    let (x, g) = (f64::from(x), f64::from(g));
                    let s = sigmoid_f64(x);
                    (g * s * (1.0 + x * (1.0 - s))) as f32
                })
                .collect();
            assert_close(&ours, &exact, &scale, 8.0, &format!("against f64 {shape:?}"));
        }
    }

    #[test]
    fn chained_through_other_ops_and_non_contiguous() {
        let device = Device::flex().autodiff();
        let count = 2 * 4 * 33 * 40;
        let make = || tensor(pattern(count, 5), [2, 4, 33, 40], &device).require_grad();
        let (w, w_ref) = (make(), make());
        // The input is an intermediate, transposed (not contiguous), and the output feeds on.
        let a = silu((w.clone() * 0.5 + 0.25).swap_dims(1, 3));
        let b = burn::tensor::activation::silu((w_ref.clone() * 0.5 + 0.25).swap_dims(1, 3));
        let grads = (silu(a.clone() - 1.0) * a).sum().backward();
        let grads_ref = (burn::tensor::activation::silu(b.clone() - 1.0) * b).sum().backward();
        let ours = values(w.grad(&grads).unwrap());
        let burns = values(w_ref.grad(&grads_ref).unwrap());
        let biggest = burns.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (i, (o, r)) in ours.iter().zip(&burns).enumerate() {
            assert!((o - r).abs() <= 1e-5 * biggest, "element {i}: {o} vs {r}");
        }
    }

    #[test]
    fn flex_kernels_match_burns_ops() {
        // The Flex implementations called directly against the Burn-op defaults: one chunk and
        // several, in place and copied.
        let flex = |values: Vec<f32>, len: usize| {
            Tensor::<1>::from_data(TensorData::new(values, [len]), &Device::flex())
                .try_into_primitive::<Flex>()
                .expect("a flex tensor")
        };
        let back = |primitive: FlexTensor| values(Tensor::<1>::from_primitive::<Flex>(primitive));
        for len in [30, 1_000, 3 * CHUNK + 7] {
            let input = pattern(len, 7);
            let upstream = pattern(len, 8);
            let x = flex(input.clone(), len);
            let g = flex(upstream.clone(), len);
            let scale = forward_scale(&input);
            let expected = back(burn_silu::<Flex>(x.clone()));
            assert_close(&back(Flex::silu(x.clone())), &expected, &scale, 4.0, "forward copied");
            assert_close(
                &back(Flex::silu(flex(input.clone(), len))),
                &expected,
                &scale,
                4.0,
                "forward in place",
            );
            let scale = gradient_scale(&input, &upstream);
            let expected = back(burn_silu_backward::<Flex>(x.clone(), g.clone()));
            assert_close(
                &back(Flex::silu_backward(x.clone(), g)),
                &expected,
                &scale,
                8.0,
                "backward copied",
            );
            assert_close(
                &back(Flex::silu_backward(x, flex(upstream, len))),
                &expected,
                &scale,
                8.0,
                "backward in place",
            );
        }
    }
}
