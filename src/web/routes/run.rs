//! One run: `/runs/{id}` (header, charts, epoch table, per-label metrics and confusion grids for a
//! chosen epoch, event log) and its charts `/runs/{id}/charts/{name}.svg`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::Value;

use super::runs::progress_pct;
use super::{
    accuracy_chart, chart_file, chart_response, curve_charts, interval_text, ChartDisplay, ChartQuery, RUN_CHARTS,
};
use crate::store::{EpochRow, EventRow, Run, RunStatus, StepPoint};
use crate::web::axes;
use crate::web::charts::{BarGroup, Figure, LabelPanel, LineChart, MatrixView, Series};
use crate::web::metrics::{self, LabelMetrics};
use crate::web::templates::{
    encode_query, Cell, ChartLink, ConfusionSection, EventLine, RunPage, RunSummary, TableRow, TestSection,
};
use crate::web::{AppError, AppState};

/// The event log shows the newest events; older ones stay in the store and the API.
const EVENT_LOG_LINES: usize = 200;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/runs/{id}", get(run_page))
        .route("/runs/{id}/charts/{file}", get(run_chart))
}

#[derive(Debug, Default, Deserialize)]
struct RunQuery {
    epoch: Option<String>,
    label: Option<String>,
    /// The label whose ROC and PR curves the test section shows.
    curve: Option<String>,
    /// The confusion matrix's cells: `counts` or `recall` (row-normalised).
    view: Option<String>,
    #[serde(flatten)]
    chart: ChartQuery,
}

impl RunQuery {
    fn view(&self) -> Result<MatrixView, AppError> {
        super::matrix_view(self.view.as_deref())
    }

    fn epoch(&self) -> Result<Option<u32>, AppError> {
        match self.epoch.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|_| AppError::BadRequest(format!("epoch must be a whole number, not '{text}'"))),
        }
    }
}

pub(super) fn load_run(state: &AppState, id: &str) -> Result<Run, AppError> {
    state.store.run(id)?.ok_or_else(|| AppError::unknown_run(id))
}

/// A run's epochs with scalar metrics only; enough for tables, charts and choosing an epoch.
pub(super) fn scalar_epochs(state: &AppState, id: &str) -> Result<Arc<Vec<EpochRow>>, AppError> {
    Ok(state.epoch_cache.scalar_epochs(&state.store, id)?)
}

/// The full row (per-label metrics included) of the epoch chosen among `epochs`.
pub(super) fn full_epoch(state: &AppState, id: &str, chosen: Option<&EpochRow>) -> Result<Option<EpochRow>, AppError> {
    match chosen {
        Some(e) => Ok(state.store.epoch_row(id, e.epoch)?),
        None => Ok(None),
    }
}

async fn run_page(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<RunQuery>,
) -> Result<RunPage, AppError> {
    let display = query.chart.display()?;
    let wanted_epoch = query.epoch()?;
    let run = load_run(&state, &id)?;
    let epochs = scalar_epochs(&state, &id)?;
    let (events, events_total) = state.store.recent_events(&id, EVENT_LOG_LINES)?;
    let now = crate::store::now();
    let best = metrics::best_epoch(&run, &epochs).map(|e| e.epoch);
    let chosen_row = full_epoch(&state, &id, metrics::chosen_epoch(&run, &epochs, wanted_epoch))?;
    let chosen = chosen_row.as_ref();
    let base = format!("/runs/{}/charts", encode_query(&run.id));
    let suffix = display.query_suffix();

    let mut charts: Vec<ChartLink> = RUN_CHARTS
        .iter()
        .map(|(name, title, _, _)| ChartLink {
            title: if *name == "accuracy" {
                accuracy_chart(&epochs).0.to_string()
            } else {
                title.to_string()
            },
            // The learning rate usually spans decades: log scale unless asked otherwise.
            src: if *name == "lr" && !display.log {
                format!("{base}/{name}.svg?log=1{}", display.x_suffix())
            } else {
                format!("{base}/{name}.svg?{}", suffix.trim_start_matches('&'))
            },
            wide: false,
        })
        .collect();
    let labels = chosen.map(|e| metrics::per_label(&e.metrics)).unwrap_or_default();
    if let (Some(e), false) = (chosen, labels.is_empty()) {
        charts.push(ChartLink {
            title: format!("AUROC per label, epoch {}", e.epoch),
            src: format!("{base}/per_label_auroc.svg?epoch={}", e.epoch),
            wide: true,
        });
    }

    let keys = metrics::table_keys(&epochs);
    let epoch_rows = epochs
        .iter()
        .map(|e| TableRow {
            key: e.epoch.to_string(),
            cells: keys
                .iter()
                .map(|k| Cell::plain(metrics::format_value(metrics::number(&e.metrics, k))))
                .collect(),
            highlight: Some(e.epoch) == best,
        })
        .collect();
    let confusion = match chosen {
        Some(e) => confusion_section(&run.id, e, &labels, &query)?,
        None => None,
    };
    let events_hidden = events_total.saturating_sub(events.len());
    let event_lines = events.iter().rev().map(event_line).collect();

    Ok(RunPage {
        run: summary(&run, best, &now),
        charts,
        smooth: display.smooth_text(),
        log: display.log,
        x_axis: axes::name(display.x),
        epoch_columns: keys.iter().map(|k| super::metric_title(k)).collect(),
        epoch_keys: keys.join(","),
        epoch_rows,
        chosen_epoch: chosen.map(|e| e.epoch),
        epoch_options: epochs.iter().map(|e| e.epoch).collect(),
        labels: labels.iter().map(label_row).collect(),
        confusion,
        events: event_lines,
        events_hidden,
        last_seq: events.last().map(|e| e.seq).unwrap_or(0),
        config_json: serde_json::to_string_pretty(&run.config).unwrap_or_default(),
        prediction_slots: if state.predict.has_best_checkpoint(&run) {
            (0..crate::service::predict::VALIDATION_IMAGES).collect()
        } else {
            Vec::new()
        },
        test: run
            .test
            .as_ref()
            .map(|report| test_section(report, &run.id, query.curve.as_deref())),
        can_score_test: run.test.is_none()
            && !matches!(run.status, RunStatus::Queued | RunStatus::Running)
            && state.predict.has_best_checkpoint(&run),
        estimate: super::new_run::estimate::stored_estimate_line(state.store.run_estimate(&id)?.as_ref()).0,
    })
}

/// The chosen epoch's confusion figure with its view switch (single-label) or its one-label 2×2
/// at 0.5 (multi-label); `None` when the epoch has no counts.
fn confusion_section(
    run_id: &str,
    epoch: &EpochRow,
    labels: &[LabelMetrics],
    query: &RunQuery,
) -> Result<Option<ConfusionSection>, AppError> {
    let view = query.view()?;
    let Some(figure) = confusion_figure(epoch, view, "") else {
        return Ok(None);
    };
    let base = format!("/runs/{}", encode_query(run_id));
    let chart = |title: &str, extra: String| ChartLink {
        title: title.to_string(),
        src: format!("{base}/charts/confusion.svg?epoch={}{extra}", epoch.epoch),
        wide: true,
    };
    Ok(Some(match figure {
        Figure::Confusion { .. } => {
            let other = match view.other() {
                MatrixView::Recall => "row-normalised (recall)",
                MatrixView::Counts => "counts",
            };
            ConfusionSection {
                heading: format!(
                    "Confusion matrix (rows: actual class, columns: predicted class = highest output), epoch {}",
                    epoch.epoch
                ),
                chart: chart("Confusion matrix", format!("&view={}", view.name())),
                other_view: Some((
                    format!("show {other}"),
                    format!("{base}?epoch={}&view={}#confusion", epoch.epoch, view.other().name()),
                )),
                labels: Vec::new(),
                label: String::new(),
                label_chart: None,
            }
        }
        _ => {
            let names: Vec<String> = labels
                .iter()
                .filter(|l| l.confusion().is_some())
                .map(|l| l.label.clone())
                .collect();
            let label = query
                .label
                .clone()
                .filter(|l| names.contains(l))
                .or_else(|| names.first().cloned())
                .unwrap_or_default();
            let label_chart = (!label.is_empty()).then(|| ChartLink {
                title: format!("{label} at 0.5"),
                src: format!(
                    "{base}/charts/confusion.svg?epoch={}&label={}",
                    epoch.epoch,
                    encode_query(&label)
                ),
                wide: false,
            });
            ConfusionSection {
                heading: format!(
                    "Every label's confusion at its validation-tuned threshold (max F1), epoch {}",
                    epoch.epoch
                ),
                chart: chart("Every label's confusion", String::new()),
                other_view: None,
                labels: names,
                label,
                label_chart,
            }
        }
    }))
}

/// The stored test report as the page shows it. Reads the JSON (the web layer knows no engine
/// types); a missing number shows as "n/a".
fn test_section(report: &Value, run_id: &str, curve: Option<&str>) -> TestSection {
    let number = |v: &Value| v.as_f64().map_or("n/a".to_string(), |x| format!("{x:.4}"));
    let images = report["images"].as_u64().unwrap_or(0);
    if let Some(note) = report["note"].as_str() {
        return TestSection {
            headline: note.to_string(),
            accuracies: String::new(),
            rows: Vec::new(),
            method: String::new(),
            curve_labels: Vec::new(),
            curve_label: String::new(),
            curves: Vec::new(),
        };
    }
    let headline = format!(
        "Mean AUROC {} (95 % CI {}), mAP {} on {images} test images, best epoch {}",
        number(&report["mean_auroc"]),
        interval_text(&report["mean_auroc_ci"]),
        number(&report["map"]),
        report["epoch"].as_u64().map_or("?".to_string(), |e| e.to_string()),
    );
    let percent = |v: &Value| v.as_f64().map(|x| format!("{:.1} %", 100.0 * x));
    let accuracies = match (
        percent(&report["accuracy"]),
        percent(&report["balanced_accuracy"]),
        percent(&report["exact_match"]),
    ) {
        (Some(top1), Some(balanced), _) => {
            format!("Balanced accuracy (mean per-class recall) {balanced}; top-1 accuracy {top1}.")
        }
        (_, _, Some(exact)) => format!("Exact-match accuracy (every label right at its threshold) {exact}."),
        _ => String::new(),
    };
    let shots: Vec<String> = report["shot_groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|g| g["classes"].as_array().is_some_and(|c| !c.is_empty()))
        .map(|g| {
            format!(
                "{}-shot ({} classes) {}",
                g["group"].as_str().unwrap_or("?"),
                g["classes"].as_array().map_or(0, Vec::len),
                percent(&g["accuracy"]).unwrap_or_else(|| "n/a".into())
            )
        })
        .collect();
    let accuracies = if shots.is_empty() {
        accuracies
    } else {
        format!(
            "{accuracies} Long tail (per-class accuracy; many-shot: over {} training images, few-shot: under {}): {}.",
            crate::train::heldout::MANY_SHOT_ABOVE,
            crate::train::heldout::FEW_SHOT_BELOW,
            shots.join(", ")
        )
    };
    let rows = report["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(label, m)| TableRow {
            key: label.clone(),
            cells: [
                number(&m["auroc"]),
                interval_text(&m["auroc_ci"]),
                number(&m["ap"]),
                number(&m["f1"]),
                number(&m["sensitivity"]),
                number(&m["specificity"]),
                number(&m["threshold"]),
                m["support"].as_u64().unwrap_or(0).to_string(),
            ]
            .into_iter()
            .map(Cell::plain)
            .collect(),
            highlight: false,
        })
        .collect();
    let bootstrap = &report["bootstrap"];
    let method = format!(
        "Thresholds were tuned (max F1) on the validation split and applied unchanged. Intervals: \
         {}-resample percentile bootstrap over {} {}s (seed {}).",
        bootstrap["resamples"].as_u64().unwrap_or(0),
        bootstrap["units"].as_u64().unwrap_or(0),
        bootstrap["unit"].as_str().unwrap_or("image"),
        bootstrap["seed"].as_u64().unwrap_or(0),
    );
    // Curves of one label at a time: the one asked for, else the first that has any.
    let curve_labels: Vec<String> = report["curves"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.keys().cloned())
        .collect();
    let (curve_label, curves) = curve_charts(&curve_labels, curve, ["ROC", "Precision-recall"], |kind, label| {
        format!("/runs/{run_id}/charts/{kind}.svg?label={label}")
    });
    TestSection {
        headline,
        accuracies,
        rows,
        method,
        curve_labels,
        curve_label,
        curves,
    }
}

fn summary(run: &Run, best: Option<u32>, now: &str) -> RunSummary {
    let best = match (best, &run.best_metric_name, run.best_metric) {
        (Some(epoch), Some(name), Some(value)) if run.best_epoch == Some(epoch) => {
            format!(
                "{} {} at epoch {epoch}",
                name.replace('_', " "),
                metrics::format_value(Some(value))
            )
        }
        (Some(epoch), _, _) => format!("epoch {epoch}"),
        _ => String::new(),
    };
    RunSummary {
        id: run.id.clone(),
        name: run.name.clone(),
        status: run.status.as_str(),
        finished: run.status.is_finished(),
        progress_pct: progress_pct(run),
        model: run.model.clone(),
        dataset: run.dataset.clone(),
        demo: run.dataset == "demo",
        image_size: run.image_size,
        epochs_done: run.epochs_done,
        epochs_planned: run.epochs_planned,
        best,
        created_at: run.created_at.clone(),
        duration: metrics::duration_seconds(run, now)
            .map(metrics::format_duration)
            .unwrap_or_default(),
        device: run.device.clone().unwrap_or_default(),
        tags: run.tags.clone(),
        notes: run.notes.clone(),
        error: run.error.clone().unwrap_or_default(),
    }
}

fn label_row(l: &LabelMetrics) -> TableRow {
    let count = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_else(|| "–".into());
    TableRow {
        key: l.label.clone(),
        cells: vec![
            Cell::plain(metrics::format_value(l.auroc)),
            Cell::plain(metrics::format_value(l.ap)),
            Cell::plain(metrics::format_value(l.f1)),
            Cell::plain(count(l.tp)),
            Cell::plain(count(l.fp)),
            Cell::plain(count(l.fn_)),
            Cell::plain(count(l.tn)),
            Cell::plain(count(l.support)),
        ],
        highlight: false,
    }
}

/// One line of the event log: the payload's message if it has one, else its JSON.
fn event_line(e: &EventRow) -> EventLine {
    let summary = match e.payload.get("message").and_then(|m| m.as_str()) {
        Some(message) => message.to_string(),
        None => {
            let mut text = e.payload.to_string();
            if text.len() > 240 {
                let cut = (0..=240).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
                text.truncate(cut);
                text.push('…');
            }
            text
        }
    };
    EventLine {
        seq: e.seq,
        at: e.at.clone(),
        kind: e.kind.clone(),
        summary,
    }
}

async fn run_chart(
    State(state): State<Arc<AppState>>,
    Path((id, file)): Path<(String, String)>,
    Query(query): Query<RunQuery>,
) -> Result<Response, AppError> {
    let (name, format) = chart_file(&file)?;
    let display = query.chart.display()?;
    let run = load_run(&state, &id)?;
    let epochs = scalar_epochs(&state, &id)?;
    let figure = match name {
        "per_label_auroc" => {
            let chosen = full_epoch(&state, &id, metrics::chosen_epoch(&run, &epochs, query.epoch()?))?;
            let chosen = chosen.as_ref();
            let labels = chosen.map(|e| metrics::per_label(&e.metrics)).unwrap_or_default();
            let title = match chosen {
                Some(e) => format!("AUROC per label (epoch {})", e.epoch),
                None => "AUROC per label".into(),
            };
            Figure::Bars {
                title,
                categories: labels.iter().map(|l| l.label.clone()).collect(),
                groups: vec![BarGroup {
                    name: run.name.clone(),
                    values: labels.iter().map(|l| l.auroc).collect(),
                }],
                range: (0.0, 1.0),
            }
        }
        "confusion" => {
            let chosen = full_epoch(&state, &id, metrics::chosen_epoch(&run, &epochs, query.epoch()?))?
                .ok_or_else(|| AppError::NotFound(format!("run '{id}' has no epochs yet")))?;
            match query.label.as_deref() {
                Some(wanted) => label_confusion(&chosen, wanted)?,
                None => confusion_figure(&chosen, query.view()?, "")
                    .ok_or_else(|| AppError::NotFound(format!("no confusion counts at epoch {}", chosen.epoch)))?,
            }
        }
        "roc" | "pr" => {
            let wanted = query
                .label
                .as_deref()
                .ok_or_else(|| AppError::BadRequest(format!("the {name} chart needs ?label=NAME")))?;
            let report = run
                .test
                .as_ref()
                .ok_or_else(|| AppError::NotFound(format!("run '{id}' has no test results yet")))?;
            let series: Vec<Series> = [("val_curves", "validation"), ("curves", "test")]
                .into_iter()
                .filter_map(|(key, split)| curve_series(&report[key][wanted], name, split))
                .collect();
            if series.is_empty() {
                return Err(AppError::NotFound(format!(
                    "no {name} curve for '{wanted}' (unknown label, or only one class in both splits)"
                )));
            }
            super::curve_chart(name, "", wanted, " (best epoch)", series)
        }
        _ => {
            let points = if display.wants_steps() {
                state.store.step_points(&id)?
            } else {
                Vec::new()
            };
            line_figure(&id, name, &epochs, &points, &display)?
        }
    };
    chart_response(&figure, name, format, &display)
}

/// One of the run page's line charts, or any scalar metric by its key, on the x-axis asked for
/// (`points`: the run's step points, read only for the step and time axes).
fn line_figure(
    id: &str,
    name: &str,
    epochs: &[EpochRow],
    points: &[StepPoint],
    display: &ChartDisplay,
) -> Result<Figure, AppError> {
    let (title, y_label, keys): (String, String, Vec<(String, String)>) =
        match RUN_CHARTS.iter().find(|(n, ..)| *n == name) {
            Some(("accuracy", _, y, _)) => {
                let (title, keys) = accuracy_chart(epochs);
                (
                    title.to_string(),
                    y.to_string(),
                    keys.iter().map(|(k, l)| (k.to_string(), l.to_string())).collect(),
                )
            }
            Some((_, title, y, keys)) => (
                title.to_string(),
                y.to_string(),
                keys.iter().map(|(k, l)| (k.to_string(), l.to_string())).collect(),
            ),
            None if metrics::scalar_keys(epochs).iter().any(|k| k == name) => (
                super::metric_title(name),
                name.to_string(),
                vec![(name.into(), name.into())],
            ),
            None => return Err(AppError::NotFound(format!("no chart '{name}' for run '{id}'"))),
        };
    let mut series = axes::run_series(epochs, points, &keys, display.x);
    let mut chart = LineChart::new(title);
    chart.y_label = y_label;
    if keys.iter().all(|(key, _)| super::value_bounds(key).is_some()) {
        chart.y_within = Some((0.0, 1.0));
    }
    display.apply(&mut chart);
    axes::fit_x(display.x, &mut chart, &mut series);
    Ok(Figure::Line { chart, series })
}

/// One label's 2×2 at 0.5 at the chosen epoch.
fn label_confusion(chosen: &EpochRow, wanted: &str) -> Result<Figure, AppError> {
    let label = metrics::per_label(&chosen.metrics)
        .into_iter()
        .find(|l| l.label == wanted)
        .ok_or_else(|| AppError::NotFound(format!("no label '{wanted}' at epoch {}", chosen.epoch)))?;
    let counts = label
        .confusion()
        .ok_or_else(|| AppError::NotFound(format!("no confusion counts for '{wanted}' at epoch {}", chosen.epoch)))?;
    Ok(Figure::Confusion {
        title: format!("{wanted} at 0.5 (epoch {})", chosen.epoch),
        classes: vec!["negative".into(), "positive".into()],
        counts,
        view: MatrixView::Counts,
    })
}

/// The whole task's confusion figure at an epoch: a single-label run's N×N matrix, or a
/// multi-label run's grid of every label's 2×2 at its validation-tuned threshold (at 0.5 for runs
/// recorded before tuned counts were kept). `None` when the epoch has neither. `who` names the
/// run in the title (the compare page shows several).
pub(super) fn confusion_figure(epoch: &EpochRow, view: MatrixView, who: &str) -> Option<Figure> {
    let labels = metrics::per_label(&epoch.metrics);
    if let Some(counts) = metrics::class_confusion(&epoch.metrics) {
        let classes: Vec<String> = labels.iter().map(|l| l.label.clone()).collect();
        if classes.len() != counts.len() || counts.iter().any(|row| row.len() != classes.len()) {
            return None;
        }
        let what = match view {
            MatrixView::Counts => "Confusion matrix",
            MatrixView::Recall => "Confusion matrix, row-normalised",
        };
        return Some(Figure::Confusion {
            title: format!("{who}{what} (validation, epoch {})", epoch.epoch),
            classes,
            counts,
            view,
        });
    }
    let panels: Vec<LabelPanel> = labels
        .iter()
        .filter_map(|l| {
            let (counts, threshold) = match (l.tuned, l.threshold) {
                (Some(tuned), Some(threshold)) => (tuned, Some(threshold as f32)),
                _ => {
                    let c = l.confusion()?;
                    ([[c[0][0], c[0][1]], [c[1][0], c[1][1]]], None)
                }
            };
            Some(LabelPanel {
                label: l.label.clone(),
                counts,
                threshold,
            })
        })
        .collect();
    (!panels.is_empty()).then(|| Figure::LabelGrid {
        title: format!("{who}Every label's confusion (validation, epoch {})", epoch.epoch),
        panels,
    })
}

/// One split's ROC (`roc`) or precision-recall (`pr`) curve of a stored report as a chart series,
/// its area in the legend; `None` when the report has no such curve.
pub(super) fn curve_series(curve: &Value, kind: &str, name: &str) -> Option<Series> {
    let points: Vec<(f64, f64)> = curve
        .get(kind)?
        .as_array()?
        .iter()
        .filter_map(|p| Some((p.get(0)?.as_f64()?, p.get(1)?.as_f64()?)))
        .collect();
    let (area, value) = match kind {
        "roc" => ("AUROC", &curve["auroc"]),
        _ => ("AP", &curve["ap"]),
    };
    let legend = match value.as_f64() {
        Some(v) => format!("{name} ({area} {v:.3})"),
        None => name.to_string(),
    };
    (!points.is_empty()).then(|| Series::new(legend, points))
}
