//! Recorded runs: submitting a training config as a stored run, and executing it so that every
//! engine event lands in the store (epoch rows committed before anyone hears of them). Shared by
//! the CLI and the dashboard's worker; the bridge between `train` and `store`.

use std::sync::Arc;

use serde_json::{json, Map, Value};

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
    Ok(())
}

/// The built-in synthetic data set's name.
pub const DEMO_DATASET: &str = "demo";

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
}

impl Recorder {
    /// What clients receive: the event's own fields plus what a page needs without doing
    /// arithmetic (status word, overall fraction done, ETA).
    fn payload(&self, event: &TrainEvent) -> Value {
        if let TrainEvent::Epoch {
            epoch,
            train,
            val,
            lr,
            seconds,
        } = event
        {
            let mut row = flatten_epoch(*epoch, train, val, *lr, *seconds);
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
            TrainEvent::Epoch { .. } | TrainEvent::Checkpoint { .. } => {}
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
        }
    }

    fn record(&mut self, event: &TrainEvent) -> store::Result<EventRow> {
        let id = &self.run_id;
        match event {
            TrainEvent::Started { device, .. } => {
                self.store.set_status(id, RunStatus::Running, None)?;
                let ckpt = self.store.run(id)?.and_then(|r| r.checkpoint_dir).unwrap_or_default();
                self.store.set_runtime_info(id, device, &ckpt)?;
            }
            TrainEvent::Epoch {
                epoch,
                train,
                val,
                lr,
                seconds,
            } => {
                let row = flatten_epoch(*epoch, train, val, *lr, *seconds);
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
                // Committed before the event row exists, so a client that hears of the epoch
                // can always read it.
                self.store.record_epoch(
                    id,
                    *epoch as u32,
                    &row,
                    best.as_ref().map(|(e, n, v)| (*e, n.as_str(), *v)),
                )?;
            }
            TrainEvent::Finished { .. } => self.store.set_status(id, RunStatus::Done, None)?,
            TrainEvent::Failed { message } => self.store.set_status(id, RunStatus::Failed, Some(message))?,
            TrainEvent::Cancelled => self.store.set_status(id, RunStatus::Cancelled, None)?,
            TrainEvent::Batch { .. } | TrainEvent::Checkpoint { .. } => {}
        }
        let payload = self.payload(event);
        let seq = self.store.append_event(id, kind(event), &payload)?;
        Ok(EventRow {
            seq,
            run_id: id.clone(),
            kind: kind(event).into(),
            payload,
            at: store::now(),
        })
    }
}

/// The SSE event name of an engine event.
pub fn kind(event: &TrainEvent) -> &'static str {
    match event {
        TrainEvent::Batch { .. } => "progress",
        TrainEvent::Epoch { .. } => "epoch",
        TrainEvent::Checkpoint { .. } => "checkpoint",
        TrainEvent::Started { .. } => "status",
        TrainEvent::Finished { .. } | TrainEvent::Failed { .. } | TrainEvent::Cancelled => "done",
    }
}

impl EventSink for Recorder {
    fn emit(&mut self, event: TrainEvent) {
        match self.record(&event) {
            Ok(row) => {
                if let Some(listener) = &mut self.listener {
                    listener(&event, &row);
                }
            }
            // The run goes on: its checkpoints still count, and the next epoch row may land.
            Err(e) => tracing::error!("run {}: could not record {} event: {e}", self.run_id, kind(&event)),
        }
    }
}

/// Executes a stored run on the calling thread, recording everything; also passes each event
/// to `also` (the CLI's progress display).
pub fn execute(
    store: Arc<Store>,
    run_id: &str,
    config: &TrainConfig,
    paths: &JobPaths,
    resume: bool,
    cancel: &CancelHandle,
    listener: Option<Listener>,
    progress: Option<job::DataProgress>,
) -> crate::train::Result<Outcome> {
    let ckpt = paths.ckpt_dir.join(run_id);
    let _ = store.set_runtime_info(run_id, "", &ckpt.display().to_string());
    let _ = store.set_status(run_id, RunStatus::Running, None);
    let mut recorder = Recorder::new(store, run_id, config, listener);
    job::run_job(config, run_id, paths, resume, &mut recorder, cancel, progress)
}
