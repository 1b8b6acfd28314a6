//! Losses on logits `[n, labels]` against 0/1 targets `[n, labels]`: numerically stable BCE with
//! optional per-label positive weights, focal loss, softmax cross-entropy, and MSE/MAE on
//! activated outputs. Each returns the mean as a one-element tensor.

use burn::tensor::activation::{log_softmax, sigmoid, softmax};
use burn::tensor::{Tensor, TensorData};

use super::config::{LossKind, OutputActivation, TrainConfig};

/// A loss chosen by a run's config, with the per-label positive weights of its training split.
#[derive(Debug, Clone, PartialEq)]
pub struct Loss {
    pub kind: LossKind,
    pub activation: OutputActivation,
    /// `neg/pos` per label, used by BCE and focal loss when set.
    pub pos_weight: Option<Vec<f32>>,
    pub focal_gamma: f32,
    pub focal_alpha: Option<f32>,
}

impl Loss {
    /// The config's loss; `pos_weight` comes from [`pos_weights`] on the training targets and is
    /// dropped unless the config asks for it and the loss uses it.
    pub fn from_config(config: &TrainConfig, pos_weight: Option<Vec<f32>>) -> Loss {
        let uses_weights = config.pos_weight && matches!(config.loss, LossKind::Bce | LossKind::Focal);
        Loss {
            kind: config.loss,
            activation: config.activation(),
            pos_weight: pos_weight.filter(|_| uses_weights),
            focal_gamma: config.focal_gamma,
            focal_alpha: config.focal_alpha,
        }
    }

    pub fn compute(&self, logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
        let device = logits.device();
        let weights = self
            .pos_weight
            .as_ref()
            .map(|w| Tensor::<1>::from_data(TensorData::new(w.clone(), [w.len()]), &device).unsqueeze::<2>());
        match self.kind {
            LossKind::Bce => bce_with_logits(logits, targets, weights),
            LossKind::Focal => focal(logits, targets, self.focal_gamma, self.focal_alpha, weights),
            LossKind::Ce => cross_entropy(logits, targets),
            LossKind::Mse => mse(activate(logits, self.activation), targets),
            LossKind::Mae => mae(activate(logits, self.activation), targets),
        }
    }
}

/// Logits to probabilities: a sigmoid per label, or a softmax across labels.
pub fn activate(logits: Tensor<2>, activation: OutputActivation) -> Tensor<2> {
    match activation {
        OutputActivation::Sigmoid => sigmoid(logits),
        OutputActivation::Softmax => softmax(logits, 1),
    }
}

/// `neg/pos` per label over row-major targets `[n, num_labels]`; labels without positives get
/// 1 (no weighting) since their ratio is undefined.
pub fn pos_weights(targets: &[f32], num_labels: usize) -> Vec<f32> {
    let n = targets.len().checked_div(num_labels).unwrap_or(0);
    (0..num_labels)
        .map(|label| {
            let pos = (0..n).filter(|row| targets[row * num_labels + label] > 0.5).count();
            if pos == 0 {
                1.0
            } else {
                (n - pos) as f32 / pos as f32
            }
        })
        .collect()
}

/// Element-wise BCE on logits, `pos_weight` `[1, labels]` scaling the positive term:
/// `(1 - y) x + (1 + (w - 1) y) (log(1 + e^-|x|) + max(-x, 0))`, which never exponentiates a
/// large positive number.
fn bce_elements(x: Tensor<2>, y: Tensor<2>, pos_weight: Option<Tensor<2>>) -> Tensor<2> {
    let log_sigmoid_neg = x.clone().abs().neg().exp().log1p() + x.clone().neg().clamp_min(0.0);
    let positive_scale = match pos_weight {
        Some(w) => y.clone() * (w - 1.0) + 1.0,
        None => y.ones_like(),
    };
    (y.neg() + 1.0) * x + positive_scale * log_sigmoid_neg
}

pub fn bce_with_logits(logits: Tensor<2>, targets: Tensor<2>, pos_weight: Option<Tensor<2>>) -> Tensor<1> {
    bce_elements(logits, targets, pos_weight).mean()
}

/// Focal loss (Lin et al. 2017, "Focal Loss for Dense Object Detection"): BCE scaled by
/// `(1 - p_t)^gamma`, and by `alpha` for positives / `1 - alpha` for negatives when given.
pub fn focal(
    logits: Tensor<2>,
    targets: Tensor<2>,
    gamma: f32,
    alpha: Option<f32>,
    pos_weight: Option<Tensor<2>>,
) -> Tensor<1> {
    let ce = bce_elements(logits.clone(), targets.clone(), pos_weight);
    let p = sigmoid(logits);
    let p_t = p.clone() * targets.clone() + (p.neg() + 1.0) * (targets.clone().neg() + 1.0);
    let modulating = (p_t.neg() + 1.0).clamp_min(0.0).powf_scalar(gamma);
    let mut loss = ce * modulating;
    if let Some(a) = alpha {
        let alpha_t = targets.clone() * a + (targets.neg() + 1.0) * (1.0 - a);
        loss = loss * alpha_t;
    }
    loss.mean()
}

/// Softmax cross-entropy summed over labels, averaged over rows: `-Σ y log softmax(x)`.
pub fn cross_entropy(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    let [n, _] = logits.dims();
    (log_softmax(logits, 1) * targets).sum().neg() / n.max(1) as f32
}

pub fn mse(outputs: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    let diff = outputs - targets;
    (diff.clone() * diff).mean()
}

pub fn mae(outputs: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    (outputs - targets).abs().mean()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::prelude::Device;

    fn t(rows: &[&[f32]]) -> Tensor<2> {
        let cols = rows[0].len();
        let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        Tensor::from_data(TensorData::new(flat, [rows.len(), cols]), &Device::flex())
    }

    fn scalar(x: Tensor<1>) -> f32 {
        x.into_scalar::<f32>()
    }

    fn close(a: f32, b: f32) {
        assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()), "{a} != {b}");
    }

    // Hand values: softplus(x) = ln(1 + e^x); BCE(x, 1) = softplus(-x), BCE(x, 0) = softplus(x).
    // softplus(0) = ln 2 = 0.693147, softplus(2) = 2.126928, softplus(-2) = 0.126928.

    #[test]
    fn bce_matches_hand_values() {
        let x = t(&[&[0.0, 2.0], &[-2.0, 2.0]]);
        let y = t(&[&[1.0, 1.0], &[1.0, 0.0]]);
        // (0.693147 + 0.126928 + 2.126928 + 2.126928) / 4
        close(scalar(bce_with_logits(x, y, None)), 1.268483);
    }

    #[test]
    fn bce_is_stable_for_huge_logits() {
        let x = t(&[&[100.0, -100.0]]);
        let y = t(&[&[1.0, 1.0]]);
        // First term ~0, second 100.
        close(scalar(bce_with_logits(x, y, None)), 50.0);
    }

    #[test]
    fn pos_weight_scales_only_positive_terms() {
        let x = t(&[&[0.0, 2.0]]);
        let y = t(&[&[1.0, 0.0]]);
        let w = t(&[&[3.0, 5.0]]);
        // 3 ln 2 + 2.126928 (negative term unweighted), / 2
        close(
            scalar(bce_with_logits(x, y, Some(w))),
            (3.0 * std::f32::consts::LN_2 + 2.126928) / 2.0,
        );
    }

    #[test]
    fn pos_weights_are_neg_over_pos() {
        // label 0: 1 positive of 4 -> 3; label 1: 2 of 4 -> 1; label 2: none -> 1.
        let targets = [1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        assert_eq!(pos_weights(&targets, 3), vec![3.0, 1.0, 1.0]);
    }

    #[test]
    fn focal_matches_hand_values() {
        // x = 0: p = 0.5, p_t = 0.5, BCE = ln 2; gamma 2 -> 0.25 ln 2.
        close(
            scalar(focal(t(&[&[0.0]]), t(&[&[1.0]]), 2.0, None, None)),
            0.25 * std::f32::consts::LN_2,
        );
        // x = 2, y = 1: p = 0.880797, (1-p)^2 = 0.014209, BCE = 0.126928; alpha 0.25 for positives.
        close(
            scalar(focal(t(&[&[2.0]]), t(&[&[1.0]]), 2.0, Some(0.25), None)),
            0.25 * 0.014209 * 0.126928,
        );
        // gamma 0 and no alpha is plain BCE.
        close(scalar(focal(t(&[&[-2.0]]), t(&[&[0.0]]), 0.0, None, None)), 0.126928);
    }

    #[test]
    fn cross_entropy_matches_hand_values() {
        // Equal logits over 3 labels: -ln(1/3) = 1.098612 per row.
        close(
            scalar(cross_entropy(t(&[&[0.0, 0.0, 0.0]]), t(&[&[0.0, 1.0, 0.0]]))),
            1.098612,
        );
        // logits [2, 0]: log_softmax = [-0.126928, -2.126928]; rows with targets 0 and 1.
        let x = t(&[&[2.0, 0.0], &[2.0, 0.0]]);
        let y = t(&[&[1.0, 0.0], &[0.0, 1.0]]);
        close(scalar(cross_entropy(x, y)), (0.126928 + 2.126928) / 2.0);
    }

    #[test]
    fn mse_and_mae_on_activated_outputs() {
        // softmax([0, 0]) = [0.5, 0.5]: squared errors 0.25 each; abs 0.5 each.
        let loss = Loss {
            kind: LossKind::Mse,
            activation: OutputActivation::Softmax,
            pos_weight: None,
            focal_gamma: 2.0,
            focal_alpha: None,
        };
        close(scalar(loss.compute(t(&[&[0.0, 0.0]]), t(&[&[1.0, 0.0]]))), 0.25);
        let mae_loss = Loss {
            kind: LossKind::Mae,
            ..loss.clone()
        };
        close(scalar(mae_loss.compute(t(&[&[0.0, 0.0]]), t(&[&[1.0, 0.0]]))), 0.5);
        // sigmoid(2) = 0.880797 vs 1: (0.119203)^2.
        let sig = Loss {
            activation: OutputActivation::Sigmoid,
            ..loss
        };
        close(scalar(sig.compute(t(&[&[2.0]]), t(&[&[1.0]]))), 0.119203f32.powi(2));
    }

    #[test]
    fn from_config_keeps_weights_only_where_used() {
        let mut config = TrainConfig::default();
        let w = Some(vec![2.0]);
        assert_eq!(Loss::from_config(&config, w.clone()).pos_weight, w);
        config.pos_weight = false;
        assert_eq!(Loss::from_config(&config, w.clone()).pos_weight, None);
        config.pos_weight = true;
        config.loss = LossKind::Ce;
        assert_eq!(Loss::from_config(&config, w).pos_weight, None);
    }
}
