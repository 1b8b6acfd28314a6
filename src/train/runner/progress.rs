//! Where a run stands between epochs: the learning-rate schedule, the best epoch so far (what
//! checkpoints follow) and early stopping's count of epochs without improvement.

use super::steps::RunClock;
use super::Outcome;
use crate::train::checkpoint::CheckpointState;
use crate::train::config::{Monitor, TrainConfig};
use crate::train::optim::Schedule;

pub(super) struct Progress {
    pub schedule: Schedule,
    pub best_epoch: Option<usize>,
    pub best_metric: Option<f64>,
    pub early_stop_best: Option<f64>,
    pub epochs_without_improvement: usize,
    pub pos_weight: Option<Vec<f32>>,
    pub completed_epochs: usize,
    /// The run's step axis and clock at the end of the last completed epoch; `None` before the
    /// first, and for checkpoints written before step points existed.
    pub clock: Option<RunClock>,
}

impl Progress {
    /// A run before its first epoch.
    pub fn fresh(config: &TrainConfig, pos_weight: Option<Vec<f32>>) -> Progress {
        Progress {
            schedule: Schedule::from_config(config),
            best_epoch: None,
            best_metric: None,
            early_stop_best: None,
            epochs_without_improvement: 0,
            pos_weight,
            completed_epochs: 0,
            clock: None,
        }
    }

    /// Where a checkpointed run stood, with the epoch count asked for now (a resume may extend it).
    pub fn restored(state: CheckpointState, config: &TrainConfig) -> Progress {
        Progress {
            schedule: Schedule {
                epochs: config.epochs,
                ..state.schedule
            },
            best_epoch: state.best_epoch,
            best_metric: state.best_metric,
            early_stop_best: state.early_stop_best,
            epochs_without_improvement: state.epochs_without_improvement,
            pos_weight: state.pos_weight,
            completed_epochs: state.epoch,
            clock: state.clock,
        }
    }

    /// Where the step axis and clock continue from: the last epoch's, else (a new run, or an
    /// older checkpoint that did not keep its clock) the steps of the completed epochs, which
    /// are fixed by the data, with images and time counted from here.
    pub fn clock(&self, batches_per_epoch: u64) -> RunClock {
        self.clock.unwrap_or(RunClock {
            steps: self.completed_epochs as u64 * batches_per_epoch,
            ..RunClock::default()
        })
    }

    /// Whether a resumed run has nothing left to train: every epoch done, or early stopping's
    /// patience already spent (a process killed after the last checkpoint but before the run was
    /// marked finished).
    pub fn nothing_left(&self, config: &TrainConfig) -> bool {
        let patience_spent = config
            .early_stopping
            .is_some_and(|patience| self.completed_epochs > 0 && self.epochs_without_improvement >= patience);
        self.completed_epochs >= config.epochs || patience_spent
    }

    /// Books a finished epoch's validation metrics: the schedule's plateau step, the best epoch
    /// and early stopping. Returns whether the epoch is the new best.
    pub fn end_epoch(&mut self, epoch: usize, val_metrics: &serde_json::Value, config: &TrainConfig) -> bool {
        let checkpoint_value = monitored(val_metrics, config.checkpoint_metric);
        self.schedule.end_epoch(checkpoint_value);
        let improved = checkpoint_value.is_some_and(|v| config.checkpoint_metric.improves(v, self.best_metric));
        if improved {
            self.best_metric = checkpoint_value;
            self.best_epoch = Some(epoch);
        }
        match monitored(val_metrics, config.early_stop_metric) {
            Some(v) if config.early_stop_metric.improves(v, self.early_stop_best) => {
                self.early_stop_best = Some(v);
                self.epochs_without_improvement = 0;
            }
            _ => self.epochs_without_improvement += 1,
        }
        self.completed_epochs = epoch;
        improved
    }

    /// Whether early stopping ends the run after `epoch` (never after the last planned one).
    pub fn stops_early(&self, config: &TrainConfig, epoch: usize) -> bool {
        config
            .early_stopping
            .is_some_and(|patience| self.epochs_without_improvement >= patience && epoch < config.epochs)
    }

    pub fn finished(&self, stopped_early: bool) -> Outcome {
        Outcome::Finished {
            best_epoch: self.best_epoch,
            best_metric: self.best_metric,
            stopped_early,
        }
    }
}

/// The monitored value in a metrics object, if present and a number.
fn monitored(metrics: &serde_json::Value, monitor: Monitor) -> Option<f64> {
    metrics.get(monitor.key()).and_then(|v| v.as_f64())
}
