//! The Predict pages' handlers: the form and its result (`/predict`, [`form`]), the JSON twin
//! and the stored images (`/api/predict`, `/predict/{sha}/…`, [`api`]), and a run's predictions on
//! its own validation images (`/runs/{id}/predictions…`, [`validation`]). The work itself is the
//! prediction service's ([`crate::service::predict`]).

mod api;
mod form;
mod validation;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::web::{AppError, AppState};

/// Largest accepted upload request (the image plus the form's few text fields).
pub const UPLOAD_LIMIT_BYTES: usize = 16 * 1024 * 1024;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/predict", get(form::form_page).post(form::predict_form))
        .route("/predict/gradcam-scale.svg", get(api::gradcam_scale))
        .route("/predict/{sha}", get(form::result_page))
        .route("/predict/{sha}/gradcam.png", get(api::upload_gradcam))
        .route("/predict/{sha}/image.png", get(api::upload_image))
        .route("/api/predict", post(api::predict_api))
        .route("/runs/{id}/predictions", get(validation::validation_page))
        .route("/runs/{id}/predictions/{n}/{file}", get(validation::validation_file))
}

fn body_too_large() -> crate::service::Error {
    crate::service::Error::TooLarge(format!(
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
        AppError::from(body_too_large()).into_response()
    } else {
        form::form_error(&state, &form::Form::default(), body_too_large().into())
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
