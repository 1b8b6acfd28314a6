//! The bench's temporary store: many runs with per-label epoch rows, the long ones recorded as
//! training records them, the rest in bulk.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use serde_json::{json, Value};

use crate::data::labels::NIH_FINDINGS;
use crate::service;
use crate::service::runs::Recorder;
use crate::store::scalars::FinishedRun;
use crate::store::{NewRun, RunStatus, Store};
use crate::train::config::DEFAULT_STEP_POINTS;
use crate::train::runner::steps::step_interval;
use crate::train::{EventSink, TrainConfig, TrainEvent};
use crate::web::{FieldError, JobControl};

use super::WebBenchConfig;

/// Accepts nothing: the bench only reads.
pub(super) struct NoJobs;

impl JobControl for NoJobs {
    fn submit(&self, _config: Value) -> Result<String, Vec<FieldError>> {
        Err(vec![FieldError::new("", "the benchmark server does not train")])
    }
    fn cancel(&self, id: &str) -> Result<(), service::Error> {
        Err(service::Error::UnknownRun(id.into()))
    }
    fn resume(&self, id: &str) -> Result<(), service::Error> {
        Err(service::Error::UnknownRun(id.into()))
    }
    fn queue(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Removes the temporary store folder however the bench ends.
pub(super) struct TempDir(pub(super) PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) fn val_metrics(run: usize, epoch: usize, epochs: usize) -> Value {
    let progress = epoch as f64 / epochs.max(1) as f64;
    // The 14 NIH findings, for realistic per-label rows.
    let per_label: Vec<Value> = NIH_FINDINGS
        .iter()
        .enumerate()
        .map(|(i, label)| {
            let auroc = 0.55 + 0.3 * progress + 0.01 * ((run + i) % 7) as f64;
            json!({"label": label, "auroc": auroc, "ap": auroc - 0.3, "f1": auroc - 0.25,
                   "tp": 40 + i, "fp": 12 + epoch % 9, "fn": 9 + i % 5, "tn": 900 + epoch, "support": 49 + i})
        })
        .collect();
    json!({
        "loss": 0.9 - 0.5 * progress, "accuracy": 0.6 + 0.3 * progress,
        "mean_auroc": 0.6 + 0.3 * progress, "per_label": per_label,
    })
}

pub(super) fn train_metrics(epoch: usize, epochs: usize) -> Value {
    let progress = epoch as f64 / epochs.max(1) as f64;
    json!({"loss": 0.8 - 0.5 * progress, "accuracy": 0.62 + 0.3 * progress})
}

/// Builds the store: the long runs (run and compare pages) through the [`Recorder`], as training
/// does, the rest in bulk (the same rows and events, a hundred runs per transaction). Returns the
/// ids of the long runs.
pub(super) fn build_store(store: &Arc<Store>, config: &WebBenchConfig) -> anyhow::Result<Vec<String>> {
    let train_config = TrainConfig::default();
    let config_json = serde_json::to_value(&train_config)?;
    let long_count = config.compare.max(1).min(config.runs);
    let bulk = (long_count..config.runs).map(|run| {
        let epochs = config.list_epochs;
        let rows: Vec<Value> = (1..=epochs)
            .map(|epoch| {
                crate::service::runs::flatten_epoch(
                    epoch,
                    &train_metrics(epoch, epochs),
                    &val_metrics(run, epoch, epochs),
                    1e-3 / epoch as f64,
                    30.0,
                )
            })
            .collect();
        let best = rows
            .iter()
            .enumerate()
            .fold(None, |best: Option<(u32, f64)>, (i, row)| {
                let value = row["val_mean_auroc"].as_f64().unwrap_or(f64::MIN);
                match best {
                    Some((_, b)) if b >= value => best,
                    _ => Some((i as u32 + 1, value)),
                }
            });
        FinishedRun {
            // Ours to choose, so they cannot collide; they sort after the recorded runs' ids.
            id: format!("bench-{run:05}"),
            name: format!("bench run {run}"),
            config: config_json.clone(),
            dataset: "demo".into(),
            model: "resnet-18".into(),
            image_size: 224,
            tags: vec!["bench".into()],
            epochs: rows,
            best: best.map(|(e, v)| (e, "val_mean_auroc".to_string(), v)),
        }
    });
    store.insert_finished_runs(bulk)?;
    let mut long_runs = Vec::new();
    for run in 0..long_count {
        let epochs = config.epochs;
        let name = format!("bench run {run}");
        let new = NewRun {
            name: &name,
            config: &config_json,
            dataset: "demo",
            model: "resnet-18",
            image_size: 224,
            epochs_planned: epochs as u32,
            tags: &["bench".to_string()],
        };
        let id = store
            .create_run(&new)
            .context("cannot create a run in the benchmark store")?;
        let mut recorder = Recorder::new(store.clone(), &id, &train_config, None);
        store.set_status(&id, RunStatus::Running, None)?;
        let every = step_interval((epochs * STEPS_PER_EPOCH) as u64, DEFAULT_STEP_POINTS);
        for epoch in 1..=epochs {
            record_training_steps(&mut recorder, epoch, every);
            recorder.emit(TrainEvent::Epoch {
                epoch,
                train: train_metrics(epoch, epochs),
                val: val_metrics(run, epoch, epochs),
                lr: 1e-3 / epoch as f64,
                seconds: 30.0,
                step: Some((epoch * STEPS_PER_EPOCH) as u64),
                wall_seconds: Some(30.0 * epoch as f64),
            });
        }
        recorder.emit(TrainEvent::Finished {
            best_epoch: None,
            best_metric: None,
            stopped_early: false,
        });
        long_runs.push(id);
    }
    Ok(long_runs)
}

/// Steps per epoch of the long runs: NIH's training split at batch 16.
const STEPS_PER_EPOCH: usize = 4_900;

/// Progress events stored per epoch of the long runs (a real run stores one every 250 ms; these
/// are enough to sit between the step points the charts read).
const PROGRESS_PER_EPOCH: usize = 20;

/// One epoch's training events as a run with the default point budget stores them: its step
/// points (one every `every` steps) among progress events.
fn record_training_steps(recorder: &mut Recorder, epoch: usize, every: u64) {
    let first = ((epoch - 1) * STEPS_PER_EPOCH) as u64;
    let progress_every = STEPS_PER_EPOCH / PROGRESS_PER_EPOCH;
    for batch in 1..=STEPS_PER_EPOCH {
        let step = first + batch as u64;
        let loss = 0.9 / (1.0 + step as f64 / 5_000.0);
        if batch % progress_every == 0 {
            recorder.emit(TrainEvent::Batch {
                epoch,
                batch,
                of: STEPS_PER_EPOCH,
                loss: loss as f32,
                images_per_sec: 100.0,
                lr: 1e-3,
            });
        }
        if step.is_multiple_of(every) {
            recorder.emit(TrainEvent::Step {
                step,
                epoch,
                window_steps: every,
                loss,
                top1_accuracy: Some(0.5),
                exact_match: Some(0.3),
                images: step * 16,
                lr: 1e-3,
                wall_seconds: step as f64 * 30.0 / STEPS_PER_EPOCH as f64,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Trainer;
    use super::*;
    use crate::web::metrics;

    #[test]
    fn the_stores_best_numbers_match_reading_every_epoch() {
        // Both ways the bench stores runs (recorded like training, and in bulk) must leave the
        // same headline numbers on the run as its best epoch holds: the runs page shows those.
        let store = Arc::new(Store::open_in_memory().unwrap());
        let config = WebBenchConfig {
            runs: 5,
            list_epochs: 4,
            epochs: 7,
            compare: 2,
            sse_clients: 0,
            iterations: 1,
            sse_epochs: 1,
            trainer: Trainer::StandIn,
            demo_images: 0,
        };
        build_store(&store, &config).unwrap();
        let runs = store.runs().unwrap();
        assert_eq!(runs.len(), 5);
        for run in runs {
            let epochs = store.epochs(&run.id).unwrap();
            let best = metrics::best_epoch(&run, &epochs).unwrap();
            assert_eq!(Some(best.epoch), run.best_epoch, "run {}", run.name);
            let expected = (
                metrics::number(&best.metrics, "val_mean_auroc"),
                metrics::number(&best.metrics, "val_accuracy"),
            );
            assert!(expected.0.is_some() && expected.1.is_some());
            assert_eq!(
                (run.best_val_mean_auroc, run.best_val_accuracy),
                expected,
                "run {}",
                run.name
            );
        }
    }
}
