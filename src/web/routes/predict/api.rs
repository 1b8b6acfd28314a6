//! `POST /api/predict` (the form's JSON twin) and the stored upload's images: the gray image
//! itself and a Grad-CAM overlay for a run and label.

use std::sync::Arc;

use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Json;
use serde::Serialize;

use super::form::{predict_upload, read_form, result_view, PredictQuery};
use super::png;
use crate::web::{AppError, AppState};

pub(super) async fn upload_image(
    State(state): State<Arc<AppState>>,
    Path(sha): Path<String>,
) -> Result<Response, AppError> {
    let path = state.predict.upload_path(&sha)?;
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| AppError::Internal(format!("{}: {e}", path.display())))?;
    Ok(png(bytes))
}

pub(super) async fn upload_gradcam(
    State(state): State<Arc<AppState>>,
    Path(sha): Path<String>,
    Query(query): Query<PredictQuery>,
) -> Result<Response, AppError> {
    let run = query.run.unwrap_or_default();
    let label = query.label.unwrap_or_default();
    Ok(png(state.predict.gradcam_png(&sha, &run, &label).await?))
}

#[derive(Serialize)]
struct LabelJson {
    label: String,
    probability: f32,
    threshold: f32,
    positive: bool,
}

#[derive(Serialize)]
pub(super) struct PredictJson {
    run: String,
    /// The stored image's content hash (its address under `/predict/{sha}`).
    image: String,
    width: u32,
    height: u32,
    labels: Vec<LabelJson>,
    gradcam_label: String,
    gradcam: String,
}

pub(super) async fn predict_api(
    State(state): State<Arc<AppState>>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<PredictJson>, AppError> {
    let (form, image) = read_form(multipart).await;
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
