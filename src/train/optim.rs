//! Optimisers (SGD with momentum/Nesterov, Adam, AdamW; weight decay; gradient-norm clipping)
//! built from a [`TrainConfig`], their state as bytes for checkpoints, and the learning-rate
//! [`Schedule`] (constant, step, cosine, plateau; linear warm-up) with its state as serde data.

use burn::grad_clipping::GradientClippingConfig;
use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::store::RecordError;
use burn::tensor::Bytes;
use serde::{Deserialize, Serialize};

use super::config::{Monitor, OptimizerKind, ScheduleKind, TrainConfig};

/// Adam's epsilon. Burn defaults to 1e-5; 1e-8 is the value of the Adam paper (Kingma & Ba 2015)
/// and of the PyTorch runs we compare against.
const ADAM_EPSILON: f32 = 1e-8;

/// The run's optimiser (SGD, Adam or AdamW, as its config says) with its per-parameter state.
#[derive(Clone)]
pub struct Optim {
    inner: ModuleOptimizer,
}

impl Optim {
    pub fn from_config(config: &TrainConfig) -> Self {
        let clip = config.grad_clip.map(GradientClippingConfig::Norm);
        let decay = (config.weight_decay > 0.0).then(|| WeightDecayConfig::new(config.weight_decay));
        let inner = match config.optimizer {
            OptimizerKind::Sgd => {
                // Dampening 0 as in the usual SGD-with-momentum (and required by Nesterov).
                let momentum = (config.momentum > 0.0).then_some(MomentumConfig {
                    momentum: config.momentum,
                    dampening: 0.0,
                    nesterov: config.nesterov,
                });
                SgdConfig::new()
                    .with_momentum(momentum)
                    .with_weight_decay(decay)
                    .with_gradient_clipping(clip)
                    .init()
            }
            OptimizerKind::Adam => AdamConfig::new()
                .with_beta_1(config.beta1)
                .with_beta_2(config.beta2)
                .with_epsilon(ADAM_EPSILON)
                .with_weight_decay(decay)
                .with_grad_clipping(clip)
                .init(),
            OptimizerKind::AdamW => AdamWConfig::new()
                .with_beta_1(config.beta1)
                .with_beta_2(config.beta2)
                .with_epsilon(ADAM_EPSILON)
                .with_weight_decay(config.weight_decay)
                .with_grad_clipping(clip)
                .init(),
        };
        Optim { inner }
    }

    pub fn step<M: Module>(&mut self, lr: f64, module: M, grads: GradientsParams) -> M {
        self.inner.step(lr, module, grads)
    }

    /// The optimiser state (momenta) as bytes, for a checkpoint.
    pub fn to_bytes(&self) -> Result<Vec<u8>, RecordError> {
        self.inner.into_bytes().map(|bytes| bytes.to_vec())
    }

    /// Restores state written by [`Optim::to_bytes`] for the same optimiser kind and model.
    pub fn load_bytes(self, bytes: Vec<u8>) -> Result<Self, RecordError> {
        // Burn puts the loaded state on its default device (moved to the parameters' device at
        // the next step), so that default must exist here.
        super::backend::ensure_default_device();
        let inner = self.inner.from_bytes(Bytes::from_bytes_vec(bytes))?;
        Ok(Optim { inner })
    }
}

/// Warm-up never starts from exactly zero: the first steps would be wasted.
const MIN_WARMUP_FACTOR: f64 = 0.01;

/// The learning rate as a function of training progress, plus the plateau state. Serialised into
/// checkpoints so a resumed run continues the same curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub kind: ScheduleKind,
    pub base_lr: f64,
    pub epochs: usize,
    pub warmup_epochs: usize,
    pub step_size: usize,
    pub step_gamma: f64,
    pub min_lr: f64,
    pub plateau_factor: f64,
    pub plateau_patience: usize,
    pub monitor: Monitor,
    /// Product of the plateau decays so far.
    pub plateau_scale: f64,
    pub plateau_best: Option<f64>,
    pub plateau_bad_epochs: usize,
}

impl Schedule {
    pub fn from_config(config: &TrainConfig) -> Schedule {
        Schedule {
            kind: config.schedule,
            base_lr: config.lr,
            epochs: config.epochs,
            warmup_epochs: config.warmup_epochs,
            step_size: config.step_size.max(1),
            step_gamma: config.step_gamma,
            min_lr: config.min_lr,
            plateau_factor: config.plateau_factor,
            plateau_patience: config.plateau_patience,
            monitor: config.checkpoint_metric,
            plateau_scale: 1.0,
            plateau_best: None,
            plateau_bad_epochs: 0,
        }
    }

    /// The rate for a step in 0-based `epoch`, `progress` (0 to 1) of the way through it.
    pub fn lr(&self, epoch: usize, progress: f64) -> f64 {
        let t = epoch as f64 + progress.clamp(0.0, 1.0);
        let warmup = self.warmup_epochs as f64;
        let warm = if t < warmup {
            (t / warmup).max(MIN_WARMUP_FACTOR)
        } else {
            1.0
        };
        let after = epoch.saturating_sub(self.warmup_epochs);
        let rate = match self.kind {
            ScheduleKind::Constant => self.base_lr,
            ScheduleKind::Step => self.base_lr * self.step_gamma.powi((after / self.step_size) as i32),
            ScheduleKind::Cosine => {
                let span = (self.epochs.saturating_sub(self.warmup_epochs)).max(1) as f64;
                let done = ((t - warmup).max(0.0) / span).min(1.0);
                self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * done).cos())
            }
            ScheduleKind::Plateau => self.base_lr * self.plateau_scale,
        };
        rate * warm
    }

    /// Feeds the end-of-epoch monitored value (plateau schedule only; others ignore it).
    pub fn end_epoch(&mut self, monitored: Option<f64>) {
        if self.kind != ScheduleKind::Plateau {
            return;
        }
        match monitored {
            Some(v) if self.monitor.improves(v, self.plateau_best) => {
                self.plateau_best = Some(v);
                self.plateau_bad_epochs = 0;
            }
            _ => {
                self.plateau_bad_epochs += 1;
                if self.plateau_bad_epochs >= self.plateau_patience.max(1) {
                    self.plateau_scale *= self.plateau_factor;
                    self.plateau_bad_epochs = 0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(edit: impl FnOnce(&mut TrainConfig)) -> Schedule {
        let mut config = TrainConfig {
            lr: 0.1,
            epochs: 10,
            ..TrainConfig::default()
        };
        edit(&mut config);
        Schedule::from_config(&config)
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn constant_and_step() {
        let s = schedule(|_| {});
        close(s.lr(0, 0.0), 0.1);
        close(s.lr(9, 0.9), 0.1);
        let s = schedule(|c| {
            c.schedule = ScheduleKind::Step;
            c.step_size = 3;
            c.step_gamma = 0.5;
        });
        let per_epoch: Vec<f64> = (0..7).map(|e| s.lr(e, 0.5)).collect();
        let expected = [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025];
        for (a, b) in per_epoch.iter().zip(expected) {
            close(*a, b);
        }
    }

    #[test]
    fn cosine_with_warmup() {
        let s = schedule(|c| {
            c.schedule = ScheduleKind::Cosine;
            c.warmup_epochs = 2;
            c.min_lr = 0.0;
        });
        close(s.lr(0, 0.0), 0.1 * MIN_WARMUP_FACTOR);
        close(s.lr(0, 0.5), 0.1 * 0.25);
        close(s.lr(1, 0.0), 0.1 * 0.5);
        close(s.lr(2, 0.0), 0.1);
        // 8 epochs of cosine after warm-up: half-way (epoch 6) is half the rate, the end is min_lr.
        close(s.lr(6, 0.0), 0.05);
        close(s.lr(9, 1.0), 0.0);
    }

    #[test]
    fn plateau_decays_after_patience_epochs_without_improvement() {
        let mut s = schedule(|c| {
            c.schedule = ScheduleKind::Plateau;
            c.plateau_patience = 2;
            c.plateau_factor = 0.5;
            c.checkpoint_metric = Monitor::ValLoss;
        });
        s.end_epoch(Some(1.0));
        close(s.lr(1, 0.0), 0.1);
        s.end_epoch(Some(1.1));
        close(s.lr(2, 0.0), 0.1);
        s.end_epoch(Some(1.2));
        close(s.lr(3, 0.0), 0.05);
        s.end_epoch(Some(0.5));
        s.end_epoch(Some(0.6));
        close(s.lr(5, 0.0), 0.05);
        // The state survives serde, so a resumed run continues the curve.
        let back: Schedule = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }
}
