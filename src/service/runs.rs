//! Recorded runs: submitting a training config as a stored run, and executing it so that every
//! engine event lands in the store (epoch rows committed before anyone hears of them). Shared by
//! the CLI and the dashboard's worker; the bridge between `train` and `store`.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::datasets::DEMO_DATASET;
use crate::store::{self, EventRow, NewRun, RunStatus, Store};
use crate::train::config::Monitor;
use crate::train::job::{self, JobPaths};
use crate::train::runner::{CancelHandle, Outcome};
use crate::train::{EventSink, FieldError, TrainConfig, TrainEvent};

/// Records a new queued run for `config` and returns its id.
pub fn submit(store: &Store, config: &TrainConfig, paths: &JobPaths) -> store::Result<String> {
    let value = serde_json::to_value(config).expect("configs serialise");
    let name = config
        .name
        .clone()
        .unwrap_or_else(|| format!("{} {}px", config.architecture, config.image_size));
    store.create_run(&NewRun {
        name: &name,
        config: &value,
        dataset: &job::dataset_name(config, paths),
        model: config.architecture.name(),
        image_size: config.image_size,
        epochs_planned: config.epochs as u32,
        tags: &config.tags,
    })
}

/// Records a checkpoint made by `cxr8 import` as a finished run, so the dashboard lists it and its
/// predict page, Grad-CAM and weights download work on it. It has no epochs: its numbers are
/// whatever the imported model scores when evaluated.
pub fn register_imported(
    store: &Store,
    config: &TrainConfig,
    checkpoint_dir: &std::path::Path,
    source: &str,
) -> store::Result<String> {
    let stored = serde_json::to_value(config).expect("configs serialise");
    let name = format!("imported {source}");
    let id = store.create_run(&NewRun {
        name: &name,
        config: &stored,
        dataset: "imported",
        model: config.architecture.name(),
        image_size: config.image_size,
        epochs_planned: 0,
        tags: &["imported".to_string()],
    })?;
    store.set_runtime_info(&id, "cpu", &checkpoint_dir.to_string_lossy())?;
    store.set_status(&id, RunStatus::Done, None)?;
    Ok(id)
}

/// Points a config that names a registered data set (`dataset`) at its files. The demo set and
/// configs that give `labels` themselves are left as they are.
pub fn resolve_dataset(store: &Store, config: &mut TrainConfig) -> Result<(), FieldError> {
    let Some(name) = config.dataset.clone() else {
        return Ok(());
    };
    if name == DEMO_DATASET {
        if config.labels.is_some() {
            return Err(FieldError {
                field: "dataset".into(),
                message: "the demo data set has its own labels; leave out labels/images or pick another data set"
                    .into(),
            });
        }
        return Ok(());
    }
    let found = store.dataset(&name).map_err(|e| FieldError {
        field: "dataset".into(),
        message: e.to_string(),
    })?;
    let Some(row) = found else {
        let known: Vec<String> = std::iter::once(DEMO_DATASET.to_string())
            .chain(store.datasets().unwrap_or_default().into_iter().map(|d| d.name))
            .collect();
        return Err(FieldError {
            field: "dataset".into(),
            message: format!(
                "no data set named '{name}'; use one of: {} (add one at /datasets/new or with `cxr8 dataset add`)",
                known.join(", ")
            ),
        });
    };
    // A data set registered with missing images trains on the ones that are there.
    if row.summary.get("allow_missing").and_then(serde_json::Value::as_bool) == Some(true) {
        config.allow_missing_images = true;
    }
    config.labels = Some(row.label_file.into());
    config.images = Some(row.image_dir.into());
    // A data set whose split is given as files trains on those files as given.
    if let Some(files) = row.split_files {
        config.val_labels = Some(files.val.into());
        config.test_labels = Some(files.test.into());
    }
    Ok(())
}

/// One epoch as the flat object the store, the API and the pages use: `epoch`, `lr`, `seconds`,
/// then `train_<key>` / `val_<key>` for every metric (`val_loss`, `val_mean_auroc`, ...).
pub fn flatten_epoch(epoch: usize, train: &Value, val: &Value, lr: f64, seconds: f64) -> Value {
    let mut row = Map::new();
    row.insert("epoch".into(), json!(epoch));
    row.insert("lr".into(), json!(lr));
    row.insert("seconds".into(), json!(seconds));
    for (prefix, metrics) in [("train", train), ("val", val)] {
        if let Value::Object(map) = metrics {
            for (key, value) in map {
                row.insert(format!("{prefix}_{key}"), value.clone());
            }
        }
    }
    Value::Object(row)
}

/// An `Epoch` event's flat row ([`flatten_epoch`]) with, when the engine reported them, the
/// global `step` and the run's training clock `wall_seconds` at the epoch's end (where its
/// metrics sit on the step and wall-time axes); `None` for other events.
pub fn epoch_row(event: &TrainEvent) -> Option<Value> {
    let TrainEvent::Epoch {
        epoch,
        train,
        val,
        lr,
        seconds,
        step,
        wall_seconds,
    } = event
    else {
        return None;
    };
    let mut row = flatten_epoch(*epoch, train, val, *lr, *seconds);
    if let Some(step) = step {
        row["step"] = json!(step);
    }
    if let Some(wall_seconds) = wall_seconds {
        row["wall_seconds"] = json!(wall_seconds);
    }
    Some(row)
}

/// Something that wants to hear about stored events as they happen (the dashboard's broadcast,
/// the CLI's display). It gets the engine event and the row as stored.
pub type Listener = Box<dyn FnMut(&TrainEvent, &EventRow) + Send>;

/// The event sink that writes to the store, then tells the listener.
pub struct Recorder {
    store: Arc<Store>,
    run_id: String,
    monitor: Monitor,
    epochs_planned: usize,
    batch_size: usize,
    best: Option<(usize, f64)>,
    listener: Option<Listener>,
    /// Stops the run when an epoch cannot be recorded (disk full, store unwritable): training on
    /// would commit later epochs around a hole. The epoch's checkpoint is already written, so a
    /// resume records it (see [`record_checkpointed_epoch`]).
    stop: Option<CancelHandle>,
    /// Why the run was stopped that way; its `Cancelled` end is reported as this failure.
    write_failure: Option<String>,
    /// Events the store refused so far.
    unrecorded: usize,
}

impl Recorder {
    /// What clients receive: the event's own fields plus what a page needs without doing
    /// arithmetic (status word, overall fraction done, ETA).
    fn payload(&self, event: &TrainEvent) -> Value {
        if let Some(mut row) = epoch_row(event) {
            row["type"] = json!("epoch");
            return row;
        }
        let mut value = serde_json::to_value(event).expect("events serialise");
        match event {
            TrainEvent::Batch {
                epoch,
                batch,
                of,
                images_per_sec,
                ..
            } => {
                let planned = self.epochs_planned.max(1) as f64;
                let done_batches = (*epoch as f64 - 1.0) * *of as f64 + *batch as f64;
                let all_batches = planned * (*of).max(1) as f64;
                value["fraction"] = json!((done_batches / all_batches).min(1.0));
                if *images_per_sec > 0.0 {
                    let seconds_per_batch = self.batch_size as f64 / *images_per_sec as f64;
                    value["eta_seconds"] = json!(((all_batches - done_batches).max(0.0) * seconds_per_batch).round());
                }
            }
            TrainEvent::Started { .. } => {
                // The config is already stored with the run; clients need not receive it again.
                value.as_object_mut().map(|m| m.remove("config"));
                value["status"] = json!("running");
            }
            TrainEvent::Finished { .. } => value["status"] = json!("done"),
            TrainEvent::Failed { .. } => value["status"] = json!("failed"),
            TrainEvent::Cancelled => value["status"] = json!("cancelled"),
            TrainEvent::WeightsLoaded { .. } => value["message"] = json!(event.weights_summary()),
            TrainEvent::Epoch { .. }
            | TrainEvent::Step { .. }
            | TrainEvent::Checkpoint { .. }
            | TrainEvent::Test { .. } => {}
        }
        value
    }

    pub fn new(store: Arc<Store>, run_id: &str, config: &TrainConfig, listener: Option<Listener>) -> Self {
        // A resumed run keeps its best so far.
        let best = store
            .run(run_id)
            .ok()
            .flatten()
            .and_then(|r| Some((r.best_epoch? as usize, r.best_metric?)));
        Recorder {
            store,
            run_id: run_id.into(),
            monitor: config.checkpoint_metric,
            epochs_planned: config.epochs,
            batch_size: config.batch_size,
            best,
            listener,
            stop: None,
            write_failure: None,
            unrecorded: 0,
        }
    }

    /// Cancels `run` when an epoch cannot be recorded; the run then ends `failed`, saying why.
    pub fn stop_on_write_failure(mut self, run: CancelHandle) -> Self {
        self.stop = Some(run);
        self
    }

    fn record(&mut self, event: &TrainEvent) -> store::Result<EventRow> {
        let id = &self.run_id;
        let payload = self.payload(event);
        let kind = kind(event);
        // A change of state and the event announcing it are one transaction (see
        // `Store::set_status_with_event`); a kill can never leave one without the other.
        let seq = match event {
            TrainEvent::Started { device, .. } => {
                self.store.set_status(id, RunStatus::Running, None)?;
                let ckpt = self.store.run(id)?.and_then(|r| r.checkpoint_dir).unwrap_or_default();
                self.store.set_runtime_info(id, device, &ckpt)?;
                // A kill before this event leaves the run `running`, which a restart turns into
                // `interrupted` with an event of its own.
                self.store.append_event(id, kind, &payload)?
            }
            TrainEvent::Epoch { epoch, val, .. } => {
                let row = epoch_row(event).expect("an epoch event");
                let value = val.get(self.monitor.key()).and_then(Value::as_f64);
                if let Some(value) = value {
                    let better = match self.best {
                        None => true,
                        Some((_, best)) if self.monitor.higher_is_better() => value > best,
                        Some((_, best)) => value < best,
                    };
                    if better {
                        self.best = Some((*epoch, value));
                    }
                }
                let best = self
                    .best
                    .map(|(e, v)| (e as u32, format!("val_{}", self.monitor.key()), v));
                // The row and its event commit together, before any client hears of the epoch,
                // so a client that hears of it can always read it.
                self.store.record_epoch_with_event(
                    id,
                    *epoch as u32,
                    &row,
                    best.as_ref().map(|(e, n, v)| (*e, n.as_str(), *v)),
                    &payload,
                )?
            }
            TrainEvent::Test { report } => {
                let report = serde_json::to_value(report).expect("reports serialise");
                self.store.set_test_with_event(id, &report, kind, &payload)?
            }
            TrainEvent::Finished { .. } => {
                self.store
                    .set_status_with_event(id, RunStatus::Done, None, kind, &payload)?
            }
            TrainEvent::Failed { message } => {
                self.store
                    .set_status_with_event(id, RunStatus::Failed, Some(message), kind, &payload)?
            }
            TrainEvent::Cancelled => {
                self.store
                    .set_status_with_event(id, RunStatus::Cancelled, None, kind, &payload)?
            }
            TrainEvent::Batch { .. }
            | TrainEvent::Step { .. }
            | TrainEvent::Checkpoint { .. }
            | TrainEvent::WeightsLoaded { .. } => self.store.append_event(id, kind, &payload)?,
        };
        Ok(EventRow {
            seq,
            run_id: id.clone(),
            kind: kind.into(),
            payload,
            at: store::now(),
        })
    }
}

/// The SSE event name of an engine event.
pub fn kind(event: &TrainEvent) -> &'static str {
    match event {
        TrainEvent::Batch { .. } => "progress",
        TrainEvent::Step { .. } => "step",
        TrainEvent::Epoch { .. } => "epoch",
        TrainEvent::Checkpoint { .. } => "checkpoint",
        TrainEvent::Test { .. } => "test",
        TrainEvent::WeightsLoaded { .. } => "weights",
        TrainEvent::Started { .. } => "status",
        TrainEvent::Finished { .. } | TrainEvent::Failed { .. } | TrainEvent::Cancelled => "done",
    }
}

impl EventSink for Recorder {
    fn emit(&mut self, event: TrainEvent) {
        let event = match (event, &self.write_failure) {
            (TrainEvent::Cancelled, Some(message)) => TrainEvent::Failed {
                message: message.clone(),
            },
            (event, _) => event,
        };
        match self.record(&event) {
            Ok(row) => {
                if let Some(listener) = &mut self.listener {
                    listener(&event, &row);
                }
            }
            Err(e) => {
                self.unrecorded += 1;
                // A store refusing writes (a full disk) fails every progress event of the epoch
                // that is still training: the first, a tally, and every other kind are logged.
                let progress = matches!(
                    event,
                    TrainEvent::Batch { .. } | TrainEvent::Step { .. } | TrainEvent::Checkpoint { .. }
                );
                if !progress || self.unrecorded == 1 || self.unrecorded.is_multiple_of(1000) {
                    tracing::error!(
                        "run {}: could not record {} event ({} not recorded so far): {e}",
                        self.run_id,
                        kind(&event),
                        self.unrecorded
                    );
                }
                if let (TrainEvent::Epoch { epoch, .. }, Some(stop)) = (&event, &self.stop) {
                    if self.write_failure.is_none() {
                        self.write_failure = Some(epoch_write_failure(*epoch, &e));
                    }
                    stop.cancel();
                }
                // Other events (progress, checkpoint notices) are not worth stopping for.
            }
        }
    }
}

/// Why a run stopped when epoch `epoch` could not be recorded: the engine reports an epoch only
/// once its checkpoint is saved, so the epochs before it are stored and a resume records it.
fn epoch_write_failure(epoch: usize, e: &store::Error) -> String {
    let kept = match epoch {
        1 => "epoch 1's checkpoint is saved".to_string(),
        2 => "epoch 1 is stored and epoch 2's checkpoint is saved".to_string(),
        _ => format!(
            "epochs 1–{} are stored and epoch {epoch}'s checkpoint is saved",
            epoch - 1
        ),
    };
    match e {
        store::Error::DiskFull { dir, .. } => format!(
            "could not record epoch {epoch}: the run store's disk is full (no space left under {}); {kept} — \
             free disk space there, then resume the run: it records epoch {epoch} from its checkpoint and goes on",
            dir.display()
        ),
        other => format!(
            "could not record epoch {epoch} in the run store: {other}; {kept} — free disk space, then resume the run"
        ),
    }
}

/// Who hears of a run as it goes, besides the store.
#[derive(Default)]
pub struct Watchers {
    /// Each event once recorded (the queue's live broadcast, the CLI's display).
    pub events: Option<Listener>,
    /// The data preparation's progress (the CLI's bar).
    pub data_progress: Option<job::DataProgress>,
}

/// Executes a stored run on the calling thread, recording everything and telling `watchers`.
pub fn execute(
    store: Arc<Store>,
    run_id: &str,
    config: &TrainConfig,
    paths: &JobPaths,
    resume: bool,
    cancel: &CancelHandle,
    watchers: Watchers,
) -> crate::train::Result<Outcome> {
    let Watchers {
        events: listener,
        data_progress: progress,
    } = watchers;
    let ckpt = paths.ckpt_dir.join(run_id);
    let _ = store.set_runtime_info(run_id, "", &ckpt.display().to_string());
    let _ = store.set_status(run_id, RunStatus::Running, None);
    let mut recorder = Recorder::new(store.clone(), run_id, config, listener).stop_on_write_failure(cancel.clone());
    if resume {
        record_checkpointed_epoch(&store, run_id, paths, &mut recorder);
    }
    let outcome = job::run_job(config, run_id, paths, resume, &mut recorder, cancel, progress)?;
    match recorder.write_failure {
        Some(message) => Err(crate::train::Error::Io {
            path: store.path().to_path_buf(),
            source: std::io::Error::other(message),
        }),
        None => Ok(outcome),
    }
}

/// The engine reports an epoch only after its checkpoint is in place, so a process killed in
/// between leaves the last checkpoint's epoch unrecorded. Before resuming, record it from the
/// event saved with the checkpoint, unless the store has it: the resume continues after that
/// epoch and would never report it again.
fn record_checkpointed_epoch(store: &Store, run_id: &str, paths: &JobPaths, recorder: &mut Recorder) {
    use crate::train::checkpoint::{RunCheckpoints, Slot};
    let record = match RunCheckpoints::new(&paths.ckpt_dir, run_id).read_epoch_record(Slot::Last) {
        Ok(Some(record)) => record,
        Ok(None) => return,
        // The resume itself reads the same checkpoint and fails with the reason.
        Err(e) => return tracing::warn!("run {run_id}: {e}"),
    };
    let (event, epoch) = match serde_json::from_value::<TrainEvent>(record) {
        Ok(event @ TrainEvent::Epoch { epoch, .. }) => (event, epoch),
        Ok(_) | Err(_) => return tracing::warn!("run {run_id}: the last checkpoint's epoch record is not an epoch"),
    };
    // The row and its event are two writes; a kill between them leaves the row alone, so both
    // are checked (recording again writes the same row, from the same record).
    let has_row = store
        .epochs(run_id)
        .map(|rows| rows.iter().any(|r| r.epoch as usize == epoch));
    let has_event = store.events_after(run_id, 0).map(|events| {
        events
            .iter()
            .any(|e| e.kind == "epoch" && e.payload["epoch"].as_u64() == Some(epoch as u64))
    });
    match (has_row, has_event) {
        (Ok(true), Ok(true)) => {}
        (Ok(_), Ok(_)) => {
            tracing::info!("run {run_id}: recording epoch {epoch} from its checkpoint");
            recorder.emit(event);
        }
        (Err(e), _) | (_, Err(e)) => tracing::warn!("run {run_id}: {e}"),
    }
}
