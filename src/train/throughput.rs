//! Training and inference throughput of one model on random inputs: the same step the runner
//! takes (forward, [`Loss`] BCE on logits, backward, [`Optim`] Adam step), timed after a few
//! warm-up steps, then inference batches on the inner backend. `cxr8 bench train` reports it; the
//! new-run form's duration estimate (`service::estimate`) measures a short, time-capped version.

use std::time::{Duration, Instant};

use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::{Distribution, FloatDType};
use serde::Serialize;

use crate::model::{Classifier, ModelSpec};
use crate::train::backend::Precision;
use crate::train::config::{LossKind, OptimizerKind, OutputActivation, TrainConfig};
use crate::train::loss::Loss;
use crate::train::optim::Optim;

/// Labels of the NIH data set: the head the real runs train.
pub const BENCH_LABELS: usize = 14;

/// What to measure.
#[derive(Debug, Clone, PartialEq)]
pub struct StepTimingConfig {
    pub spec: ModelSpec,
    /// Image side in px.
    pub size: usize,
    pub batch: usize,
    /// Timed steps (training) and batches (inference).
    pub steps: usize,
    /// Untimed steps first: allocator, autotune and caches settle.
    pub warmup: usize,
    pub seed: u64,
    /// The float format of the model and its inputs, as the run would train it.
    pub precision: Precision,
    /// Stop timing training steps (and, separately, inference batches) once this much time has
    /// gone, after at least one of each; `None` times all `steps`. A 224-px DenseNet step takes
    /// seconds on two CPU cores, and an estimate must answer while the user waits.
    pub time_cap: Option<Duration>,
}

/// Measured throughput; `peak_rss_bytes` is the process's high-water mark (VmHWM) at the end.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepTiming {
    pub model: String,
    pub size: usize,
    pub batch: usize,
    /// Timed training steps (fewer than asked for when the time cap was reached).
    pub steps: usize,
    /// Timed inference batches.
    pub infer_batches: usize,
    pub warmup: usize,
    pub params: usize,
    pub train_ms_per_step: f64,
    pub train_images_per_s: f64,
    pub infer_ms_per_batch: f64,
    pub infer_images_per_s: f64,
    /// The last training loss: finite, or the benchmark measured something broken.
    pub final_loss: f32,
    pub peak_rss_bytes: Option<u64>,
}

/// A benchmark setting that cannot be measured, with the flag to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnmeasurableSetting(String);

impl StepTimingConfig {
    fn check(&self) -> Result<(), UnmeasurableSetting> {
        if self.batch == 0 || self.steps == 0 {
            return Err(UnmeasurableSetting(
                "--batch and --steps must be at least 1".to_string(),
            ));
        }
        if self.size < 32 {
            return Err(UnmeasurableSetting(format!(
                "--size {} is too small; give at least 32 px",
                self.size
            )));
        }
        Ok(())
    }
}

/// Runs the benchmark on `device` (an autodiff device; inference uses its plain counterpart).
/// Errors only for settings that cannot be measured.
pub fn measure_steps(config: &StepTimingConfig, device: &Device) -> Result<StepTiming, UnmeasurableSetting> {
    config.check()?;
    device.seed(config.seed);
    let mut model: Classifier = config.precision.cast_module(config.spec.init(BENCH_LABELS, device));
    let params = model.num_params();
    let dtype = config.precision.float_dtype();
    let train_config = TrainConfig {
        optimizer: OptimizerKind::Adam,
        loss: LossKind::Bce,
        architecture: config.spec.architecture,
        ..TrainConfig::default()
    };
    let mut optim = Optim::from_config(&train_config);
    let loss_fn = Loss {
        kind: LossKind::Bce,
        activation: OutputActivation::Sigmoid,
        pos_weight: None,
        focal_gamma: train_config.focal_gamma,
        focal_alpha: None,
    };
    let shape = [config.batch, 1, config.size, config.size];
    let images = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), device).cast(dtype);
    let targets = Tensor::<2>::random([config.batch, BENCH_LABELS], Distribution::Bernoulli(0.3), device);

    let mut final_loss = f32::NAN;
    let mut step = |model: Classifier| -> Classifier {
        // Logits in f32 for the loss, as the runner computes it.
        let logits = model.forward(images.clone()).cast(FloatDType::F32);
        let loss = loss_fn.compute(logits, targets.clone());
        // Reading the loss each step as the runner does (it also syncs an asynchronous device).
        final_loss = loss.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        optim.step(train_config.lr, model, grads)
    };
    for _ in 0..config.warmup {
        model = step(model);
    }
    sync(device);
    let start = Instant::now();
    let mut steps = 0;
    while steps < config.steps && (steps == 0 || !over(config.time_cap, start)) {
        model = step(model);
        steps += 1;
        sync(device);
    }
    let train_seconds = start.elapsed().as_secs_f64();

    let inference = model.valid();
    let inner_images = images.inner();
    let infer = || {
        let logits = inference.forward(inner_images.clone());
        let values: f32 = logits.sum().into_scalar::<f32>();
        std::hint::black_box(values);
    };
    for _ in 0..config.warmup {
        infer();
    }
    let start = Instant::now();
    let mut infer_batches = 0;
    while infer_batches < config.steps && (infer_batches == 0 || !over(config.time_cap, start)) {
        infer();
        infer_batches += 1;
    }
    let infer_seconds = start.elapsed().as_secs_f64();

    let batch = config.batch as f64;
    Ok(StepTiming {
        model: config.spec.architecture.name().to_string(),
        size: config.size,
        batch: config.batch,
        steps,
        infer_batches,
        warmup: config.warmup,
        params,
        train_ms_per_step: 1e3 * train_seconds / steps as f64,
        train_images_per_s: steps as f64 * batch / train_seconds,
        infer_ms_per_batch: 1e3 * infer_seconds / infer_batches as f64,
        infer_images_per_s: infer_batches as f64 * batch / infer_seconds,
        final_loss,
        peak_rss_bytes: peak_rss_bytes(),
    })
}

/// Whether a capped phase that began at `start` has used its time (the loops time one step
/// before asking).
fn over(cap: Option<Duration>, start: Instant) -> bool {
    cap.is_some_and(|cap| start.elapsed() >= cap)
}

/// Waits for queued device work; a failure here shows up as a wrong time, never as a crash.
fn sync(device: &Device) {
    if let Err(e) = device.sync() {
        tracing::warn!("device sync failed: {e:?}");
    }
}

/// The process's peak resident memory (VmHWM in /proc/self/status), where Linux tells it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_hwm(&status)
}

fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let mut parts = line["VmHWM:".len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => Some(value * 1024),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Architecture, NormKind};

    #[test]
    fn vm_hwm_is_read_in_bytes() {
        let status = "Name:\tcxr8\nVmPeak:\t  200 kB\nVmHWM:\t  1536 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(1536 * 1024));
        assert_eq!(parse_vm_hwm("Name:\tcxr8\n"), None);
    }

    /// A narrow simple CNN on 32-px images, two at a time: milliseconds a step.
    fn tiny_simple_cnn(steps: usize, warmup: usize, time_cap: Option<Duration>) -> StepTimingConfig {
        StepTimingConfig {
            spec: ModelSpec {
                architecture: Architecture::SimpleCnn,
                norm: NormKind::Batch,
                width: 0.125,
                dropout: 0.0,
            },
            size: 32,
            batch: 2,
            steps,
            warmup,
            seed: 1,
            precision: Precision::F32,
            time_cap,
        }
    }

    #[test]
    fn tiny_simple_cnn_reports_positive_finite_throughput() {
        let result = measure_steps(&tiny_simple_cnn(2, 1, None), &Device::flex().autodiff()).unwrap();
        assert_eq!(result.model, "simple-cnn");
        assert!(result.params > 0);
        assert!(result.final_loss.is_finite(), "{result:?}");
        for rate in [result.train_images_per_s, result.infer_images_per_s] {
            assert!(rate.is_finite() && rate > 0.0, "{result:?}");
        }
        if cfg!(target_os = "linux") {
            assert!(result.peak_rss_bytes.unwrap() > 0);
        }
    }

    #[test]
    fn a_time_cap_stops_after_one_timed_step_and_batch() {
        let config = tiny_simple_cnn(1000, 0, Some(Duration::ZERO));
        let result = measure_steps(&config, &Device::flex().autodiff()).unwrap();
        assert_eq!((result.steps, result.infer_batches), (1, 1), "{result:?}");
        assert!(result.train_ms_per_step > 0.0 && result.infer_ms_per_batch > 0.0);
    }

    #[test]
    fn zero_steps_or_tiny_images_are_refused() {
        let mut config = StepTimingConfig {
            spec: ModelSpec::default(),
            size: 64,
            batch: 1,
            steps: 0,
            warmup: 0,
            seed: 1,
            precision: Precision::F32,
            time_cap: None,
        };
        assert!(measure_steps(&config, &Device::flex().autodiff()).is_err());
        config.steps = 1;
        config.size = 8;
        let message = measure_steps(&config, &Device::flex().autodiff())
            .unwrap_err()
            .to_string();
        assert!(message.contains("--size"), "{message}");
    }
}
