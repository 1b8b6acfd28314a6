//! Adding a data set (the form and `POST /datasets`, which starts its cache build) and forgetting
//! one.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use crate::service::datasets::DEMO_DATASET;
use crate::service::datasets::{self, Registration};
use crate::train::config::{MAX_IMAGE_SIZE, MIN_IMAGE_SIZE};
use crate::web::templates::DatasetNewPage;
use crate::web::{AppError, AppState};

use super::*;

pub(super) async fn new_page() -> impl IntoResponse {
    DatasetNewPage {
        image_size: DEFAULT_CACHE_SIZE.to_string(),
        ..DatasetNewPage::default()
    }
}

/// The add form as posted (urlencoded); every value optional so a missing one gets a message.
#[derive(Debug, Default, Deserialize)]
pub(super) struct NewDatasetForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    label_file: String,
    #[serde(default)]
    val_label_file: String,
    #[serde(default)]
    test_label_file: String,
    #[serde(default)]
    image_dir: String,
    allow_missing: Option<String>,
    #[serde(default)]
    image_size: String,
}

pub(super) async fn create(State(state): State<Arc<AppState>>, Form(form): Form<NewDatasetForm>) -> Response {
    let mut page = DatasetNewPage {
        name: form.name.trim().to_string(),
        label_file: form.label_file.trim().to_string(),
        val_label_file: form.val_label_file.trim().to_string(),
        test_label_file: form.test_label_file.trim().to_string(),
        image_dir: form.image_dir.trim().to_string(),
        allow_missing: matches!(form.allow_missing.as_deref(), Some("on" | "true" | "1")),
        image_size: form.image_size.trim().to_string(),
        ..DatasetNewPage::default()
    };
    let size = match page.image_size.as_str() {
        "" => Some(DEFAULT_CACHE_SIZE),
        text => text
            .parse::<u32>()
            .ok()
            .filter(|s| (MIN_IMAGE_SIZE..=MAX_IMAGE_SIZE).contains(s)),
    };
    if size.is_none() {
        page.image_size_error = format!(
            "use a whole number of pixels from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE}, not '{}'",
            page.image_size
        );
    }
    let input = Registration {
        name: page.name.clone(),
        label_file: page.label_file.clone(),
        val_label_file: page.val_label_file.clone(),
        test_label_file: page.test_label_file.clone(),
        image_dir: page.image_dir.clone(),
        allow_missing: page.allow_missing,
    };
    let store = state.store.clone();
    // Parsing a 112k-row label file and scanning folders must not stall the runtime. Only
    // checked here when the size is bad, so nothing is stored with an unusable form.
    let register = size.is_some();
    let result = tokio::task::spawn_blocking(move || {
        if register {
            datasets::register(&store, &input)
        } else {
            datasets::check(&store, &input)
        }
    })
    .await;
    let result = match result {
        Ok(result) => result,
        Err(e) => return AppError::Internal(format!("registration task failed: {e}")).into_response(),
    };
    match (result, size) {
        (Ok(checked), Some(size)) => {
            let name = checked.name.clone();
            state.datasets.forget(&name);
            state
                .datasets
                .start_cache_build(state.store.clone(), &state.data_dir, checked, size);
            Redirect::to(&format!("/datasets/{name}")).into_response()
        }
        (result, _) => {
            for problem in result.err().unwrap_or_default() {
                let slot = match problem.field.as_str() {
                    "name" => &mut page.name_error,
                    "label_file" => &mut page.label_file_error,
                    "val_label_file" => &mut page.val_label_file_error,
                    "test_label_file" => &mut page.test_label_file_error,
                    "image_dir" => &mut page.image_dir_error,
                    "allow_missing" => &mut page.allow_missing_error,
                    _ => &mut page.general_error,
                };
                if !slot.is_empty() {
                    slot.push(' ');
                }
                slot.push_str(&problem.message);
            }
            (StatusCode::UNPROCESSABLE_ENTITY, page).into_response()
        }
    }
}

pub(super) async fn delete(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Result<Response, AppError> {
    if name == DEMO_DATASET {
        return Err(AppError::Conflict(
            "the demo data set is built in and cannot be removed".into(),
        ));
    }
    // Unknown names get the usual 404.
    locate(&state, &name)?;
    let store = state.store.clone();
    let target = name.clone();
    tokio::task::spawn_blocking(move || datasets::remove(&store, &target))
        .await
        .map_err(|e| AppError::Internal(format!("delete task failed: {e}")))??;
    state.datasets.forget(&name);
    Ok(Redirect::to("/datasets").into_response())
}
