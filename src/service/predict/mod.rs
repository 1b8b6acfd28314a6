//! Predictions for the dashboard (the Predict page, `POST /api/predict`, a run's predictions on
//! its own validation images), with no HTTP in it: which runs have a best checkpoint, a small
//! cache of loaded models on the run's device when it is usable here, an image's probabilities
//! against the run's tuned thresholds, its Grad-CAM overlay (by default the most probable label's
//! whose map is not empty, with the maps looked at cached per upload and label), and uploads kept
//! content-addressed under `<data dir>/uploads/`. Model work runs on blocking threads, never on
//! the async runtime.

mod maps;
mod uploads;
mod validation;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use image::GrayImage;

use crate::data::images;
use crate::service::evaluation::{self, SplitChoice};
use crate::service::{Error, Result};
use crate::store::{Run, RunStatus, Store};
use crate::train::backend::{self, DeviceChoice};
use crate::train::checkpoint::{RunCheckpoints, Slot};
use crate::train::gradcam::{self, GradCamSearch, HeatMap};
use crate::train::job::JobPaths;
use crate::train::predict::{probability_order, CheckpointRef, Inference, Predictor};
pub use uploads::MAX_SIDE;
pub use validation::{ValidationImage, ValidationSet, VALIDATION_IMAGES};

/// Loaded checkpoints kept in memory (each a whole model: tens of MB for DenseNet-121).
const CACHED_MODELS: usize = 2;

/// A checkpoint as it is on disk now: a retrained or moved best epoch gets a new key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelKey {
    epoch_dir: PathBuf,
    modified: Option<SystemTime>,
}

/// One image's predictions against one checkpoint.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// (label, probability, threshold), most probable first.
    pub ranked: Vec<(String, f32, f32)>,
    /// The labels' output indices in `ranked`'s order.
    pub order: Vec<usize>,
    /// The model's input side in pixels.
    pub image_size: u32,
}

/// What the Grad-CAM shown found: its label, whether its map is empty, and why it was chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct GradCamSummary {
    pub label: String,
    /// No region raises the label's score: the overlay is the image alone, hatched.
    pub empty: bool,
    /// The map's raw peak before it was scaled to `[0, 1]` (0 when nothing is positive; a
    /// rounding-sized residue when an empty map had one).
    pub peak: f32,
    /// More probable labels passed over by the default choice because their maps are empty.
    pub skipped: Vec<String>,
    /// The sentence to show beside the overlay, when there is something to say.
    pub note: Option<String>,
}

impl GradCamSummary {
    fn of(search: &GradCamSearch, names: &[String]) -> GradCamSummary {
        let (label, map) = search.chosen();
        GradCamSummary {
            label: names[*label].clone(),
            empty: map.empty,
            peak: map.peak,
            skipped: search.skipped().iter().map(|&i| names[i].clone()).collect(),
            note: search.note(names),
        }
    }
}

/// A predicted upload: the run, the stored image, its predictions and the Grad-CAM shown.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub run: Run,
    /// The stored image's content hash (its address).
    pub sha: String,
    pub width: u32,
    pub height: u32,
    pub prediction: Prediction,
    pub gradcam: GradCamSummary,
}

/// The prediction service: the run store and folders it reads, and its caches.
pub struct Predictions {
    store: Arc<Store>,
    data_dir: PathBuf,
    ckpt_dir: PathBuf,
    models: Mutex<VecDeque<(ModelKey, Arc<Predictor>)>>,
    maps: maps::MapCache,
    validation: Mutex<HashMap<String, (ModelKey, Arc<ValidationSet>)>>,
    /// Serialises computing validation sets, so a page's four image requests compute once.
    validation_gate: tokio::sync::Mutex<()>,
}

impl Predictions {
    pub fn new(store: Arc<Store>, data_dir: PathBuf, ckpt_dir: PathBuf) -> Predictions {
        Predictions {
            store,
            data_dir,
            ckpt_dir,
            models: Mutex::default(),
            maps: maps::MapCache::new(maps::CACHED_MAPS),
            validation: Mutex::default(),
            validation_gate: tokio::sync::Mutex::new(()),
        }
    }

    fn uploads_dir(&self) -> PathBuf {
        self.data_dir.join("uploads")
    }

    /// The run's checkpoint folder: as recorded by the engine, else `<ckpt dir>/<run id>`.
    fn run_checkpoints(&self, run: &Run) -> RunCheckpoints {
        let recorded = run
            .checkpoint_dir
            .as_deref()
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .filter(|d| d.is_dir());
        match recorded {
            Some(dir) => {
                let parent = dir.parent().map(Path::to_path_buf).unwrap_or_default();
                let name = dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                RunCheckpoints::new(parent, &name)
            }
            None => RunCheckpoints::new(&self.ckpt_dir, &run.id),
        }
    }

    /// The run's best epoch folder, if it saved one.
    fn best_checkpoint(&self, run: &Run) -> Option<PathBuf> {
        self.run_checkpoints(run).slot_dir(Slot::Best).ok().flatten()
    }

    /// Whether predictions can be offered for the run: a best checkpoint exists.
    pub fn has_best_checkpoint(&self, run: &Run) -> bool {
        self.best_checkpoint(run).is_some()
    }

    /// Every stored run that has a best checkpoint, newest first (the store's order).
    pub fn runs_with_checkpoint(&self) -> Result<Vec<Run>> {
        let runs = self.store.runs()?;
        Ok(runs.into_iter().filter(|run| self.has_best_checkpoint(run)).collect())
    }

    /// The run with its best checkpoint, or why not (`field` names the form field to blame).
    pub fn checkpoint_of(&self, run_id: &str, field: &'static str) -> Result<(Run, ModelKey)> {
        let run_id = run_id.trim();
        if run_id.is_empty() {
            return Err(Error::invalid(field, "choose a run whose checkpoint should predict"));
        }
        let run = self
            .store
            .run(run_id)?
            .ok_or_else(|| Error::invalid(field, format!("no run with id '{run_id}'; pick one from the list")))?;
        let epoch_dir = self.best_checkpoint(&run).ok_or_else(|| {
            Error::invalid(
                field,
                format!(
                    "run '{}' has no saved checkpoint yet (it is {}); pick a run that finished at least one epoch",
                    run.name,
                    run.status.as_str()
                ),
            )
        })?;
        let modified = std::fs::metadata(&epoch_dir).and_then(|m| m.modified()).ok();
        Ok((run, ModelKey { epoch_dir, modified }))
    }

    /// The loaded model for `key` on the run's device, from the cache or loaded now. Blocking.
    fn load_model(&self, key: &ModelKey, run: &Run) -> Result<Arc<Predictor>> {
        if let Some((_, model)) = lock(&self.models).iter().find(|(k, _)| k == key) {
            return Ok(model.clone());
        }
        let ckpt = CheckpointRef {
            epoch_dir: key.epoch_dir.clone(),
        };
        let resolved = backend::resolve(device_for(run)).map_err(crate::train::Error::from)?;
        let loaded = Predictor::load(&ckpt, &resolved.kind.device()).map_err(|e| match e {
            // A checkpoint this build cannot use (e.g. written on Burn 0.21) is the chosen run's
            // problem, with what to do about it, not a server fault.
            crate::train::Error::Checkpoint { .. } => Error::invalid("run", e.to_string()),
            other => Error::Train(other),
        })?;
        let loaded = Arc::new(loaded);
        let mut models = lock(&self.models);
        models.retain(|(k, _)| k != key);
        models.push_back((key.clone(), loaded.clone()));
        while models.len() > CACHED_MODELS {
            models.pop_front();
        }
        Ok(loaded)
    }

    /// Checks and stores an uploaded image, then predicts it with `run_id`'s best checkpoint.
    /// The run is checked first, so its error comes before the image's.
    pub async fn predict_upload(
        self: &Arc<Self>,
        run_id: &str,
        gradcam_label: &str,
        image: Result<Vec<u8>>,
    ) -> Result<Outcome> {
        let (run, key) = self.checkpoint_of(run_id, "run")?;
        let bytes = image?;
        let (service, label) = (self.clone(), gradcam_label.to_string());
        blocking(move || {
            let gray = uploads::decode_upload(&bytes)?;
            let (sha, _) = uploads::store_upload(&service.uploads_dir(), &gray)?;
            service.predict_gray(run, key, sha, &gray, &label)
        })
        .await
    }

    /// Predicts a stored upload again, with `run_id`'s best checkpoint.
    pub async fn predict_stored(self: &Arc<Self>, sha: &str, run_id: &str, gradcam_label: &str) -> Result<Outcome> {
        let path = self.upload_path(sha)?;
        let (run, key) = self.checkpoint_of(run_id, "run")?;
        let (service, sha, label) = (self.clone(), sha.to_string(), gradcam_label.to_string());
        blocking(move || {
            let gray = images::load_gray(&path)?;
            service.predict_gray(run, key, sha, &gray, &label)
        })
        .await
    }

    /// The stored upload named by `sha`.
    pub fn upload_path(&self, sha: &str) -> Result<PathBuf> {
        uploads::upload_path(&self.uploads_dir(), sha)
    }

    /// The Grad-CAM overlay (PNG) of a stored upload for `label` (empty: the default, the most
    /// probable label whose map is not empty).
    pub async fn gradcam_png(self: &Arc<Self>, sha: &str, run_id: &str, label: &str) -> Result<Vec<u8>> {
        let path = self.upload_path(sha)?;
        let (run, key) = self.checkpoint_of(run_id, "run")?;
        let (service, sha, label) = (self.clone(), sha.to_string(), label.to_string());
        blocking(move || {
            let gray = images::load_gray(&path)?;
            let loaded = service.load_model(&key, &run)?;
            let model: &dyn Inference = loaded.as_ref();
            let order = match asked_label(model, &label)? {
                Some(index) => vec![index],
                None => predict(model, &gray)?.order,
            };
            let search = service.gradcam_search(&key, model, &sha, &gray, &order)?;
            Ok(overlay(&gray, &search.chosen().1))
        })
        .await
    }

    fn predict_gray(&self, run: Run, key: ModelKey, sha: String, gray: &GrayImage, label: &str) -> Result<Outcome> {
        let loaded = self.load_model(&key, &run)?;
        let model: &dyn Inference = loaded.as_ref();
        let asked = asked_label(model, label)?;
        let prediction = predict(model, gray)?;
        let order = asked.map_or_else(|| prediction.order.clone(), |index| vec![index]);
        let search = self.gradcam_search(&key, model, &sha, gray, &order)?;
        Ok(Outcome {
            run,
            sha,
            width: gray.width(),
            height: gray.height(),
            gradcam: GradCamSummary::of(&search, model.labels()),
            prediction,
        })
    }

    /// Grad-CAMs of `order`'s labels up to the first non-empty one (see [`GradCamSearch`]),
    /// from the cache where it has them. Blocking.
    fn gradcam_search(
        &self,
        key: &ModelKey,
        model: &dyn Inference,
        sha: &str,
        gray: &GrayImage,
        order: &[usize],
    ) -> Result<GradCamSearch> {
        Ok(self
            .maps
            .search(key, sha, order, |rest| model.gradcam_search(gray, rest))?)
    }

    /// The run's predictions on its first validation images, computed once per best checkpoint.
    pub async fn validation_set(self: &Arc<Self>, run_id: &str) -> Result<(Run, Arc<ValidationSet>)> {
        let run = self
            .store
            .run(run_id)?
            .ok_or_else(|| Error::NotFound(format!("no run with id '{run_id}'")))?;
        let (_, key) = self.checkpoint_of(run_id, "run").map_err(|e| match e {
            Error::Invalid { message, .. } => Error::NotFound(message),
            other => other,
        })?;
        let cached = || {
            lock(&self.validation)
                .get(run_id)
                .filter(|(k, _)| *k == key)
                .map(|(_, set)| set.clone())
        };
        if let Some(set) = cached() {
            return Ok((run, set));
        }
        let _gate = self.validation_gate.lock().await;
        if let Some(set) = cached() {
            return Ok((run, set));
        }
        let (service, worker_run, worker_key) = (self.clone(), run.clone(), key.clone());
        let set = Arc::new(blocking(move || service.compute_validation(&worker_run, &worker_key)).await?);
        lock(&self.validation).insert(run_id.to_string(), (key, set.clone()));
        Ok((run, set))
    }
}

impl Predictions {
    /// Where the runs' data and checkpoints are, as the training job names them.
    fn job_paths(&self) -> JobPaths {
        JobPaths {
            data_dir: self.data_dir.clone(),
            ckpt_dir: self.ckpt_dir.clone(),
        }
    }

    /// The run's best checkpoint for a download: a run without one is "not found".
    fn best_or_not_found(&self, run_id: &str) -> Result<(Run, ModelKey)> {
        self.checkpoint_of(run_id, "run").map_err(|e| match e {
            Error::Invalid { message, .. } => Error::NotFound(message),
            other => other,
        })
    }

    /// The run's `split` predicted by its best checkpoint, as the CSV `cxr8 eval --split --out`
    /// writes.
    pub async fn split_csv(self: &Arc<Self>, run_id: &str, split: SplitChoice) -> Result<Vec<u8>> {
        let (run, key) = self.best_or_not_found(run_id)?;
        let service = self.clone();
        blocking(move || {
            let loaded = service.load_model(&key, &run)?;
            let predictions = evaluation::predict_split(loaded.as_ref(), &service.job_paths(), split)?;
            let mut csv = Vec::new();
            predictions
                .write_csv(&mut csv)
                .map_err(|e| Error::Internal(format!("writing the predictions CSV: {e}")))?;
            Ok(csv)
        })
        .await
    }

    /// The run's best checkpoint as safetensors in torchvision's key layout (`cxr8 export`).
    /// A run without a best checkpoint is "not found"; an architecture torchvision lacks
    /// (simple-cnn) or a non-torchvision width/norm is a clear refusal.
    pub async fn weights_safetensors(self: &Arc<Self>, run_id: &str) -> Result<Vec<u8>> {
        let (_, key) = self.best_or_not_found(run_id)?;
        blocking(move || {
            let ckpt = CheckpointRef {
                epoch_dir: key.epoch_dir.clone(),
            };
            crate::train::weights::export_checkpoint(&ckpt).map_err(|e| match e {
                crate::train::Error::Weights(problem) => Error::Conflict(problem.to_string()),
                other => Error::Train(other),
            })
        })
        .await
    }

    /// Scores the run's best checkpoint on its test split now and stores the results (with a
    /// `test` event, so open pages hear of it); for runs that ended without being scored.
    pub async fn score_test(self: &Arc<Self>, run_id: &str) -> Result<serde_json::Value> {
        let run = self
            .store
            .run(run_id)?
            .ok_or_else(|| Error::UnknownRun(run_id.to_string()))?;
        if matches!(run.status, RunStatus::Queued | RunStatus::Running) {
            return Err(Error::Conflict(format!(
                "run {run_id} is {}; it is scored on its test split when it finishes",
                run.status.as_str()
            )));
        }
        if !self.has_best_checkpoint(&run) {
            return Err(Error::Conflict(format!(
                "run {run_id} has no best checkpoint (no epoch finished): nothing to score"
            )));
        }
        let service = self.clone();
        let id = run.id.clone();
        blocking(move || {
            let report = crate::train::job::score_best_on_test(&id, &service.job_paths())?;
            let report = serde_json::to_value(&report).expect("reports serialise");
            let payload = serde_json::json!({"type": "test", "report": report});
            service.store.set_test_with_event(&id, &report, "test", &payload)?;
            Ok(report)
        })
        .await
    }
}

/// The CPU, unless the run trained on CUDA and a GPU is usable here.
fn device_for(run: &Run) -> DeviceChoice {
    let trained_on_cuda = run.device.as_deref().is_some_and(|d| d.starts_with("cuda"));
    if trained_on_cuda && backend::detect_cuda().is_ok() {
        DeviceChoice::Cuda
    } else {
        DeviceChoice::Cpu
    }
}

/// A poisoned cache lock only means another request panicked mid-update; the data is still usable.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs model work on a blocking thread.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Internal(format!("prediction thread failed: {e}")))?
}

fn predict(model: &dyn Inference, image: &GrayImage) -> Result<Prediction> {
    let probs = model.predict(image)?;
    let probabilities: Vec<f32> = probs.iter().map(|(_, p)| *p).collect();
    let order = probability_order(&probabilities);
    let ranked = order
        .iter()
        .map(|&i| (probs[i].0.clone(), probs[i].1, model.thresholds()[i]))
        .collect();
    Ok(Prediction {
        ranked,
        order,
        image_size: model.image_size(),
    })
}

/// The Grad-CAM label asked for (case-insensitive), or `None` when none was (blank).
fn asked_label(model: &dyn Inference, asked: &str) -> Result<Option<usize>> {
    let asked = asked.trim();
    if asked.is_empty() {
        return Ok(None);
    }
    model.label_index(asked).map(Some).map_err(|_| {
        Error::invalid(
            "label",
            format!(
                "unknown label '{asked}'; this run predicts: {}",
                model.labels().join(", ")
            ),
        )
    })
}

/// The overlay on the square the model saw.
fn overlay(image: &GrayImage, map: &HeatMap) -> Vec<u8> {
    gradcam::overlay_png(&uploads::centre_square(image), map)
}

/// The Grad-CAM overlays' colour scale (SVG), drawn with the overlays' own colours.
pub fn gradcam_scale_svg() -> String {
    gradcam::scale_svg()
}
