//! A run's predictions on a few of its own validation images (`/runs/{id}/predictions`): each
//! image with its labels, Grad-CAM of the most probable label whose map is not empty and the top
//! labels' bars.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::form::probability_row;
use super::png;
use crate::web::templates::{encode_query, ProbabilityRow, ValidationItem, ValidationPage};
use crate::web::{AppError, AppState};

/// Labels listed per validation image.
const TOP_LABELS: usize = 3;

pub(super) async fn validation_page(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<ValidationPage, AppError> {
    let (run, set) = state.predict.validation_set(&id).await?;
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
            gradcam_label: item.gradcam.label.clone(),
            gradcam_empty: item.gradcam.empty,
            gradcam_note: item.gradcam.note.clone().unwrap_or_default(),
            top: item
                .ranked
                .iter()
                .take(TOP_LABELS)
                .map(|(label, p, t)| {
                    let shown = *label == item.gradcam.label;
                    ProbabilityRow {
                        gradcam_empty: (shown && item.gradcam.empty) || item.gradcam.skipped.contains(label),
                        ..probability_row(
                            label,
                            *p,
                            *t,
                            format!("/predict/{}?run={run_q}&label={}", item.sha, encode_query(label)),
                            shown,
                        )
                    }
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

/// `image.png`, `gradcam.png` (the default label's) or `top.svg` (top-3 bars) of validation
/// image `n`.
pub(super) async fn validation_file(
    State(state): State<Arc<AppState>>,
    Path((id, n, file)): Path<(String, String, String)>,
) -> Result<Response, AppError> {
    let missing = || AppError::NotFound(format!("no validation image '{n}/{file}' for run '{id}'"));
    let index: usize = n.parse().map_err(|_| missing())?;
    if !matches!(file.as_str(), "image.png" | "gradcam.png" | "top.svg") {
        return Err(missing());
    }
    let (_, set) = state.predict.validation_set(&id).await?;
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
