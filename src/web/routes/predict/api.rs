//! `POST /api/predict` (the form's JSON twin) and the stored upload's images: the gray image
//! itself and a Grad-CAM overlay for a run and label; and the overlays' colour scale.

use std::sync::Arc;

use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::form::{predict_upload, read_form, result_view, PredictQuery};
use super::png;
use crate::service::predict::gradcam_scale_svg;
use crate::web::{AppError, AppState};

/// Where the overlays' colour scale is served.
pub(super) const SCALE_SRC: &str = "/predict/gradcam-scale.svg";

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

/// The overlays' colour scale (SVG), the same for every map (each is scaled by its own peak).
pub(super) async fn gradcam_scale() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        gradcam_scale_svg(),
    )
        .into_response()
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
    /// The label the Grad-CAM was computed for: the one asked for, else the most probable one
    /// whose map is not empty (the most probable when all are empty).
    gradcam_label: String,
    /// No region raises the score for `gradcam_label`: the overlay is the image alone, hatched.
    gradcam_empty: bool,
    /// The map's raw peak before it was scaled to [0, 1] (0 when nothing is positive).
    gradcam_peak: f32,
    /// More probable labels passed over because their maps are empty.
    gradcam_skipped: Vec<String>,
    /// The page's sentence about the map (labels passed over, or that it is empty); null when
    /// there is nothing to say.
    gradcam_note: Option<String>,
    /// The overlay's URL.
    gradcam: String,
    /// The overlays' colour scale (SVG).
    gradcam_scale: String,
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
        gradcam_label: outcome.gradcam.label,
        gradcam_empty: outcome.gradcam.empty,
        gradcam_peak: outcome.gradcam.peak,
        gradcam_skipped: outcome.gradcam.skipped,
        gradcam_note: outcome.gradcam.note,
        gradcam: view.gradcam_src,
        gradcam_scale: SCALE_SRC.to_string(),
    }))
}
