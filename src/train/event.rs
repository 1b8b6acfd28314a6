//! [`TrainEvent`]: everything a run reports, as plain serde data. It is all that crosses from the
//! training thread to the store and the web, through an [`EventSink`].

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::config::TrainConfig;

/// One thing that happened in a run. Serialised with a `"type"` tag, e.g. `{"type":"batch",...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TrainEvent {
    Started {
        config: Box<TrainConfig>,
        run_id: String,
        num_params: usize,
        device: String,
        /// First epoch this session runs (1-based; above 1 when resuming).
        first_epoch: usize,
    },
    /// The model starts from PyTorch weights (`init_weights`): how many tensors were loaded and
    /// what became of the classifier head.
    WeightsLoaded {
        path: PathBuf,
        tensors: usize,
        head_kept: bool,
        /// Why the file's head was not taken (it was re-initialised), when it was not.
        head_note: Option<String>,
        /// Whether a three-channel stem was folded to one channel.
        stem_folded: bool,
    },
    /// A training step finished. `batch` is 1-based, `of` the number of batches in the epoch.
    Batch {
        epoch: usize,
        batch: usize,
        of: usize,
        loss: f32,
        images_per_sec: f32,
        lr: f64,
    },
    /// A point of the step-level training curve (see [`super::runner::steps`]): the training
    /// loss and accuracies over the window of steps since the previous point, so every step
    /// counts once and the line is smoothed by averaging rather than by sampling one batch.
    Step {
        /// Global step: batches trained since the run began, 1-based, counted on across epochs
        /// and resumes.
        step: u64,
        epoch: usize,
        /// Steps in the window this point averages.
        window_steps: u64,
        /// Mean training loss per image over the window.
        loss: f64,
        /// Over the window: the share of images whose highest output is a positive label (of
        /// those with one; single-label runs' accuracy) and the share with every label right at
        /// 0.5 (exact match; multi-label runs' accuracy). `None` when no image qualified.
        top1_accuracy: Option<f64>,
        exact_match: Option<f64>,
        /// Training images seen since the run began.
        images: u64,
        /// The learning rate of the window's last step.
        lr: f64,
        /// Seconds of training since the run began; a resumed run continues from its last
        /// checkpoint's clock.
        wall_seconds: f64,
    },
    /// An epoch finished; metrics are objects that include `"loss"`.
    Epoch {
        epoch: usize,
        train: serde_json::Value,
        val: serde_json::Value,
        lr: f64,
        seconds: f64,
        /// The global step and the run's training clock when the epoch (with its validation)
        /// ended, which place epoch-level metrics on the step and wall-time axes. Absent in
        /// events recorded before step points existed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wall_seconds: Option<f64>,
    },
    Checkpoint {
        path: PathBuf,
        epoch: usize,
        /// True for the best-so-far checkpoint, false for the last-epoch one.
        best: bool,
    },
    /// The best checkpoint's held-out test results (just before `Finished`, or on demand).
    Test {
        report: Box<super::heldout::TestReport>,
    },
    Finished {
        best_epoch: Option<usize>,
        best_metric: Option<f64>,
        /// True when early stopping ended the run before its last epoch.
        stopped_early: bool,
    },
    Failed {
        message: String,
    },
    Cancelled,
}

impl TrainEvent {
    /// A sentence for a `WeightsLoaded` event (the CLI prints it; the run page's log shows it).
    pub fn weights_summary(&self) -> Option<String> {
        let TrainEvent::WeightsLoaded {
            path,
            tensors,
            head_note,
            stem_folded,
            ..
        } = self
        else {
            return None;
        };
        let stem = if *stem_folded { ", RGB stem folded to gray" } else { "" };
        let head = match head_note {
            Some(note) => format!("; classifier head re-initialised: {note}"),
            None => "; classifier head kept".into(),
        };
        Some(format!(
            "started from {}: {tensors} tensors{stem}{head}",
            path.display()
        ))
    }

    /// Events after which nothing more comes.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            TrainEvent::Finished { .. } | TrainEvent::Failed { .. } | TrainEvent::Cancelled
        )
    }
}

/// Where a run's events go. Implemented for `mpsc::Sender` and closures; a sink whose receiver
/// has gone away just drops events (the run carries on, its checkpoints still count).
pub trait EventSink: Send {
    fn emit(&mut self, event: TrainEvent);
}

impl EventSink for std::sync::mpsc::Sender<TrainEvent> {
    fn emit(&mut self, event: TrainEvent) {
        let _ = self.send(event);
    }
}

impl<F: FnMut(TrainEvent) + Send> EventSink for F {
    fn emit(&mut self, event: TrainEvent) {
        self(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_with_a_type_tag() {
        let events = [
            TrainEvent::Batch {
                epoch: 1,
                batch: 2,
                of: 3,
                loss: 0.5,
                images_per_sec: 10.0,
                lr: 1e-3,
            },
            TrainEvent::Cancelled,
            TrainEvent::Failed { message: "x".into() },
        ];
        for event in events {
            let json = serde_json::to_value(&event).unwrap();
            assert!(json["type"].is_string());
            assert_eq!(serde_json::from_value::<TrainEvent>(json).unwrap(), event);
        }
        assert_eq!(
            serde_json::to_value(TrainEvent::Cancelled).unwrap()["type"],
            "cancelled"
        );
    }

    #[test]
    fn terminal_events() {
        assert!(TrainEvent::Cancelled.is_terminal());
        assert!(!TrainEvent::Checkpoint {
            path: "a".into(),
            epoch: 1,
            best: true
        }
        .is_terminal());
    }
}
