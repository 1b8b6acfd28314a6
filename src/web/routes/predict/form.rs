//! The Predict form (`/predict`): choose a run with a checkpoint, upload an X-ray, see per-label
//! probabilities against the run's tuned thresholds and a Grad-CAM overlay; a stored upload's
//! result again at `/predict/{sha}` (another run or Grad-CAM label). Problems re-render the form
//! with the message next to it and the status they deserve.

use std::sync::Arc;

use axum::extract::multipart::{Multipart, MultipartError, MultipartRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::body_too_large;
use crate::service::predict::Outcome;
use crate::service::Error as ServiceError;
use crate::web::templates::{encode_query, PredictPage, PredictResult, PredictRunOption, ProbabilityRow};
use crate::web::{AppError, AppState};

/// The submitted form, as far as it was read.
#[derive(Debug, Default, Clone)]
pub(super) struct Form {
    pub run: String,
    pub label: String,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct PredictQuery {
    pub run: Option<String>,
    pub label: Option<String>,
}

impl From<PredictQuery> for Form {
    fn from(query: PredictQuery) -> Form {
        Form {
            run: query.run.unwrap_or_default(),
            label: query.label.unwrap_or_default(),
        }
    }
}

fn run_options(state: &AppState, selected: &str) -> Result<Vec<PredictRunOption>, AppError> {
    let runs = state.predict.runs_with_checkpoint()?;
    Ok(runs
        .into_iter()
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
pub(super) fn form_error(state: &AppState, form: &Form, error: AppError) -> Response {
    let status = error.status();
    (status, page(state, form, error.user_message(), None)).into_response()
}

pub(super) async fn form_page(State(state): State<Arc<AppState>>, Query(query): Query<PredictQuery>) -> Response {
    page(&state, &query.into(), String::new(), None).into_response()
}

fn invalid_image(message: String) -> ServiceError {
    ServiceError::invalid("image", message)
}

/// Reads the multipart form: `image` (bytes), `run`, `label`.
pub(super) async fn read_form(
    multipart: Result<Multipart, MultipartRejection>,
) -> (Form, Result<Vec<u8>, ServiceError>) {
    let mut form = Form::default();
    let mut multipart = match multipart {
        Ok(m) => m,
        Err(e) => {
            return (
                form,
                Err(invalid_image(format!(
                    "send the form as multipart/form-data with an `image` file ({})",
                    e.body_text()
                ))),
            )
        }
    };
    let mut image = None;
    let multipart_error = |e: MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            body_too_large()
        } else {
            invalid_image(format!("the upload is incomplete or malformed: {}", e.body_text()))
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
        .ok_or_else(|| invalid_image("choose an image file to upload (PNG or JPEG)".into()));
    (form, image)
}

/// Predicts the uploaded image. A too-large upload is answered before the run is looked at;
/// otherwise the run's problems come first, then the image's.
pub(super) async fn predict_upload(
    state: &AppState,
    form: &Form,
    image: Result<Vec<u8>, ServiceError>,
) -> Result<Outcome, AppError> {
    if let Err(e @ ServiceError::TooLarge(_)) = image {
        return Err(e.into());
    }
    Ok(state.predict.predict_upload(&form.run, &form.label, image).await?)
}

pub(super) fn probability_row(label: &str, p: f32, t: f32, href: String, chosen: bool) -> ProbabilityRow {
    ProbabilityRow {
        label: label.to_string(),
        probability: format!("{p:.4}"),
        threshold: format!("{t:.4}"),
        positive: p >= t,
        bar_width: format!("{:.1}", (p.clamp(0.0, 1.0) * 100.0)),
        threshold_x: format!("{:.1}", (t.clamp(0.0, 1.0) * 100.0)),
        gradcam_href: href,
        chosen,
        gradcam_empty: false,
    }
}

pub(super) fn result_view(outcome: &Outcome) -> PredictResult {
    let run = encode_query(&outcome.run.id);
    let sha = &outcome.sha;
    let gradcam = &outcome.gradcam;
    let rows = outcome
        .prediction
        .ranked
        .iter()
        .map(|(label, p, t)| {
            let chosen = *label == gradcam.label;
            ProbabilityRow {
                gradcam_empty: (chosen && gradcam.empty) || gradcam.skipped.contains(label),
                ..probability_row(
                    label,
                    *p,
                    *t,
                    format!("/predict/{sha}?run={run}&label={}", encode_query(label)),
                    chosen,
                )
            }
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
        gradcam_label: gradcam.label.clone(),
        gradcam_src: format!(
            "/predict/{sha}/gradcam.png?run={run}&label={}",
            encode_query(&gradcam.label)
        ),
        gradcam_empty: gradcam.empty,
        gradcam_note: gradcam.note.clone().unwrap_or_default(),
        gradcam_peak: format!("{:.3e}", gradcam.peak),
        image_src: format!("/predict/{sha}/image.png"),
        cropped: outcome.width != outcome.height,
    }
}

pub(super) async fn predict_form(
    State(state): State<Arc<AppState>>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    let (form, image) = read_form(multipart).await;
    match predict_upload(&state, &form, image).await {
        Ok(outcome) => page(&state, &form, String::new(), Some(result_view(&outcome))).into_response(),
        Err(e) => form_error(&state, &form, e),
    }
}

/// A stored upload, against a run, with the Grad-CAM label chosen by the query.
pub(super) async fn result_page(
    State(state): State<Arc<AppState>>,
    Path(sha): Path<String>,
    Query(query): Query<PredictQuery>,
) -> Response {
    let form = Form::from(query);
    match state.predict.predict_stored(&sha, &form.run, &form.label).await {
        Ok(outcome) => page(&state, &form, String::new(), Some(result_view(&outcome))).into_response(),
        Err(e) => form_error(&state, &form, e.into()),
    }
}
