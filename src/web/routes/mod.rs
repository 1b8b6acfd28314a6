//! Routes, one file per page area; this file merges them and serves the static assets, which are
//! compiled into the binary so the dashboard works from any directory.

mod actions;
mod api;
pub(crate) mod compare;
mod datasets;
mod new_run;
pub mod predict;
mod run;
mod runs;

use std::sync::Arc;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::store::EpochRow;
use crate::web::axes;
use crate::web::charts::{self, Figure, Format, LineChart, MatrixView, Series, XAxis};
use crate::web::metrics;
use crate::web::templates;
use crate::web::{AppError, AppState};

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .merge(runs::router())
        .merge(run::router())
        .merge(compare::router())
        .merge(api::router())
        .merge(new_run::router())
        .merge(actions::router())
        .merge(datasets::router())
        .route("/static/style.css", get(style))
        .route("/static/live.js", get(live_script))
        .route("/static/compare.js", get(compare_script))
        .route("/static/actions.js", get(actions_script))
        .route("/static/datasets.js", get(datasets_script))
        .route("/static/axes.js", get(axes_script))
}

async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../../static/style.css"),
    )
}

async fn live_script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../../static/live.js"),
    )
}

async fn compare_script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../../static/compare.js"),
    )
}

async fn actions_script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../../static/actions.js"),
    )
}

async fn axes_script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../../static/axes.js"),
    )
}

async fn datasets_script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../../static/datasets.js"),
    )
}

/// A chart in the format its address asked for. Charts change as runs train, so browsers
/// revalidate. `X-Chart-Data` names the data drawn ([`Figure::digest`]): the SVG, PNG and CSV of
/// one chart carry the same value. A CSV downloads as `{name}.csv`.
fn chart_response(figure: &Figure, name: &str, format: Format, display: &ChartDisplay) -> Result<Response, AppError> {
    let body = figure.render(format, display.scale)?;
    let mut response = (
        [
            (header::CONTENT_TYPE, format.content_type()),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response();
    let headers = response.headers_mut();
    if let Ok(digest) = HeaderValue::from_str(&figure.digest()) {
        headers.insert("x-chart-data", digest);
    }
    if format == Format::Csv {
        let file = name.replace(|c: char| !c.is_ascii_alphanumeric() && c != '_' && c != '-', "_");
        if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{file}.csv\"")) {
            headers.insert(header::CONTENT_DISPOSITION, value);
        }
    }
    Ok(response)
}

/// A stored `[lo, hi]` interval as `lo–hi` (4 decimals); `n/a` when there is none.
fn interval_text(value: &serde_json::Value) -> String {
    let number = |v: &serde_json::Value| v.as_f64().map_or("n/a".to_string(), |x| format!("{x:.4}"));
    match value.as_array().map(Vec::as_slice) {
        Some([lo, hi]) => format!("{}–{}", number(lo), number(hi)),
        _ => "n/a".into(),
    }
}

/// The label whose test curves a page shows (`asked` when it has curves, else the first that
/// does; empty when none has) and its ROC and precision-recall charts, `src(kind, label)` giving
/// each chart's address.
fn curve_charts(
    labels: &[String],
    asked: Option<&str>,
    titles: [&str; 2],
    src: impl Fn(&str, &str) -> String,
) -> (String, Vec<templates::ChartLink>) {
    let label = asked
        .filter(|a| labels.iter().any(|l| l == a))
        .map(str::to_string)
        .or_else(|| labels.first().cloned())
        .unwrap_or_default();
    if label.is_empty() {
        return (label, Vec::new());
    }
    let charts = ["roc", "pr"]
        .into_iter()
        .zip(titles)
        .map(|(kind, title)| templates::ChartLink {
            title: format!("{title}: {label}"),
            src: src(kind, &templates::encode_query(&label)),
            wide: false,
        })
        .collect();
    (label, charts)
}

/// A ROC (`kind` "roc") or precision-recall curve chart of `label`, titled `"{prefix}{kind
/// title}: {label}{suffix}"` with the axes of its kind.
fn curve_chart(kind: &str, prefix: &str, label: &str, suffix: &str, series: Vec<Series>) -> Figure {
    // (the name leading a title, the name after a prefix, the axes)
    let (leading, inner, x, y) = match kind {
        "roc" => ("ROC", "ROC", "false-positive rate", "true-positive rate"),
        _ => ("Precision-recall", "precision-recall", "recall", "precision"),
    };
    let title = if prefix.is_empty() {
        leading.to_string()
    } else {
        format!("{prefix}{inner}")
    };
    let mut chart = LineChart::new(format!("{title}: {label}{suffix}"));
    chart.x_label = x.into();
    chart.y_label = y.into();
    Figure::Line { chart, series }
}

/// The chart name and format from a `{name}.svg` / `.png` / `.csv` path segment.
fn chart_file(file: &str) -> Result<(&str, Format), AppError> {
    Format::of_file(file).ok_or_else(|| {
        AppError::NotFound(format!(
            "no chart '{file}': chart addresses end in .svg, .png (add ?scale=1 to {}) or .csv",
            charts::MAX_PNG_SCALE
        ))
    })
}

/// `?smooth=`, `?log=`, `?x=` and `?scale=` as given on chart and page URLs (unparsed, so a bad
/// value gets our error format rather than axum's plain-text rejection).
#[derive(Debug, Default, serde::Deserialize)]
struct ChartQuery {
    smooth: Option<String>,
    log: Option<String>,
    x: Option<String>,
    scale: Option<String>,
}

/// Parsed chart display options.
#[derive(Debug, Clone, Copy)]
struct ChartDisplay {
    smooth: Option<f64>,
    log: bool,
    /// The line charts' x-axis (see [`crate::web::axes`]).
    x: XAxis,
    /// PNG pixels per SVG pixel.
    scale: u32,
}

impl ChartQuery {
    fn display(&self) -> Result<ChartDisplay, AppError> {
        let smooth = match self.smooth.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => {
                let weight: f64 = text.parse().map_err(|_| {
                    AppError::BadRequest(format!("smooth must be a number from 0 to 0.99, not '{text}'"))
                })?;
                if !(0.0..1.0).contains(&weight) {
                    return Err(AppError::BadRequest(format!(
                        "smooth must be from 0 (off) to 0.99, not {weight}"
                    )));
                }
                (weight > 0.0).then_some(weight)
            }
        };
        let log = matches!(self.log.as_deref(), Some("1" | "true" | "on"));
        let scale = match self.scale.as_deref().map(str::trim) {
            None | Some("") => charts::DEFAULT_PNG_SCALE,
            Some(text) => text
                .parse()
                .ok()
                .filter(|s| (1..=charts::MAX_PNG_SCALE).contains(s))
                .ok_or_else(|| {
                    AppError::BadRequest(format!(
                        "scale must be a whole number from 1 to {} (PNG pixels per SVG pixel), not '{text}'",
                        charts::MAX_PNG_SCALE
                    ))
                })?,
        };
        let x = axes::parse(self.x.as_deref()).map_err(AppError::BadRequest)?;
        Ok(ChartDisplay { smooth, log, x, scale })
    }
}

impl ChartDisplay {
    fn apply(&self, chart: &mut LineChart) {
        chart.smoothing = self.smooth;
        chart.log_y = self.log;
    }

    /// The query suffix that carries these options to chart URLs (`&smooth=0.6&log=1`).
    fn query_suffix(&self) -> String {
        let mut out = String::new();
        if let Some(s) = self.smooth {
            out.push_str(&format!("&smooth={s}"));
        }
        if self.log {
            out.push_str("&log=1");
        }
        out.push_str(&self.x_suffix());
        out
    }

    /// `&x=step` or `&x=time` (nothing for the default epoch axis), for chart URLs that set
    /// their own other options (the learning rate's log scale).
    fn x_suffix(&self) -> String {
        match self.x {
            XAxis::Epoch => String::new(),
            other => format!("&x={}", axes::name(other)),
        }
    }

    /// Step points are read only for the axes that show them.
    fn wants_steps(&self) -> bool {
        self.x != XAxis::Epoch
    }

    fn smooth_text(&self) -> String {
        self.smooth.map(|s| s.to_string()).unwrap_or_default()
    }
}

/// A line chart of the run page: (address name, title, y label, series as (key, legend)).
type RunChart = (
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// Line charts shown for a run and what they plot.
const RUN_CHARTS: [RunChart; 4] = [
    (
        "loss",
        "Loss",
        "loss",
        &[("train_loss", "train"), ("val_loss", "validation")],
    ),
    // Its title and series depend on the run's task: see `accuracy_chart`.
    ("accuracy", "Accuracy", "accuracy", &[]),
    (
        "auroc",
        "Mean AUROC (validation)",
        "AUROC",
        &[("val_mean_auroc", "validation")],
    ),
    ("lr", "Learning rate", "lr", &[("lr", "learning rate")]),
];

/// The accuracies a run's "accuracy" chart plots, each named: a single-label run's (one whose
/// epochs have a balanced accuracy) balanced and top-1 accuracy; a multi-label run's exact-match
/// accuracy, never the per-label accuracy at 0.5, which a model predicting nothing wins (~92 % on
/// NIH). Returns the chart's title and its series as (metric key, legend).
pub(super) fn accuracy_chart(epochs: &[EpochRow]) -> (&'static str, &'static [(&'static str, &'static str)]) {
    if metrics::series(epochs, "val_balanced_accuracy").is_empty() {
        (
            "Exact-match accuracy (every label right at 0.5)",
            &[
                ("train_subset_accuracy", "train exact-match"),
                ("val_subset_accuracy", "validation exact-match"),
            ],
        )
    } else {
        (
            "Balanced and top-1 accuracy",
            &[
                ("train_balanced_accuracy", "train balanced"),
                ("val_balanced_accuracy", "validation balanced"),
                ("val_top1_accuracy", "validation top-1"),
            ],
        )
    }
}

/// `?view=` of a confusion matrix (counts when absent), as the run and compare pages take it.
fn matrix_view(text: Option<&str>) -> Result<MatrixView, AppError> {
    match text.map(str::trim) {
        None | Some("") => Ok(MatrixView::Counts),
        Some(text) => MatrixView::parse(text).ok_or_else(|| {
            AppError::BadRequest(format!(
                "view must be 'counts' or 'recall' (row-normalised), not '{text}'"
            ))
        }),
    }
}

/// The range a metric's values can take: 0–1 for accuracies, AUROC, AP/mAP and F1 (so their
/// charts keep to it), unbounded for losses, learning rates and times.
fn value_bounds(key: &str) -> Option<(f64, f64)> {
    let bounded = ["accuracy", "auroc", "map", "f1"]
        .iter()
        .any(|word| key.split('_').any(|part| part == *word))
        || key.ends_with("_ap");
    bounded.then_some((0.0, 1.0))
}

/// Short chart names for the compare page, which plots one metric key per chart.
fn metric_key(name: &str) -> &str {
    match name {
        "loss" => "val_loss",
        "accuracy" => "val_balanced_accuracy",
        "auroc" => "val_mean_auroc",
        other => other,
    }
}

fn metric_title(key: &str) -> String {
    match key {
        "train_loss" => "Training loss".into(),
        "val_loss" => "Validation loss".into(),
        "train_accuracy" => "Training accuracy (top-1 or per-label)".into(),
        "val_accuracy" => "Validation accuracy (top-1 or per-label)".into(),
        "val_balanced_accuracy" => "Validation balanced accuracy".into(),
        "train_balanced_accuracy" => "Training balanced accuracy".into(),
        "val_top1_accuracy" => "Validation top-1 accuracy".into(),
        "val_subset_accuracy" => "Validation exact-match accuracy".into(),
        "train_subset_accuracy" => "Training exact-match accuracy".into(),
        "val_accuracy_per_label" => "Validation per-label accuracy (at 0.5)".into(),
        "val_mean_auroc" => "Validation mean AUROC".into(),
        "lr" => "Learning rate".into(),
        "seconds" => "Seconds per epoch".into(),
        "step" => "Step at epoch end".into(),
        "wall_seconds" => "Training time at epoch end (s)".into(),
        other => {
            // `val_mean_auroc` → "Validation mean AUROC": split / metric in words.
            let (split, metric) = match other.split_once('_') {
                Some(("val", rest)) => ("Validation ", rest),
                Some(("train", rest)) => ("Training ", rest),
                _ => ("", other),
            };
            let words = metric
                .split('_')
                .map(|w| match w {
                    "auroc" => "AUROC".to_string(),
                    "map" => "mAP".to_string(),
                    "ap" => "AP".to_string(),
                    "f1" => "F1".to_string(),
                    "top1" => "top-1".to_string(),
                    "subset" => "exact-match".to_string(),
                    "tuned" => "(tuned thresholds)".to_string(),
                    w => w.to_string(),
                })
                .collect::<Vec<_>>()
                .join(" ");
            format!("{split}{words}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::value_bounds;

    #[test]
    fn scores_are_bounded_and_losses_are_not() {
        for key in [
            "val_balanced_accuracy",
            "val_mean_auroc",
            "val_map",
            "train_ap",
            "val_macro_f1_tuned",
        ] {
            assert_eq!(value_bounds(key), Some((0.0, 1.0)), "{key}");
        }
        for key in ["val_loss", "lr", "seconds", "train_non_finite_outputs"] {
            assert_eq!(value_bounds(key), None, "{key}");
        }
    }
}
