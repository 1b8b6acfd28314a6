//! Data set pages: the list (`/datasets`), one data set's statistics, charts and thumbnail browser
//! (`/datasets/{name}`), adding one (`/datasets/new`, `POST /datasets`, which starts its cache
//! build), forgetting one, and the JSON API (`/api/datasets`). Registration rules live in
//! `crate::service::datasets`; this file only turns them into pages.

mod form;
mod page;

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::data::demo;
use crate::service::datasets::DEMO_DATASET;
use crate::service::datasets::{CacheStatus, DatasetFacts, Summary};
use crate::store::DatasetRow;
use crate::web::templates::{DatasetListRow, DatasetsPage};
use crate::web::{AppError, AppState};
use form::{create, delete, new_page};
use page::{dataset_chart, dataset_page, thumbnail};

/// Thumbnails per page of the image browser.
pub(super) const THUMBS_PER_PAGE: usize = 24;
/// Thumbnail side in pixels.
pub(super) const THUMB_SIZE: u32 = 128;
/// Cache image size suggested by the form: the training default.
pub(super) const DEFAULT_CACHE_SIZE: u32 = 224;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/datasets", get(list_page).post(create))
        .route("/datasets/new", get(new_page))
        .route("/datasets/{name}", get(dataset_page))
        .route("/datasets/{name}/labels.svg", get(dataset_chart))
        .route("/datasets/{name}/labels.png", get(dataset_chart))
        .route("/datasets/{name}/labels.csv", get(dataset_chart))
        .route("/datasets/{name}/cooccurrence.svg", get(dataset_chart))
        .route("/datasets/{name}/cooccurrence.png", get(dataset_chart))
        .route("/datasets/{name}/cooccurrence.csv", get(dataset_chart))
        .route("/datasets/{name}/thumbs/{file}", get(thumbnail))
        .route("/datasets/{name}/delete", post(delete))
        .route("/api/datasets", get(api_list))
        .route("/api/datasets/{name}", get(api_detail))
}

/// A data set's files and registration; `row` is `None` for the built-in demo.
pub(super) struct Located {
    name: String,
    label_file: PathBuf,
    image_dir: PathBuf,
    row: Option<DatasetRow>,
}

impl Located {
    fn summary(&self) -> Option<Summary> {
        self.row.as_ref().and_then(Summary::from_row)
    }
}

pub(super) fn locate(state: &AppState, name: &str) -> Result<Located, AppError> {
    if name == DEMO_DATASET {
        let dir = state.data_dir.join("demo");
        let label_file = dir.join(demo::LABEL_FILE);
        if !label_file.is_file() {
            return Err(AppError::NotFound(
                "the demo data set has not been generated yet: `cxr8 serve` or `cxr8 demo` makes it".into(),
            ));
        }
        return Ok(Located {
            name: name.into(),
            label_file,
            image_dir: dir.join(demo::IMAGES_DIR),
            row: None,
        });
    }
    let row = state
        .store
        .dataset(name)?
        .ok_or_else(|| AppError::NotFound(format!("no data set named '{name}'; see /datasets")))?;
    Ok(Located {
        name: row.name.clone(),
        label_file: row.label_file.clone().into(),
        image_dir: row.image_dir.clone().into(),
        row: Some(row),
    })
}

/// The parsed files, from the in-memory cache or read on a blocking thread.
pub(super) async fn facts(state: &Arc<AppState>, located: &Located) -> Result<Arc<DatasetFacts>, String> {
    let (state, name, labels, images) = (
        state.clone(),
        located.name.clone(),
        located.label_file.clone(),
        located.image_dir.clone(),
    );
    let split_files = located.row.as_ref().and_then(|row| row.split_files.clone());
    tokio::task::spawn_blocking(move || state.datasets.facts(&name, &labels, split_files.as_ref(), &images))
        .await
        .map_err(|e| format!("reading the data set failed: {e}"))?
        .map_err(|e| format!("cannot read this data set's files any more: {e}"))
}

pub(super) async fn facts_or_404(state: &Arc<AppState>, located: &Located) -> Result<Arc<DatasetFacts>, AppError> {
    facts(state, located).await.map_err(AppError::NotFound)
}

pub(super) fn count(n: usize) -> String {
    // Thousands separated by commas: 112,120 reads at a glance.
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub(super) fn cache_label(status: &CacheStatus) -> String {
    status.size.map(|s| format!("{s} px")).unwrap_or_default()
}

pub(super) async fn list_page(State(state): State<Arc<AppState>>) -> Result<impl IntoResponse, AppError> {
    let mut rows = Vec::new();
    match locate(&state, DEMO_DATASET) {
        Ok(located) => {
            let row = match facts(&state, &located).await {
                Ok(f) => DatasetListRow {
                    name: DEMO_DATASET.into(),
                    demo: true,
                    images: count(f.table.len()),
                    found: count(f.found_rows.len()),
                    patients: count(f.stats.patients),
                    labels: f.table.labels.len().to_string(),
                    cache: "",
                    cache_size: String::new(),
                    note: "built in; training caches it at the run's image size".into(),
                },
                Err(message) => unknown_row(DEMO_DATASET, true, message),
            };
            rows.push(row);
        }
        Err(_) => rows.push(unknown_row(
            DEMO_DATASET,
            true,
            "not generated yet (cxr8 serve makes it)".into(),
        )),
    }
    for row in state.store.datasets()? {
        let summary = Summary::from_row(&row);
        let status = state.datasets.cache_status(&row.name, summary.as_ref());
        rows.push(match summary {
            Some(s) => DatasetListRow {
                name: row.name.clone(),
                demo: false,
                images: count(s.images),
                found: count(s.found),
                patients: count(s.patients),
                labels: s.labels.len().to_string(),
                cache: status.state,
                cache_size: cache_label(&status),
                note: String::new(),
            },
            None => unknown_row(&row.name, false, "no summary stored".into()),
        });
    }
    Ok(DatasetsPage { rows })
}

pub(super) fn unknown_row(name: &str, demo: bool, note: String) -> DatasetListRow {
    DatasetListRow {
        name: name.into(),
        demo,
        images: "–".into(),
        found: "–".into(),
        patients: "–".into(),
        labels: "–".into(),
        cache: "",
        cache_size: String::new(),
        note,
    }
}

/// A data set as the API shows it: the row, its summary and the cache state.
pub(super) async fn api_value(state: &Arc<AppState>, located: &Located) -> Value {
    match &located.row {
        Some(row) => {
            let summary = Summary::from_row(row);
            let cache = state.datasets.cache_status(&row.name, summary.as_ref());
            let mut value = crate::service::datasets::registered_json(row);
            value["cache"] = json!(cache);
            value
        }
        None => {
            let summary = facts(state, located)
                .await
                .ok()
                .map(|f| Summary::of(&f.table, &f.index, false).to_json());
            json!({
                "name": located.name,
                "demo": true,
                "label_file": located.label_file,
                "image_dir": located.image_dir,
                "created_at": null,
                "summary": summary,
                "cache": state.datasets.cache_status(&located.name, None),
            })
        }
    }
}

pub(super) async fn api_list(State(state): State<Arc<AppState>>) -> Result<Json<Vec<Value>>, AppError> {
    let mut out = Vec::new();
    if let Ok(demo) = locate(&state, DEMO_DATASET) {
        out.push(api_value(&state, &demo).await);
    }
    for row in state.store.datasets()? {
        let located = Located {
            name: row.name.clone(),
            label_file: row.label_file.clone().into(),
            image_dir: row.image_dir.clone().into(),
            row: Some(row),
        };
        out.push(api_value(&state, &located).await);
    }
    Ok(Json(out))
}

pub(super) async fn api_detail(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, AppError> {
    let located = locate(&state, &name)?;
    Ok(Json(api_value(&state, &located).await))
}
