//! A run's checkpoints from the loop's side: restoring model, optimiser and progress to resume,
//! and saving an epoch before it is reported.

use super::progress::Progress;
use super::{ImageClassifier, RunSetup};
use crate::train::checkpoint::{CheckpointState, RunCheckpoints, Slot, FORMAT_VERSION};
use crate::train::config::TrainConfig;
use crate::train::error::{Error, Result};
use crate::train::event::{EventSink, TrainEvent};
use crate::train::optim::Optim;

/// The model, optimiser and progress of the run's last checkpoint, after checking it belongs to
/// the same training (configuration and label count).
pub(super) fn resume<M: ImageClassifier>(
    ckpts: &RunCheckpoints,
    config: &TrainConfig,
    num_labels: usize,
    model: M,
    optim: Optim,
) -> Result<(M, Optim, Progress)> {
    let state = ckpts.read_state(Slot::Last)?.ok_or_else(|| {
        Error::Resume(format!(
            "no checkpoint in {} (the run never finished an epoch)",
            ckpts.path().display()
        ))
    })?;
    if state.config.resume_key() != config.resume_key() {
        let diff = differing_fields(&state.config.resume_key(), &config.resume_key());
        return Err(Error::Resume(format!(
            "the configuration differs from the checkpoint's: {}; resume with the original settings",
            diff.join(", ")
        )));
    }
    if state.num_labels != num_labels {
        return Err(Error::Resume(format!(
            "the checkpoint has {} labels, the data {num_labels}",
            state.num_labels
        )));
    }
    let model = ckpts.load_model(Slot::Last, model)?;
    let optim = optim
        .load_bytes(ckpts.read_optim_state(Slot::Last)?)
        .map_err(|message| Error::Checkpoint {
            path: ckpts.path().to_path_buf(),
            message: format!("unreadable optimiser state: {message}"),
        })?;
    Ok((model, optim, Progress::restored(state, config)))
}

/// Fields that differ between two configs, for a resume refusal.
fn differing_fields(a: &TrainConfig, b: &TrainConfig) -> Vec<String> {
    let (a, b) = (serde_json::to_value(a).unwrap(), serde_json::to_value(b).unwrap());
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return Vec::new();
    };
    a.iter()
        .filter(|(k, v)| b.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k} (checkpoint {v}, now {})", b.get(k).cloned().unwrap_or_default()))
        .collect()
}

/// One finished epoch as the loop saves and reports it.
pub(super) struct FinishedEpoch {
    pub epoch: usize,
    pub train: serde_json::Value,
    pub val: serde_json::Value,
    /// The learning rate of its last step.
    pub lr: f64,
    pub seconds: f64,
    /// Whether it is the new best epoch.
    pub improved: bool,
}

/// Saves the epoch's checkpoint, then reports it: the epoch is reported (and so committed to the
/// store) only once its checkpoint is renamed into place and `last.json` names it. Reported
/// first, a kill between the two would leave a committed epoch whose checkpoint does not exist:
/// the resumed run would train that epoch again and report it a second time, with different
/// numbers. This way every committed epoch has its checkpoint; a kill after the checkpoint but
/// before the report leaves the epoch's event in `epoch.json`, which a resume records (see
/// `service::runs::execute`), so the epoch is neither lost nor repeated.
pub(super) fn save_and_report<M: ImageClassifier>(
    ckpts: &RunCheckpoints,
    setup: &RunSetup,
    model: &M,
    optim: &Optim,
    progress: &Progress,
    finished: FinishedEpoch,
    events: &mut dyn EventSink,
) -> Result<()> {
    let FinishedEpoch {
        epoch,
        train,
        val,
        lr,
        seconds,
        improved,
    } = finished;
    let state = CheckpointState {
        format: FORMAT_VERSION,
        run_id: setup.run_id.clone(),
        config: setup.config.clone(),
        epoch,
        train_metrics: train.clone(),
        val_metrics: val.clone(),
        schedule: progress.schedule.clone(),
        best_epoch: progress.best_epoch,
        best_metric: progress.best_metric,
        early_stop_best: progress.early_stop_best,
        epochs_without_improvement: progress.epochs_without_improvement,
        pos_weight: progress.pos_weight.clone(),
        num_labels: setup.num_labels,
        inference: setup.inference.clone(),
        clock: progress.clock,
    };
    let optim_bytes = optim.to_bytes().map_err(|message| Error::Checkpoint {
        path: ckpts.path().to_path_buf(),
        message: format!("could not encode the optimiser state: {message}"),
    })?;
    let event = TrainEvent::Epoch {
        epoch,
        train,
        val,
        lr,
        seconds,
        step: progress.clock.map(|c| c.steps),
        wall_seconds: progress.clock.map(|c| c.wall_seconds),
    };
    let record = serde_json::to_value(&event).expect("events serialise");
    let dir = ckpts
        .save_epoch(model, &optim_bytes, &state, Some(&record))
        .and_then(|dir| ckpts.point(Slot::Last, epoch).map(|()| dir))
        .map_err(|e| checkpoint_write_failed(epoch, e))?;
    events.emit(event);
    events.emit(TrainEvent::Checkpoint {
        path: dir.clone(),
        epoch,
        best: false,
    });
    if improved {
        ckpts
            .point(Slot::Best, epoch)
            .map_err(|e| checkpoint_write_failed(epoch, e))?;
        events.emit(TrainEvent::Checkpoint {
            path: dir,
            epoch,
            best: true,
        });
    }
    Ok(())
}

/// A failed checkpoint write as the run's failure: which epoch, which file, why, and what to do
/// (the usual cause is a full disk).
fn checkpoint_write_failed(epoch: usize, error: Error) -> Error {
    match error {
        Error::Io { path, source } => Error::Checkpoint {
            path,
            message: format!(
                "could not save epoch {epoch}'s checkpoint: {source}; earlier epochs are kept — free disk space, then resume the run"
            ),
        },
        other => other,
    }
}
