//! A run's predictions on a few of its own validation images (`/runs/{id}/predictions`): each
//! image with its labels, Grad-CAM of the most probable label whose map is not empty and the top
//! labels' bars.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::Response;

use super::form::probability_row;
use super::png;
use crate::web::charts::{Figure, ProbabilityBar};
use crate::web::routes::{chart_file, chart_response, ChartQuery};
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

/// `image.png`, `gradcam.png` (the default label's) or the top-3 bars (`top.svg`, `top.png`,
/// `top.csv`) of validation image `n`.
pub(super) async fn validation_file(
    State(state): State<Arc<AppState>>,
    Path((id, n, file)): Path<(String, String, String)>,
    Query(query): Query<ChartQuery>,
) -> Result<Response, AppError> {
    let missing = || AppError::NotFound(format!("no validation image '{n}/{file}' for run '{id}'"));
    let index: usize = n.parse().map_err(|_| missing())?;
    if !matches!(
        file.as_str(),
        "image.png" | "gradcam.png" | "top.svg" | "top.png" | "top.csv"
    ) {
        return Err(missing());
    }
    let display = query.display()?;
    let (_, set) = state.predict.validation_set(&id).await?;
    let item = set.items.get(index).ok_or_else(missing)?;
    match file.as_str() {
        "image.png" => Ok(png(item.image_png.clone())),
        "gradcam.png" => Ok(png(item.overlay_png.clone())),
        _ => {
            let (name, format) = chart_file(&file)?;
            chart_response(&top_bars(&item.ranked), name, format, &display)
        }
    }
}

/// The most probable labels' bars: the bar is the probability, the tick the tuned threshold.
fn top_bars(ranked: &[(String, f32, f32)]) -> Figure {
    // The model's f32 as its shortest decimal (0.9, not 0.8999999761581421) in the CSV.
    let shortest = |v: f32| v.to_string().parse().unwrap_or(v as f64);
    Figure::Probabilities {
        bars: ranked
            .iter()
            .take(TOP_LABELS)
            .map(|(label, probability, threshold)| ProbabilityBar {
                label: label.clone(),
                probability: shortest(*probability),
                threshold: shortest(*threshold),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_bars_keep_the_three_most_probable_in_order() {
        let ranked: Vec<(String, f32, f32)> = ["Effusion", "Mass", "Nodule", "Hernia"]
            .iter()
            .zip([0.9, 0.5, 0.25, 0.1])
            .map(|(l, p)| (l.to_string(), p, 0.5))
            .collect();
        let Figure::Probabilities { bars } = top_bars(&ranked) else {
            panic!("probability bars");
        };
        let labels: Vec<&str> = bars.iter().map(|b| b.label.as_str()).collect();
        assert_eq!(labels, ["Effusion", "Mass", "Nodule"]);
        assert_eq!((bars[0].probability, bars[0].threshold), (0.9, 0.5));
    }
}
