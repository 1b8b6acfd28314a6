//! The JSON API: list and read runs, export metrics as CSV, and submit, cancel, resume or delete
//! runs through [`JobControl`](crate::web::JobControl). Errors are JSON (`{"error", "fields"}`).

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Json;
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::run::{full_epoch, load_run, scalar_epochs};
use crate::data::LabelTable;
use crate::service::evaluation::SplitChoice;
use crate::store::{EpochRow, Run, RunStatus, StepPoint};
use crate::train::TrainConfig;
use crate::web::metrics::{self, LabelMetrics};
use crate::web::{AppError, AppState, FieldError};

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/runs", get(list_runs).post(submit_run))
        .route("/api/runs/{id}", get(run_detail).delete(delete_run))
        .route("/api/runs/{id}/metrics.csv", get(metrics_csv))
        .route("/api/runs/{id}/steps", get(steps_json))
        .route("/api/runs/{id}/steps.csv", get(steps_csv))
        .route("/api/runs/{id}/predictions.csv", get(predictions_csv))
        .route("/runs/{id}/weights.safetensors", get(weights_safetensors))
        .route("/api/runs/{id}/test", post(score_test))
        .route("/api/runs/{id}/cancel", post(cancel_run))
        .route("/api/runs/{id}/resume", post(resume_run))
}

#[derive(Serialize)]
struct RunList {
    /// Newest first, `limit` of them from the `offset`-th on.
    runs: Vec<ListedRun>,
    /// Run ids waiting or training, in order.
    queue: Vec<String>,
    /// All runs in the store.
    total: usize,
    offset: usize,
    limit: usize,
    /// The address of the next page; `null` on the last one.
    next: Option<String>,
}

/// Runs per page of `GET /api/runs` unless `limit` says otherwise, and the most it may say:
/// all of 10,000 runs with their configs is 15 MB of JSON that takes longer to write than any
/// page of the dashboard.
const DEFAULT_LIST_LIMIT: usize = 100;
const MAX_LIST_LIMIT: usize = 1000;

#[derive(Debug, Default, Deserialize)]
struct ListParams {
    // Text, so a bad value gets our message rather than the extractor's.
    limit: Option<String>,
    offset: Option<String>,
}

impl ListParams {
    /// (limit, offset), or what is wrong with them.
    fn parse(&self) -> Result<(usize, usize), AppError> {
        let number = |name: &str, text: &Option<String>, default: usize, range: std::ops::RangeInclusive<usize>| {
            let Some(text) = text.as_deref().map(str::trim).filter(|t| !t.is_empty()) else {
                return Ok(default);
            };
            text.parse::<usize>().ok().filter(|n| range.contains(n)).ok_or_else(|| {
                AppError::BadRequest(format!(
                    "{name} must be a whole number from {} to {}, not '{text}'",
                    range.start(),
                    range.end()
                ))
            })
        };
        Ok((
            number("limit", &self.limit, DEFAULT_LIST_LIMIT, 1..=MAX_LIST_LIMIT)?,
            number("offset", &self.offset, 0, 0..=usize::MAX >> 1)?,
        ))
    }
}

/// A [`Run`] exactly as it serialises, but with the stored config text passed through unparsed:
/// parsing and re-writing every config was most of this request's time with thousands of runs.
#[derive(Serialize)]
struct ListedRun {
    id: String,
    name: String,
    status: RunStatus,
    config: Box<RawValue>,
    dataset: String,
    model: String,
    image_size: u32,
    epochs_planned: u32,
    epochs_done: u32,
    best_epoch: Option<u32>,
    best_metric_name: Option<String>,
    best_metric: Option<f64>,
    best_val_mean_auroc: Option<f64>,
    /// Top-1 accuracy for single-label runs, per-label accuracy at 0.5 for multi-label ones:
    /// kept for old clients; read `headline` instead.
    best_val_accuracy: Option<f64>,
    best_val_balanced_accuracy: Option<f64>,
    headline: Option<Headline>,
    /// The held-out test mean AUROC, once scored (the whole report is in `GET /api/runs/{id}`).
    test_mean_auroc: Option<f64>,
    created_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
    tags: Vec<String>,
    notes: String,
    error: Option<String>,
    checkpoint_dir: Option<String>,
    device: Option<String>,
}

/// The number a run leads with, named (see `Run::headline`).
#[derive(Serialize)]
struct Headline {
    metric: &'static str,
    value: f64,
}

impl Headline {
    fn of(run: &Run) -> Option<Headline> {
        run.headline().map(|(metric, value)| Headline { metric, value })
    }
}

impl ListedRun {
    fn new(run: Run, config: String) -> ListedRun {
        // Unreadable stored JSON shows as a string, as `Store::runs` shows it.
        let config = match serde_json::from_str::<&RawValue>(&config) {
            Ok(raw) => raw.to_owned(),
            Err(_) => serde_json::value::to_raw_value(&config).expect("a string serialises"),
        };
        let headline = Headline::of(&run);
        ListedRun {
            id: run.id,
            name: run.name,
            status: run.status,
            config,
            dataset: run.dataset,
            model: run.model,
            image_size: run.image_size,
            epochs_planned: run.epochs_planned,
            epochs_done: run.epochs_done,
            best_epoch: run.best_epoch,
            best_metric_name: run.best_metric_name,
            best_metric: run.best_metric,
            best_val_mean_auroc: run.best_val_mean_auroc,
            best_val_accuracy: run.best_val_accuracy,
            best_val_balanced_accuracy: run.best_val_balanced_accuracy,
            headline,
            test_mean_auroc: run.test_mean_auroc,
            created_at: run.created_at,
            started_at: run.started_at,
            finished_at: run.finished_at,
            tags: run.tags,
            notes: run.notes,
            error: run.error,
            checkpoint_dir: run.checkpoint_dir,
            device: run.device,
        }
    }
}

async fn list_runs(
    State(state): State<Arc<AppState>>,
    Query(params): Query<ListParams>,
) -> Result<Json<RunList>, AppError> {
    let (limit, offset) = params.parse()?;
    let total = state.store.run_count()?;
    let runs = state.store.runs_with_raw_config(limit, offset)?;
    let end = offset.saturating_add(runs.len());
    Ok(Json(RunList {
        next: (end < total).then(|| format!("/api/runs?offset={end}&limit={limit}")),
        runs: runs
            .into_iter()
            .map(|(run, config)| ListedRun::new(run, config))
            .collect(),
        queue: state.jobs.queue(),
        total,
        offset,
        limit,
    }))
}

#[derive(Serialize)]
struct RunDetail {
    #[serde(flatten)]
    run: Run,
    headline: Option<Headline>,
    /// Every epoch's scalar metrics (per-label rows are left out; see `per_label`).
    epochs: Vec<EpochRow>,
    /// Per-label validation metrics of the best epoch (`best_epoch`).
    per_label: Vec<LabelMetrics>,
    per_label_epoch: Option<u32>,
}

async fn run_detail(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Json<RunDetail>, AppError> {
    let run = load_run(&state, &id)?;
    // Scalar rows are the stored rows without `val_per_label`.
    let epochs = scalar_epochs(&state, &id)?;
    let best = full_epoch(&state, &id, metrics::best_epoch(&run, &epochs))?;
    let per_label = best
        .as_ref()
        .map(|e| metrics::per_label(&e.metrics))
        .unwrap_or_default();
    let per_label_epoch = best.map(|e| e.epoch);
    let epochs = epochs.as_ref().clone();
    Ok(Json(RunDetail {
        headline: Headline::of(&run),
        run,
        epochs,
        per_label,
        per_label_epoch,
    }))
}

/// Scores a finished, cancelled or interrupted run's best checkpoint on its test split now.
async fn score_test(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Json<Value>, AppError> {
    let run = load_run(&state, &id)?;
    Ok(Json(state.predict.score_test(&run.id).await?))
}

#[derive(Deserialize)]
struct SplitQuery {
    split: Option<String>,
}

/// The best checkpoint's probabilities on the run's own split (`?split=test|val|train`, test by
/// default): `image`, then one column per label.
async fn predictions_csv(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<SplitQuery>,
) -> Result<impl IntoResponse, AppError> {
    let split = match query.split.as_deref().map(str::trim) {
        None | Some("") | Some("test") => SplitChoice::Test,
        Some("val") => SplitChoice::Val,
        Some("train") => SplitChoice::Train,
        Some(other) => {
            return Err(AppError::BadRequest(format!(
                "split must be test, val or train, not '{other}'"
            )))
        }
    };
    let run = load_run(&state, &id)?;
    let body = state.predict.split_csv(&run.id, split).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"cxr8-{}-{}-predictions.csv\"",
                    safe_file_part(&run.id),
                    split.name()
                ),
            ),
        ],
        body,
    ))
}

/// The run's best checkpoint in torchvision's key layout (what `cxr8 export` writes), for
/// `model.load_state_dict` in PyTorch.
async fn weights_safetensors(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    let run = load_run(&state, &id)?;
    let body = state.predict.weights_safetensors(&run.id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"cxr8-{}.safetensors\"", safe_file_part(&run.id)),
            ),
        ],
        body,
    ))
}

/// A run id as a file-name part (ours are letters, digits and dashes; keep headers safe anyway).
fn safe_file_part(id: &str) -> String {
    id.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

/// One row per epoch; columns are `epoch`, `committed_at` and every numeric metric key.
async fn metrics_csv(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    let run = load_run(&state, &id)?;
    let epochs = scalar_epochs(&state, &id)?;
    let keys = metrics::scalar_keys(&epochs);
    let columns = ["epoch", "committed_at"]
        .into_iter()
        .map(String::from)
        .chain(keys.iter().cloned())
        .collect();
    let rows = epochs.iter().map(|e| {
        let mut record = vec![e.epoch.to_string(), e.committed_at.clone()];
        // Full precision, and empty where an epoch lacks a metric.
        record.extend(keys.iter().map(|k| {
            metrics::number(&e.metrics, k)
                .map(|v| v.to_string())
                .unwrap_or_default()
        }));
        record
    });
    csv_download(&run.id, "metrics", columns, rows)
}

/// A run's step points (the step-level training curve), in step order.
#[derive(Serialize)]
struct StepPoints {
    run_id: String,
    points: Vec<StepPoint>,
}

async fn steps_json(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Json<StepPoints>, AppError> {
    let run = load_run(&state, &id)?;
    let points = state.store.step_points(&run.id)?;
    Ok(Json(StepPoints { run_id: run.id, points }))
}

/// One row per step point, columns as the JSON's fields; empty where an accuracy is undefined.
async fn steps_csv(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<impl IntoResponse, AppError> {
    let run = load_run(&state, &id)?;
    let points = state.store.step_points(&run.id)?;
    let columns = STEP_COLUMNS.iter().map(|c| c.to_string()).collect();
    let optional = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    let rows = points.iter().map(|p| {
        vec![
            p.step.to_string(),
            p.epoch.to_string(),
            p.window_steps.to_string(),
            p.loss.to_string(),
            optional(p.top1_accuracy),
            optional(p.exact_match),
            p.images.to_string(),
            p.lr.to_string(),
            p.wall_seconds.to_string(),
        ]
    });
    csv_download(&run.id, "steps", columns, rows)
}

/// The columns of `steps.csv`, in order.
const STEP_COLUMNS: [&str; 9] = [
    "step",
    "epoch",
    "window_steps",
    "loss",
    "top1_accuracy",
    "exact_match",
    "images",
    "lr",
    "wall_seconds",
];

/// A CSV attachment named `cxr8-<run>-<what>.csv`.
fn csv_download(
    run_id: &str,
    what: &str,
    columns: Vec<String>,
    rows: impl Iterator<Item = Vec<String>>,
) -> Result<axum::response::Response, AppError> {
    let csv_error = |e: csv::Error| AppError::Internal(format!("writing {what} CSV: {e}"));
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(&columns).map_err(csv_error)?;
    for record in rows {
        writer.write_record(&record).map_err(csv_error)?;
    }
    let body = writer
        .into_inner()
        .map_err(|e| AppError::Internal(format!("writing {what} CSV: {e}")))?;
    let file = safe_file_part(run_id);
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"cxr8-{file}-{what}.csv\""),
            ),
        ],
        body,
    )
        .into_response())
}

async fn submit_run(
    State(state): State<Arc<AppState>>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<impl IntoResponse, AppError> {
    let Json(config) = body.map_err(|rejection| AppError::BadRequest(rejection.body_text()))?;
    if !config.is_object() {
        return Err(AppError::Invalid(vec![FieldError::new(
            "",
            "send the training config as a JSON object, e.g. {\"model\": \"resnet-18\", \"epochs\": 10}",
        )]));
    }
    let worker = state.clone();
    // Scripts are not asked to confirm a long run, and not kept waiting while a step is timed:
    // the answer carries the estimate when this configuration was timed before (else `null`;
    // `GET /api/estimate` times it).
    let (id, estimate) = tokio::task::spawn_blocking(move || {
        check_submission(&config)?;
        let id = worker.jobs.submit(config.clone())?;
        let estimate = worker.estimates.estimate_posted(&config, false).ok();
        if let Some(estimate) = &estimate {
            super::new_run::keep_estimate(&worker, &id, estimate);
        }
        Ok::<_, Vec<FieldError>>((id, estimate.filter(|e| e.total_seconds.is_some())))
    })
    .await
    .map_err(|e| AppError::Internal(format!("submitting a run: {e}")))?
    .map_err(AppError::rejected)?;
    let location = format!("/runs/{id}");
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(json!({ "id": id, "estimate": estimate })),
    ))
}

/// Checks a posted config before it reaches the engine, so a mistake is answered at once and by
/// field name: a value of the wrong type or an unknown key (serde alone reports a line and column,
/// not the field), a label file that is missing or not a label file, an image folder that is not
/// a folder. Paths are on the machine running cxr8, as with `cxr8 train`. Blocking (reads files).
pub(super) fn check_submission(config: &Value) -> Result<(), Vec<FieldError>> {
    let Some(object) = config.as_object() else {
        return Ok(());
    };
    let mut errors = Vec::new();
    for (key, value) in object {
        // With every other field at its default, only this value can make parsing fail.
        let alone = Value::Object([(key.clone(), value.clone())].into_iter().collect());
        // Parsed from text, as the engine does (from a `Value`, an f32 overflow would pass as inf).
        if let Err(e) = serde_json::from_str::<TrainConfig>(&alone.to_string()) {
            errors.push(FieldError::new(key.as_str(), format!("cannot be used: {e}")));
        }
    }
    if let Some(labels) = object
        .get("labels")
        .and_then(Value::as_str)
        .filter(|p| !p.trim().is_empty())
    {
        if let Err(e) = LabelTable::load(labels) {
            errors.push(FieldError::new(
                "labels",
                format!("{e} (give the path of a label file on the machine running cxr8)"),
            ));
        }
    }
    if let Some(images) = object.get("images").and_then(Value::as_str) {
        if images.trim().is_empty() {
            errors.push(FieldError::new(
                "images",
                "is empty; leave it out to use the images/ folder next to the label file",
            ));
        } else if !std::path::Path::new(images).is_dir() {
            errors.push(FieldError::new(
                "images",
                format!("{images}: no such folder on the machine running cxr8; give the folder that holds the images"),
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

async fn cancel_run(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<impl IntoResponse, AppError> {
    load_run(&state, &id)?;
    state.jobs.cancel(&id)?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "id": id, "cancelling": true }))))
}

async fn resume_run(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<impl IntoResponse, AppError> {
    load_run(&state, &id)?;
    state.jobs.resume(&id)?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "id": id, "resuming": true }))))
}

/// Deletes a finished run's records and its checkpoint folders (see `actions` for what is
/// removed). A queued or running run must be cancelled first, so the engine never writes to a run
/// that is gone.
async fn delete_run(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<StatusCode, AppError> {
    tokio::task::spawn_blocking(move || super::actions::delete_run_with_checkpoints(&state, &id))
        .await
        .map_err(|e| AppError::Internal(format!("deleting a run: {e}")))??;
    Ok(StatusCode::NO_CONTENT)
}
