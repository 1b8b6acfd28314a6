//! Predictions in the browser: the Predict page (`/predict`: upload an X-ray, pick a run's best
//! checkpoint, see per-label probabilities against the run's tuned thresholds and a Grad-CAM
//! overlay), its JSON twin `POST /api/predict`, and a run's predictions on a few of its own
//! validation images (`/runs/{id}/predictions…`). Uploads are kept content-addressed under
//! `<data dir>/uploads/<sha256>.png`; loaded models stay in a small cache so a second prediction
//! does not reload. All model work runs on blocking threads, never on the async runtime.

use std::collections::{HashMap, VecDeque};
use std::io::Cursor;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::extract::multipart::{Multipart, MultipartError, MultipartRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use image::GrayImage;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::data::cache::{self, Cache};
use crate::data::images::{self, ImageIndex};
use crate::data::split;
use crate::data::LabelTable;
use crate::store::Run;
use crate::train::backend::{self, DeviceChoice};
use crate::train::checkpoint::{RunCheckpoints, Slot};
use crate::train::gradcam;
use crate::train::job::{self, JobPaths};
use crate::train::predict::{CheckpointRef, Inference, Predictor};
use crate::web::templates::{
    encode_query, PredictPage, PredictResult, PredictRunOption, ProbabilityRow, ValidationItem, ValidationPage,
};
use crate::web::AppState;

/// Largest accepted upload request (the image plus the form's few text fields).
pub const UPLOAD_LIMIT_BYTES: usize = 16 * 1024 * 1024;
/// Largest accepted image side: the NIH originals are 1024², common scanners stay below 4096.
const MAX_SIDE: u32 = 4096;
/// Loaded checkpoints kept in memory (each a whole model: tens of MB for DenseNet-121).
const CACHED_MODELS: usize = 2;
/// Validation images shown per run.
pub const VALIDATION_IMAGES: usize = 4;
/// Labels listed per validation image.
const TOP_LABELS: usize = 3;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/predict", get(form_page).post(predict_form))
        .route("/predict/{sha}", get(result_page))
        .route("/predict/{sha}/gradcam.png", get(upload_gradcam))
        .route("/predict/{sha}/image.png", get(upload_image))
        .route("/api/predict", axum::routing::post(predict_api))
        .route("/runs/{id}/predictions", get(validation_page))
        .route("/runs/{id}/predictions/{n}/{file}", get(validation_file))
}

/// What can go wrong with a prediction request, each with its status.
#[derive(Debug)]
enum PredictError {
    /// 413: the request or the image is over the size limit.
    TooLarge(String),
    /// 422: a form field is missing or wrong (`field` names it).
    Invalid { field: &'static str, message: String },
    /// 404: no such upload, run or validation image.
    NotFound(String),
    /// 500: our fault (logged, not shown).
    Internal(String),
}

impl PredictError {
    fn invalid(field: &'static str, message: impl Into<String>) -> PredictError {
        PredictError::Invalid {
            field,
            message: message.into(),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            PredictError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            PredictError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            PredictError::NotFound(_) => StatusCode::NOT_FOUND,
            PredictError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The line shown to the user (internals go to the log only).
    fn message(&self) -> String {
        match self {
            PredictError::TooLarge(m) | PredictError::NotFound(m) => m.clone(),
            PredictError::Invalid { message, .. } => message.clone(),
            PredictError::Internal(m) => {
                tracing::error!(error = %m, "prediction failed");
                "internal error; see the server log".into()
            }
        }
    }
}

/// JSON in the app's error format (`{"error", "fields"}`), for the API and the image routes.
impl IntoResponse for PredictError {
    fn into_response(self) -> Response {
        let status = self.status();
        let fields = match &self {
            PredictError::Invalid { field, message } => {
                serde_json::json!([{"field": field, "message": message}])
            }
            _ => serde_json::json!([]),
        };
        let mut body = serde_json::json!({"error": self.message()});
        if fields.as_array().is_some_and(|f| !f.is_empty()) {
            body["fields"] = fields;
        }
        (status, Json(body)).into_response()
    }
}

fn body_too_large() -> PredictError {
    PredictError::TooLarge(format!(
        "the upload is larger than {} MiB: send a smaller PNG or JPEG (the NIH originals are about 0.3–1 MiB)",
        UPLOAD_LIMIT_BYTES >> 20
    ))
}

/// Turns the body-limit layer's bare plain-text 413 into ours: the form with a message on the
/// page, the JSON error format on the API.
pub async fn explain_body_limit(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let api = request.uri().path().starts_with("/api/");
    let response = next.run(request).await;
    let bare = response.status() == StatusCode::PAYLOAD_TOO_LARGE
        && response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"));
    if !bare {
        return response;
    }
    if api {
        body_too_large().into_response()
    } else {
        form_error(&state, &Form::default(), body_too_large())
    }
}

// ---------------------------------------------------------------------------------------------
// Models: which run has a checkpoint, and a small cache of loaded ones.

/// A loaded checkpoint on the device it runs on.
struct LoadedModel(Predictor);

impl LoadedModel {
    fn model(&self) -> &dyn Inference {
        &self.0
    }
}

/// A checkpoint as it is on disk now: a retrained or moved best epoch gets a new key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ModelKey {
    epoch_dir: PathBuf,
    modified: Option<SystemTime>,
}

/// One run's validation images with their predictions, as computed for its best checkpoint.
struct ValidationSet {
    items: Vec<ValidationImage>,
    /// Why there are no items, when there are none.
    note: String,
}

struct ValidationImage {
    name: String,
    truth: Vec<String>,
    sha: String,
    image_png: Vec<u8>,
    overlay_png: Vec<u8>,
    /// (label, probability, threshold), most probable first.
    ranked: Vec<(String, f32, f32)>,
}

/// The loaded-model and validation-prediction caches (held in [`AppState`]).
#[derive(Default)]
pub struct PredictCache {
    models: Mutex<VecDeque<(ModelKey, Arc<LoadedModel>)>>,
    validation: Mutex<HashMap<String, (ModelKey, Arc<ValidationSet>)>>,
    /// Serialises computing validation sets, so a page's four image requests compute once.
    validation_gate: tokio::sync::Mutex<()>,
}

/// The run's checkpoint folder: as recorded by the engine, else `<ckpt dir>/<run id>`.
fn run_checkpoints(state: &AppState, run: &Run) -> RunCheckpoints {
    let recorded = run
        .checkpoint_dir
        .as_deref()
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .filter(|d| d.is_dir());
    match recorded {
        Some(dir) => {
            let parent = dir.parent().map(FsPath::to_path_buf).unwrap_or_default();
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            RunCheckpoints::new(parent, &name)
        }
        None => RunCheckpoints::new(&state.ckpt_dir, &run.id),
    }
}

/// The run's best epoch folder, if it saved one.
fn best_checkpoint(state: &AppState, run: &Run) -> Option<PathBuf> {
    run_checkpoints(state, run).slot_dir(Slot::Best).ok().flatten()
}

/// Whether the run page should offer predictions: a best checkpoint exists.
pub(super) fn has_best_checkpoint(state: &AppState, run: &Run) -> bool {
    best_checkpoint(state, run).is_some()
}

/// The run with its best checkpoint, or why not (`field` names the form field to blame).
fn checkpoint_of(state: &AppState, run_id: &str, field: &'static str) -> Result<(Run, ModelKey), PredictError> {
    let run_id = run_id.trim();
    if run_id.is_empty() {
        return Err(PredictError::invalid(
            field,
            "choose a run whose checkpoint should predict",
        ));
    }
    let run = state
        .store
        .run(run_id)
        .map_err(|e| PredictError::Internal(e.to_string()))?
        .ok_or_else(|| PredictError::invalid(field, format!("no run with id '{run_id}'; pick one from the list")))?;
    let epoch_dir = best_checkpoint(state, &run).ok_or_else(|| {
        PredictError::invalid(
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

/// The CPU, unless the run trained on CUDA and a GPU is usable here.
fn device_for(run: &Run) -> DeviceChoice {
    let trained_on_cuda = run.device.as_deref().is_some_and(|d| d.starts_with("cuda"));
    if trained_on_cuda && backend::detect_cuda().is_ok() {
        DeviceChoice::Cuda
    } else {
        DeviceChoice::Cpu
    }
}

/// The loaded model for `key`, from the cache or loaded now. Blocking: call on a blocking thread.
fn load_model(cache: &PredictCache, key: &ModelKey, device: DeviceChoice) -> Result<Arc<LoadedModel>, PredictError> {
    if let Some((_, model)) = lock(&cache.models).iter().find(|(k, _)| k == key) {
        return Ok(model.clone());
    }
    let ckpt = CheckpointRef {
        epoch_dir: key.epoch_dir.clone(),
    };
    let resolved = backend::resolve(device).map_err(|e| PredictError::Internal(e.to_string()))?;
    let loaded = Predictor::load(&ckpt, &resolved.kind.device())
        .map(LoadedModel)
        .map_err(|e| match e {
            // A checkpoint this build cannot use (e.g. written on Burn 0.21) is the chosen run's
            // problem, with what to do about it, not a server fault.
            crate::train::Error::Checkpoint { .. } => PredictError::invalid("run", e.to_string()),
            other => PredictError::Internal(format!("loading {}: {other}", key.epoch_dir.display())),
        })?;
    let loaded = Arc::new(loaded);
    let mut models = lock(&cache.models);
    models.retain(|(k, _)| k != key);
    models.push_back((key.clone(), loaded.clone()));
    while models.len() > CACHED_MODELS {
        models.pop_front();
    }
    Ok(loaded)
}

/// A poisoned cache lock only means another request panicked mid-update; the data is still usable.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs model work on a blocking thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, PredictError> + Send + 'static,
) -> Result<T, PredictError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| PredictError::Internal(format!("prediction thread failed: {e}")))?
}

// ---------------------------------------------------------------------------------------------
// Uploads: checked, decoded, stored content-addressed.

/// Checks an upload's bytes (format by its first bytes, size before decoding) and decodes it to
/// 8-bit gray.
fn decode_upload(bytes: &[u8]) -> Result<GrayImage, PredictError> {
    if bytes.is_empty() {
        return Err(PredictError::invalid("image", "choose an image file to upload"));
    }
    let format = image::guess_format(bytes)
        .ok()
        .filter(|f| matches!(f, image::ImageFormat::Png | image::ImageFormat::Jpeg));
    if format.is_none() {
        return Err(PredictError::invalid(
            "image",
            "the file is not a PNG or JPEG image (judged by its content, not its name); upload a chest X-ray as PNG or JPEG",
        ));
    }
    // Read the header only, so a small file claiming a huge image is refused before decoding.
    let (width, height) = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| PredictError::Internal(e.to_string()))?
        .into_dimensions()
        .map_err(|e| {
            PredictError::invalid(
                "image",
                format!("the image header cannot be read ({e}): is the file damaged?"),
            )
        })?;
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(PredictError::invalid(
            "image",
            format!("the image is {width} × {height} pixels; at most {MAX_SIDE} × {MAX_SIDE} are accepted: downscale it first"),
        ));
    }
    if width == 0 || height == 0 {
        return Err(PredictError::invalid("image", "the image has no pixels"));
    }
    images::decode_gray(FsPath::new("upload"), bytes).map_err(|e| {
        let detail = e.to_string();
        let detail = detail.strip_prefix("upload: ").unwrap_or(&detail).to_string();
        PredictError::invalid("image", format!("the image cannot be decoded: {detail}"))
    })
}

fn uploads_dir(state: &AppState) -> PathBuf {
    state.data_dir.join("uploads")
}

fn encode_png(image: &GrayImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    image::DynamicImage::ImageLuma8(image.clone())
        .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
        .expect("encoding a PNG into memory cannot fail");
    bytes
}

/// Stores the gray image as `<sha256 of the PNG>.png` (once) and returns the hash and the PNG.
fn store_upload(dir: &FsPath, image: &GrayImage) -> Result<(String, Vec<u8>), PredictError> {
    let png = encode_png(image);
    let sha = hex::encode(Sha256::digest(&png));
    let path = dir.join(format!("{sha}.png"));
    if !path.is_file() {
        std::fs::create_dir_all(dir).map_err(|e| PredictError::Internal(format!("{}: {e}", dir.display())))?;
        crate::data::write_atomically(&path, &png).map_err(|e| PredictError::Internal(e.to_string()))?;
    }
    Ok((sha, png))
}

/// The stored upload named by `sha` (64 lowercase hex digits, nothing else).
fn upload_path(state: &AppState, sha: &str) -> Result<PathBuf, PredictError> {
    let valid = sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let path = uploads_dir(state).join(format!("{sha}.png"));
    if !valid || !path.is_file() {
        return Err(PredictError::NotFound(format!(
            "no uploaded image '{sha}': upload it again at /predict"
        )));
    }
    Ok(path)
}

/// The centred square the model sees (uploads of other shapes are cropped to it).
fn centre_square(image: &GrayImage) -> GrayImage {
    let (w, h) = image.dimensions();
    if w == h {
        return image.clone();
    }
    let side = w.min(h);
    image::imageops::crop_imm(image, (w - side) / 2, (h - side) / 2, side, side).to_image()
}

// ---------------------------------------------------------------------------------------------
// Predicting.

/// One image's predictions against one checkpoint.
struct Prediction {
    /// (label, probability, threshold), most probable first.
    ranked: Vec<(String, f32, f32)>,
    image_size: u32,
}

fn predict(model: &dyn Inference, image: &GrayImage) -> Result<Prediction, PredictError> {
    let probs = model
        .predict(image)
        .map_err(|e| PredictError::Internal(format!("predicting: {e}")))?;
    let mut ranked: Vec<(String, f32, f32)> = probs
        .into_iter()
        .zip(model.thresholds())
        .map(|((label, p), &t)| (label, p, t))
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(Prediction {
        ranked,
        image_size: model.image_size(),
    })
}

/// The Grad-CAM label: the one asked for (case-insensitive), else the most probable.
fn gradcam_label(model: &dyn Inference, asked: &str, top: &str) -> Result<usize, PredictError> {
    let asked = asked.trim();
    let name = if asked.is_empty() { top } else { asked };
    model.label_index(name).map_err(|_| {
        PredictError::invalid(
            "label",
            format!(
                "unknown label '{asked}'; this run predicts: {}",
                model.labels().join(", ")
            ),
        )
    })
}

fn overlay(model: &dyn Inference, image: &GrayImage, label: usize) -> Result<Vec<u8>, PredictError> {
    let heat = model
        .gradcam(image, label)
        .map_err(|e| PredictError::Internal(format!("Grad-CAM: {e}")))?;
    Ok(gradcam::overlay_png(&centre_square(image), &heat))
}

// ---------------------------------------------------------------------------------------------
// The form and result pages.

/// The submitted form, as far as it was read.
#[derive(Debug, Default, Clone)]
struct Form {
    run: String,
    label: String,
}

fn run_options(state: &AppState, selected: &str) -> Result<Vec<PredictRunOption>, PredictError> {
    let runs = state.store.runs().map_err(|e| PredictError::Internal(e.to_string()))?;
    Ok(runs
        .into_iter()
        .filter(|run| has_best_checkpoint(state, run))
        .map(|run| {
            let best = match (&run.best_metric_name, run.best_metric) {
                (Some(name), Some(value)) if name.contains("auroc") => format!(" · best AUROC {value:.4}"),
                (Some(name), Some(value)) => format!(" · best {} {value:.4}", name.replace('_', " ")),
                _ => String::new(),
            };
            PredictRunOption {
                text: format!("{} · {}{best}", run.name, run.model),
                selected: run.id == selected,
                id: run.id,
            }
        })
        .collect())
}

fn page(state: &AppState, form: &Form, error: String, result: Option<PredictResult>) -> PredictPage {
    let runs = run_options(state, &form.run).unwrap_or_else(|e| {
        tracing::error!("listing runs for the Predict page: {e:?}");
        Vec::new()
    });
    PredictPage {
        runs,
        label: form.label.clone(),
        error,
        result,
    }
}

/// The form again, with the problem stated and the status it deserves.
fn form_error(state: &AppState, form: &Form, error: PredictError) -> Response {
    let status = error.status();
    (status, page(state, form, error.message(), None)).into_response()
}

#[derive(Debug, Default, Deserialize)]
struct PredictQuery {
    run: Option<String>,
    label: Option<String>,
}

async fn form_page(State(state): State<Arc<AppState>>, Query(query): Query<PredictQuery>) -> Response {
    let form = Form {
        run: query.run.unwrap_or_default(),
        label: query.label.unwrap_or_default(),
    };
    page(&state, &form, String::new(), None).into_response()
}

/// Reads the multipart form: `image` (bytes), `run`, `label`.
async fn read_form(multipart: Result<Multipart, MultipartRejection>) -> (Form, Result<Vec<u8>, PredictError>) {
    let mut form = Form::default();
    let mut multipart = match multipart {
        Ok(m) => m,
        Err(e) => {
            return (
                form,
                Err(PredictError::invalid(
                    "image",
                    format!(
                        "send the form as multipart/form-data with an `image` file ({})",
                        e.body_text()
                    ),
                )),
            )
        }
    };
    let mut image = None;
    let multipart_error = |e: MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            body_too_large()
        } else {
            PredictError::invalid(
                "image",
                format!("the upload is incomplete or malformed: {}", e.body_text()),
            )
        }
    };
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return (form, Err(multipart_error(e))),
        };
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "image" => match field.bytes().await {
                Ok(bytes) => image = Some(bytes.to_vec()),
                Err(e) => return (form, Err(multipart_error(e))),
            },
            "run" | "label" => match field.text().await {
                Ok(text) if name == "run" => form.run = text.trim().to_string(),
                Ok(text) => form.label = text.trim().to_string(),
                Err(e) => return (form, Err(multipart_error(e))),
            },
            // Unknown fields are ignored, but still read, so the stream moves on.
            _ => {
                if let Err(e) = field.bytes().await {
                    return (form, Err(multipart_error(e)));
                }
            }
        }
    }
    let image = image
        .filter(|bytes| !bytes.is_empty())
        .ok_or_else(|| PredictError::invalid("image", "choose an image file to upload (PNG or JPEG)"));
    (form, image)
}

/// Everything a result needs, computed on a blocking thread.
struct Outcome {
    run: Run,
    sha: String,
    width: u32,
    height: u32,
    prediction: Prediction,
    gradcam_label: String,
}

/// Validates the form, stores the image and predicts. Errors say which field is wrong.
async fn predict_upload(
    state: &Arc<AppState>,
    form: &Form,
    image: Result<Vec<u8>, PredictError>,
) -> Result<Outcome, PredictError> {
    let (run, key) = checkpoint_of(state, &form.run, "run")?;
    let bytes = image?;
    let state = state.clone();
    let label = form.label.clone();
    blocking(move || {
        let gray = decode_upload(&bytes)?;
        let (sha, _) = store_upload(&uploads_dir(&state), &gray)?;
        predict_stored(&state, run, key, sha, &gray, &label)
    })
    .await
}

fn predict_stored(
    state: &AppState,
    run: Run,
    key: ModelKey,
    sha: String,
    gray: &GrayImage,
    label: &str,
) -> Result<Outcome, PredictError> {
    let loaded = load_model(&state.predict, &key, device_for(&run))?;
    let model = loaded.model();
    let prediction = predict(model, gray)?;
    let chosen = gradcam_label(model, label, &prediction.ranked[0].0)?;
    Ok(Outcome {
        run,
        sha,
        width: gray.width(),
        height: gray.height(),
        gradcam_label: model.labels()[chosen].clone(),
        prediction,
    })
}

fn probability_row(label: &str, p: f32, t: f32, href: String, chosen: bool) -> ProbabilityRow {
    ProbabilityRow {
        label: label.to_string(),
        probability: format!("{p:.4}"),
        threshold: format!("{t:.4}"),
        positive: p >= t,
        bar_width: format!("{:.1}", (p.clamp(0.0, 1.0) * 100.0)),
        threshold_x: format!("{:.1}", (t.clamp(0.0, 1.0) * 100.0)),
        gradcam_href: href,
        chosen,
    }
}

fn result_view(outcome: &Outcome) -> PredictResult {
    let run = encode_query(&outcome.run.id);
    let sha = &outcome.sha;
    let rows = outcome
        .prediction
        .ranked
        .iter()
        .map(|(label, p, t)| {
            probability_row(
                label,
                *p,
                *t,
                format!("/predict/{sha}?run={run}&label={}", encode_query(label)),
                *label == outcome.gradcam_label,
            )
        })
        .collect::<Vec<_>>();
    PredictResult {
        sha: sha.clone(),
        run_id: outcome.run.id.clone(),
        run_name: outcome.run.name.clone(),
        model: outcome.run.model.clone(),
        image_size: format!("{} × {}", outcome.width, outcome.height),
        model_size: outcome.prediction.image_size,
        positives: rows.iter().filter(|r| r.positive).count(),
        rows,
        gradcam_label: outcome.gradcam_label.clone(),
        gradcam_src: format!(
            "/predict/{sha}/gradcam.png?run={run}&label={}",
            encode_query(&outcome.gradcam_label)
        ),
        image_src: format!("/predict/{sha}/image.png"),
        cropped: outcome.width != outcome.height,
    }
}

async fn predict_form(
    State(state): State<Arc<AppState>>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    let (form, image) = read_form(multipart).await;
    if let Err(e @ PredictError::TooLarge(_)) = image {
        return form_error(&state, &form, e);
    }
    match predict_upload(&state, &form, image).await {
        Ok(outcome) => {
            let result = result_view(&outcome);
            page(&state, &form, String::new(), Some(result)).into_response()
        }
        Err(e) => form_error(&state, &form, e),
    }
}

/// A stored upload, against a run, with the Grad-CAM label chosen by the query.
async fn result_page(
    State(state): State<Arc<AppState>>,
    Path(sha): Path<String>,
    Query(query): Query<PredictQuery>,
) -> Response {
    let form = Form {
        run: query.run.unwrap_or_default(),
        label: query.label.unwrap_or_default(),
    };
    let outcome = async {
        let path = upload_path(&state, &sha)?;
        let (run, key) = checkpoint_of(&state, &form.run, "run")?;
        let (state, label) = (state.clone(), form.label.clone());
        blocking(move || {
            let gray = images::load_gray(&path).map_err(|e| PredictError::Internal(e.to_string()))?;
            predict_stored(&state, run, key, sha, &gray, &label)
        })
        .await
    }
    .await;
    match outcome {
        Ok(outcome) => page(&state, &form, String::new(), Some(result_view(&outcome))).into_response(),
        Err(e) => form_error(&state, &form, e),
    }
}

fn png(bytes: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/png"),
            // Content-addressed image and a checkpoint that only changes with a new best epoch.
            (header::CACHE_CONTROL, "private, max-age=300"),
        ],
        bytes,
    )
        .into_response()
}

async fn upload_image(State(state): State<Arc<AppState>>, Path(sha): Path<String>) -> Result<Response, PredictError> {
    let path = upload_path(&state, &sha)?;
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| PredictError::Internal(format!("{}: {e}", path.display())))?;
    Ok(png(bytes))
}

async fn upload_gradcam(
    State(state): State<Arc<AppState>>,
    Path(sha): Path<String>,
    Query(query): Query<PredictQuery>,
) -> Result<Response, PredictError> {
    let path = upload_path(&state, &sha)?;
    let (run, key) = checkpoint_of(&state, query.run.as_deref().unwrap_or_default(), "run")?;
    let label = query.label.unwrap_or_default();
    let bytes = blocking(move || {
        let gray = images::load_gray(&path).map_err(|e| PredictError::Internal(e.to_string()))?;
        let loaded = load_model(&state.predict, &key, device_for(&run))?;
        let model = loaded.model();
        let top = if label.trim().is_empty() {
            predict(model, &gray)?.ranked[0].0.clone()
        } else {
            String::new()
        };
        let chosen = gradcam_label(model, &label, &top)?;
        overlay(model, &gray, chosen)
    })
    .await?;
    Ok(png(bytes))
}

#[derive(Serialize)]
struct LabelJson {
    label: String,
    probability: f32,
    threshold: f32,
    positive: bool,
}

#[derive(Serialize)]
struct PredictJson {
    run: String,
    /// The stored image's content hash (its address under `/predict/{sha}`).
    image: String,
    width: u32,
    height: u32,
    labels: Vec<LabelJson>,
    gradcam_label: String,
    gradcam: String,
}

async fn predict_api(
    State(state): State<Arc<AppState>>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<PredictJson>, PredictError> {
    let (form, image) = read_form(multipart).await;
    if let Err(e @ PredictError::TooLarge(_)) = image {
        return Err(e);
    }
    let outcome = predict_upload(&state, &form, image).await?;
    let view = result_view(&outcome);
    Ok(Json(PredictJson {
        run: outcome.run.id,
        image: outcome.sha,
        width: outcome.width,
        height: outcome.height,
        labels: outcome
            .prediction
            .ranked
            .into_iter()
            .map(|(label, probability, threshold)| LabelJson {
                positive: probability >= threshold,
                label,
                probability,
                threshold,
            })
            .collect(),
        gradcam_label: outcome.gradcam_label,
        gradcam: view.gradcam_src,
    }))
}

// ---------------------------------------------------------------------------------------------
// A run's own validation images.

/// The first validation images of the run's split, at the model's input size, exactly as its
/// validation loader saw them: the split is recomputed from the label file with the run's seed
/// and options (deterministic), and pixels come from the run's cache. Blocking.
fn validation_images(state: &AppState, model: &dyn Inference) -> Result<Vec<(String, u32, GrayImage)>, String> {
    let config = &model.state().config;
    let paths = JobPaths {
        data_dir: state.data_dir.clone(),
        ckpt_dir: state.ckpt_dir.clone(),
    };
    let (labels_path, images_dir) = job::dataset_paths(config, &paths).map_err(|e| e.to_string())?;
    let table = LabelTable::load(&labels_path).map_err(|e| e.to_string())?;
    let split = split::split(&table, &job::split_options(config)).map_err(|e| e.to_string())?;
    let share = job::max_images_share(config, &split, split.val.len()).unwrap_or(usize::MAX);
    let wanted = share.min(VALIDATION_IMAGES);
    let size = config.image_size;
    let records = split.val.iter().map(|&row| &table.records[row]);
    let cache_path = cache::path_for(paths.cache_dir(), &table, size);
    if cache_path.is_file() {
        let cache = Cache::open(&cache_path).map_err(|e| e.to_string())?;
        return Ok(records
            .filter_map(|r| cache.index_of(&r.image).map(|i| (r, i)))
            .take(wanted)
            .filter_map(|(r, i)| {
                GrayImage::from_raw(size, size, cache.image(i).to_vec()).map(|g| (r.image.clone(), r.targets, g))
            })
            .collect());
    }
    // No cache (trained with another data folder): read the files themselves.
    let index = ImageIndex::scan(&images_dir).map_err(|e| e.to_string())?;
    Ok(records
        .filter_map(|r| index.get(&r.image).map(|p| (r, p.to_path_buf())))
        .take(wanted)
        .filter_map(|(r, path)| {
            images::load_resized(&path, size)
                .ok()
                .map(|g| (r.image.clone(), r.targets, g))
        })
        .collect())
}

fn compute_validation(state: &AppState, run: &Run, key: &ModelKey) -> Result<ValidationSet, PredictError> {
    let loaded = load_model(&state.predict, key, device_for(run))?;
    let model = loaded.model();
    let chosen = match validation_images(state, model) {
        Ok(chosen) => chosen,
        Err(why) => {
            return Ok(ValidationSet {
                items: Vec::new(),
                note: format!("the run's validation images cannot be found: {why}"),
            })
        }
    };
    let labels = model.labels().to_vec();
    let mut items = Vec::new();
    for (name, targets, gray) in chosen {
        let prediction = predict(model, &gray)?;
        let top = model
            .label_index(&prediction.ranked[0].0)
            .map_err(|e| PredictError::Internal(e.to_string()))?;
        let overlay_png = overlay(model, &gray, top)?;
        let (sha, image_png) = store_upload(&uploads_dir(state), &gray)?;
        let truth: Vec<String> = (0..labels.len().min(32))
            .filter(|i| targets & (1 << i) != 0)
            .map(|i| labels[i].clone())
            .collect();
        items.push(ValidationImage {
            name,
            truth,
            sha,
            image_png,
            overlay_png,
            ranked: prediction.ranked,
        });
    }
    let note = if items.is_empty() {
        "the run's validation split has no images in its cache".into()
    } else {
        String::new()
    };
    Ok(ValidationSet { items, note })
}

/// The run's validation predictions, computed once per best checkpoint.
async fn validation_set(state: &Arc<AppState>, run_id: &str) -> Result<(Run, Arc<ValidationSet>), PredictError> {
    let run = state
        .store
        .run(run_id)
        .map_err(|e| PredictError::Internal(e.to_string()))?
        .ok_or_else(|| PredictError::NotFound(format!("no run with id '{run_id}'")))?;
    let (_, key) = checkpoint_of(state, run_id, "run").map_err(|e| match e {
        PredictError::Invalid { message, .. } => PredictError::NotFound(message),
        other => other,
    })?;
    let cached = |state: &AppState| {
        lock(&state.predict.validation)
            .get(run_id)
            .filter(|(k, _)| *k == key)
            .map(|(_, set)| set.clone())
    };
    if let Some(set) = cached(state) {
        return Ok((run, set));
    }
    let _gate = state.predict.validation_gate.lock().await;
    if let Some(set) = cached(state) {
        return Ok((run, set));
    }
    let (worker_state, worker_run, worker_key) = (state.clone(), run.clone(), key.clone());
    let set = Arc::new(blocking(move || compute_validation(&worker_state, &worker_run, &worker_key)).await?);
    lock(&state.predict.validation).insert(run_id.to_string(), (key, set.clone()));
    Ok((run, set))
}

async fn validation_page(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<ValidationPage, PredictError> {
    let (run, set) = validation_set(&state, &id).await?;
    let run_q = encode_query(&run.id);
    let items = set
        .items
        .iter()
        .enumerate()
        .map(|(n, item)| ValidationItem {
            n,
            name: item.name.clone(),
            truth: if item.truth.is_empty() {
                "no finding".into()
            } else {
                item.truth.join(", ")
            },
            image_src: format!("/runs/{run_q}/predictions/{n}/image.png"),
            gradcam_src: format!("/runs/{run_q}/predictions/{n}/gradcam.png"),
            top_label: item.ranked[0].0.clone(),
            top: item
                .ranked
                .iter()
                .take(TOP_LABELS)
                .map(|(label, p, t)| {
                    probability_row(
                        label,
                        *p,
                        *t,
                        format!("/predict/{}?run={run_q}&label={}", item.sha, encode_query(label)),
                        false,
                    )
                })
                .collect(),
            details_href: format!("/predict/{}?run={run_q}", item.sha),
        })
        .collect();
    Ok(ValidationPage {
        run_id: run.id.clone(),
        run_name: run.name.clone(),
        note: set.note.clone(),
        items,
    })
}

/// `image.png`, `gradcam.png` (top label) or `top.svg` (top-3 bars) of validation image `n`.
async fn validation_file(
    State(state): State<Arc<AppState>>,
    Path((id, n, file)): Path<(String, String, String)>,
) -> Result<Response, PredictError> {
    let missing = || PredictError::NotFound(format!("no validation image '{n}/{file}' for run '{id}'"));
    let index: usize = n.parse().map_err(|_| missing())?;
    if !matches!(file.as_str(), "image.png" | "gradcam.png" | "top.svg") {
        return Err(missing());
    }
    let (_, set) = validation_set(&state, &id).await?;
    let item = set.items.get(index).ok_or_else(missing)?;
    Ok(match file.as_str() {
        "image.png" => png(item.image_png.clone()),
        "gradcam.png" => png(item.overlay_png.clone()),
        _ => (
            [
                (header::CONTENT_TYPE, "image/svg+xml"),
                (header::CACHE_CONTROL, "private, max-age=300"),
            ],
            top_svg(&item.ranked[..item.ranked.len().min(TOP_LABELS)]),
        )
            .into_response(),
    })
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Horizontal bars for a few (label, probability, threshold): the bar is the probability, the
/// dark tick the tuned threshold; bars over their threshold are red.
fn top_svg(ranked: &[(String, f32, f32)]) -> String {
    const ROW: usize = 22;
    const LABEL_W: f32 = 130.0;
    const BAR_W: f32 = 120.0;
    let height = ROW * ranked.len().max(1) + 4;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"310\" height=\"{height}\" viewBox=\"0 0 310 {height}\" \
         font-family=\"sans-serif\" font-size=\"12\">"
    );
    for (i, (label, p, t)) in ranked.iter().enumerate() {
        let y = (i * ROW + 4) as f32;
        let fill = if p >= t { "#c0392b" } else { "#4a7ab5" };
        svg.push_str(&format!(
            "<text x=\"0\" y=\"{ty}\">{label}</text>\
             <rect x=\"{LABEL_W}\" y=\"{y}\" width=\"{BAR_W}\" height=\"14\" fill=\"#eee\"/>\
             <rect x=\"{LABEL_W}\" y=\"{y}\" width=\"{w:.1}\" height=\"14\" fill=\"{fill}\"/>\
             <line x1=\"{tx:.1}\" x2=\"{tx:.1}\" y1=\"{y0}\" y2=\"{y1}\" stroke=\"#222\" stroke-width=\"2\"/>\
             <text x=\"{vx}\" y=\"{ty}\">{p:.3}</text>",
            ty = y + 11.0,
            label = xml_escape(label),
            w = BAR_W * p.clamp(0.0, 1.0),
            tx = LABEL_W + BAR_W * t.clamp(0.0, 1.0),
            y0 = y - 2.0,
            y1 = y + 16.0,
            vx = LABEL_W + BAR_W + 6.0,
        ));
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_of(image: &GrayImage) -> Vec<u8> {
        encode_png(image)
    }

    #[test]
    fn uploads_are_sniffed_by_content_and_size_checked_before_decoding() {
        let ok = png_of(&GrayImage::from_pixel(8, 6, image::Luma([7])));
        assert_eq!(decode_upload(&ok).unwrap().dimensions(), (8, 6));

        let text = decode_upload(b"name,label\nx.png,Effusion\n").unwrap_err();
        assert_eq!(text.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(text.message().contains("not a PNG or JPEG"), "{}", text.message());

        let truncated = decode_upload(&ok[..ok.len() - 20]).unwrap_err();
        assert!(
            truncated.message().contains("cannot be decoded"),
            "{}",
            truncated.message()
        );

        let huge = png_of(&GrayImage::new(MAX_SIDE + 1, 2));
        let err = decode_upload(&huge).unwrap_err();
        assert!(err.message().contains("4097 × 2 pixels"), "{}", err.message());
    }

    #[test]
    fn stored_uploads_are_content_addressed_and_only_hex_names_resolve() {
        let tmp = tempfile::tempdir().unwrap();
        let image = GrayImage::from_pixel(4, 4, image::Luma([200]));
        let (sha, png) = store_upload(tmp.path(), &image).unwrap();
        assert_eq!(sha, hex::encode(Sha256::digest(&png)));
        assert_eq!(std::fs::read(tmp.path().join(format!("{sha}.png"))).unwrap(), png);
        let (again, _) = store_upload(tmp.path(), &image).unwrap();
        assert_eq!(again, sha, "the same image gets the same address");
    }

    #[test]
    fn top_bars_escape_labels_and_mark_thresholds() {
        let svg = top_svg(&[("<b>&".into(), 0.9, 0.5), ("Mass".into(), 0.1, 0.25)]);
        assert!(svg.contains("&lt;b&gt;&amp;") && !svg.contains("<b>"));
        assert!(
            svg.contains("#c0392b") && svg.contains("#4a7ab5"),
            "positive and negative bars"
        );
        assert!(svg.contains("x1=\"160.0\""), "threshold 0.25 drawn at 130 + 30");
    }
}
