//! Comparing runs: `/compare?runs=a,b` (overlaid curves, hyperparameters, best metrics, per-label
//! AUROC) and its charts `/compare/charts/{name}.svg?runs=a,b`. The runs list's checkboxes submit
//! `run=a&run=b`, which is accepted too.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::Value;

use super::run::{confusion_figure, curve_series, full_epoch, load_run, scalar_epochs};
use super::{
    chart_file, chart_response, curve_charts, interval_text, metric_key, metric_title, ChartDisplay, ChartQuery,
};
use crate::store::{EpochRow, Run, RunStatus};
use crate::web::axes;
use crate::web::charts::{self, palette_hex, BarGroup, Figure, LineChart, MatrixView, Series};
use crate::web::metrics;
use crate::web::templates::{encode_query, Cell, ChartLink, ComparePage, CompareRun, TableRow};
use crate::web::{AppError, AppState};

/// More lines than this are unreadable on one chart (and the palette repeats). Shared with the
/// compare page's event stream, which follows the same runs.
pub const MAX_COMPARED: usize = 10;

/// Overlaid charts on the compare page, by metric key.
/// Accuracies are the named ones a run leads with (balanced for single-label runs, exact-match
/// for multi-label ones); each chart is shown when a chosen run has data for it.
const COMPARE_CHARTS: [&str; 6] = [
    "val_loss",
    "train_loss",
    "val_mean_auroc",
    "val_balanced_accuracy",
    "val_subset_accuracy",
    "lr",
];

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/compare", get(compare_page))
        .route("/compare/charts/{file}", get(compare_chart))
        .route("/compare/export.csv", get(export_csv))
}

/// The raw query as pairs, since `run` may repeat.
pub(crate) type Pairs = Vec<(String, String)>;

fn value<'a>(pairs: &'a Pairs, key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn chart_query(pairs: &Pairs) -> ChartQuery {
    ChartQuery {
        smooth: value(pairs, "smooth").map(String::from),
        log: value(pairs, "log").map(String::from),
        x: value(pairs, "x").map(String::from),
        scale: value(pairs, "scale").map(String::from),
    }
}

/// The runs to compare, in the order given, without duplicates.
pub(crate) fn run_ids(pairs: &Pairs) -> Result<Vec<String>, AppError> {
    let mut ids: Vec<String> = Vec::new();
    for (key, value) in pairs {
        if key == "runs" || key == "run" {
            for id in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                if !ids.iter().any(|i| i == id) {
                    ids.push(id.to_string());
                }
            }
        }
    }
    if ids.is_empty() {
        return Err(AppError::BadRequest(
            "choose runs to compare: /compare?runs=ID1,ID2 (or tick them on the runs list)".into(),
        ));
    }
    if ids.len() > MAX_COMPARED {
        return Err(AppError::BadRequest(format!(
            "{} runs chosen; compare at most {MAX_COMPARED} at a time",
            ids.len()
        )));
    }
    Ok(ids)
}

/// Each run with its scalar epoch rows (per-label rows are read only for the best epochs).
type Loaded = Vec<(Run, Arc<Vec<EpochRow>>)>;

fn load(state: &AppState, ids: &[String]) -> Result<Loaded, AppError> {
    ids.iter()
        .map(|id| {
            let run = load_run(state, id)?;
            let epochs = scalar_epochs(state, id)?;
            Ok((run, epochs))
        })
        .collect()
}

/// Each run's best epoch with all its metrics (`None` where a run has no epoch yet).
fn best_epochs(state: &AppState, runs: &Loaded) -> Result<Vec<Option<EpochRow>>, AppError> {
    runs.iter()
        .map(|(run, epochs)| full_epoch(state, &run.id, metrics::best_epoch(run, epochs)))
        .collect()
}

/// Per-label validation metrics of each run's best epoch (empty where a run has none).
fn per_label_of(best: &[Option<EpochRow>]) -> Vec<Vec<metrics::LabelMetrics>> {
    best.iter()
        .map(|e| e.as_ref().map(|e| metrics::per_label(&e.metrics)).unwrap_or_default())
        .collect()
}

/// Each run's confusion figure at its best epoch, side by side (a run without counts is left
/// out): the run page's chart for that epoch, in the view asked for.
fn matrix_links(runs: &Loaded, names: &[String], best: &[Option<EpochRow>], view: MatrixView) -> Vec<ChartLink> {
    runs.iter()
        .zip(names)
        .zip(best)
        .filter_map(|(((run, _), name), best)| {
            let epoch = best.as_ref()?;
            confusion_figure(epoch, view, "")?;
            Some(ChartLink {
                title: format!("{name} (epoch {})", epoch.epoch),
                src: format!(
                    "/runs/{}/charts/confusion.svg?epoch={}&view={}",
                    encode_query(&run.id),
                    epoch.epoch,
                    view.name()
                ),
                wide: false,
            })
        })
        .collect()
}

/// Legend names: run names, with the id added where two runs share a name.
fn display_names(runs: &Loaded) -> Vec<String> {
    runs.iter()
        .map(|(run, _)| {
            if runs.iter().filter(|(r, _)| r.name == run.name).count() > 1 {
                format!("{} ({})", run.name, run.id)
            } else {
                run.name.clone()
            }
        })
        .collect()
}

async fn compare_page(State(state): State<Arc<AppState>>, Query(pairs): Query<Pairs>) -> Result<ComparePage, AppError> {
    let ids = run_ids(&pairs)?;
    let display = chart_query(&pairs).display()?;
    let only_differences = matches!(value(&pairs, "diff"), Some("1" | "on" | "true"));
    // Read before the runs: the live stream starts here, so nothing after this drawing is missed.
    let last_seq = state.store.last_event_seq()?;
    let runs = load(&state, &ids)?;
    let names = display_names(&runs);
    let runs_param = ids.iter().map(|id| encode_query(id)).collect::<Vec<_>>().join(",");
    let suffix = display.query_suffix();

    let mut charts = metric_charts(&runs, &display, &runs_param);
    let (params, params_hidden) = param_rows(&runs, only_differences);
    let best_rows = best_rows(&runs);
    let test_rows = test_rows(&runs);
    let reports: Vec<Option<&Value>> = runs.iter().map(|(run, _)| run.test.as_ref()).collect();
    let curve_labels = report_keys(&reports, "curves");
    let (curve_label, test_curves) = curve_charts(
        &curve_labels,
        value(&pairs, "curve"),
        ["Test ROC", "Test precision-recall"],
        |kind, label| format!("/compare/charts/{kind}.svg?runs={runs_param}&label={label}"),
    );
    let best = best_epochs(&state, &runs)?;
    let label_rows = label_rows(&per_label_of(&best));
    let view = super::matrix_view(value(&pairs, "view"))?;
    let matrices = matrix_links(&runs, &names, &best, view);
    let other_view = match view.other() {
        MatrixView::Recall => "show row-normalised (recall)",
        MatrixView::Counts => "show counts",
    };
    if !label_rows.is_empty() {
        charts.push(ChartLink {
            title: "AUROC per label (best epoch of each run)".into(),
            src: format!("/compare/charts/per_label_auroc.svg?runs={runs_param}"),
            wide: true,
        });
    }

    let toggle_href = format!(
        "/compare?runs={runs_param}{suffix}{}",
        if only_differences { "" } else { "&diff=1" }
    );
    let live = runs
        .iter()
        .any(|(run, _)| matches!(run.status, RunStatus::Queued | RunStatus::Running));
    let other_view = (
        other_view.to_string(),
        format!(
            "/compare?runs={runs_param}{suffix}&view={}#matrices",
            view.other().name()
        ),
    );
    let export_href = format!("/compare/export.csv?runs={runs_param}{}", display.x_suffix());
    Ok(ComparePage {
        live,
        last_seq,
        runs: runs
            .iter()
            .zip(names)
            .enumerate()
            .map(|(i, ((run, _), name))| CompareRun {
                id: run.id.clone(),
                name,
                color: palette_hex(i),
                status: run.status.as_str(),
                demo: run.dataset == "demo",
            })
            .collect(),
        charts,
        smooth: display.smooth_text(),
        log: display.log,
        x_axis: axes::name(display.x),
        runs_param,
        params,
        params_hidden,
        only_differences,
        toggle_href,
        best_rows,
        test_rows,
        curve_labels,
        curve_label,
        test_curves,
        label_rows,
        matrices,
        other_view,
        export_href,
    })
}

/// The line charts that at least one of the runs has data for.
fn metric_charts(runs: &Loaded, display: &ChartDisplay, runs_param: &str) -> Vec<ChartLink> {
    let suffix = display.query_suffix();
    COMPARE_CHARTS
        .iter()
        .filter(|key| runs.iter().any(|(_, epochs)| !metrics::series(epochs, key).is_empty()))
        .map(|key| ChartLink {
            title: metric_title(key),
            src: if *key == "lr" && !display.log {
                format!(
                    "/compare/charts/{key}.svg?runs={runs_param}&log=1{}",
                    display.x_suffix()
                )
            } else {
                format!("/compare/charts/{key}.svg?runs={runs_param}{suffix}")
            },
            wide: false,
        })
        .collect()
}

/// Hyperparameters: the union of the runs' flattened config keys, differing values highlighted;
/// with `only_differences`, equal rows are left out and counted.
fn param_rows(runs: &Loaded, only_differences: bool) -> (Vec<TableRow>, usize) {
    let configs: Vec<Vec<(String, String)>> = runs.iter().map(|(r, _)| metrics::flatten_config(&r.config)).collect();
    let keys: BTreeSet<&String> = configs.iter().flatten().map(|(k, _)| k).collect();
    let mut params = Vec::new();
    let mut params_hidden = 0;
    for key in keys {
        let values: Vec<String> = configs
            .iter()
            .map(|c| {
                c.iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| "–".into())
            })
            .collect();
        let differs = values.iter().any(|v| *v != values[0]);
        if only_differences && !differs {
            params_hidden += 1;
            continue;
        }
        params.push(TableRow {
            key: key.clone(),
            cells: values.into_iter().map(Cell::plain).collect(),
            highlight: differs,
        });
    }
    (params, params_hidden)
}

/// Best value of each metric per run, the best run of each row marked.
fn best_rows(runs: &Loaded) -> Vec<TableRow> {
    let auroc = ("best validation mean AUROC", "val_mean_auroc", true);
    let balanced = ("best validation balanced accuracy", "val_balanced_accuracy", true);
    // The headline leads: balanced accuracy when every chosen run is single-label.
    let has = |key: &str| runs.iter().any(|(_, epochs)| !metrics::series(epochs, key).is_empty());
    let all_single_label = runs
        .iter()
        .all(|(_, epochs)| !metrics::series(epochs, "val_balanced_accuracy").is_empty());
    let (first, second) = if all_single_label {
        (balanced, auroc)
    } else {
        (auroc, balanced)
    };
    let best_specs: [(&str, &str, bool); 7] = [
        first,
        second,
        ("best validation top-1 accuracy", "val_top1_accuracy", true),
        ("best validation exact-match accuracy", "val_subset_accuracy", true),
        ("lowest validation loss", "val_loss", false),
        ("lowest training loss", "train_loss", false),
        ("seconds per epoch (mean)", "seconds", false),
    ];
    best_specs
        .iter()
        // An accuracy no chosen run has (top-1 of multi-label runs, ...) is no row; the others
        // show "–" for a run without them.
        .filter(|(_, key, _)| !key.contains("accuracy") || has(key))
        // Top-1 is for single-label runs (multi-label runs have it too, as "a positive label
        // ranked first", which is not what a reader expects under that name).
        .filter(|(_, key, _)| *key != "val_top1_accuracy" || has("val_balanced_accuracy"))
        .map(|&(title, key, higher_is_better)| {
            let values: Vec<Option<f64>> = runs
                .iter()
                .map(|(_, epochs)| {
                    let points = metrics::series(epochs, key);
                    let finite = points.iter().map(|p| p.1).filter(|v| v.is_finite());
                    if key == "seconds" {
                        let (sum, n) = finite.fold((0.0, 0), |(s, n), v| (s + v, n + 1));
                        (n > 0).then(|| sum / n as f64)
                    } else if higher_is_better {
                        finite.reduce(f64::max)
                    } else {
                        finite.reduce(f64::min)
                    }
                })
                .collect();
            marked_row(title, &values, higher_is_better)
        })
        .collect()
}

/// The held-out test results side by side: mean AUROC (best marked) with its interval, mAP, then
/// each label's test AUROC; empty when no chosen run has been scored.
fn test_rows(runs: &Loaded) -> Vec<TableRow> {
    let reports: Vec<Option<&Value>> = runs.iter().map(|(run, _)| run.test.as_ref()).collect();
    if reports.iter().all(Option::is_none) {
        return Vec::new();
    }
    let number = |report: Option<&Value>, path: &[&str]| {
        let mut value = report?;
        for key in path {
            value = value.get(*key)?;
        }
        value.as_f64()
    };
    let values = |path: &[&str]| reports.iter().map(|r| number(*r, path)).collect::<Vec<_>>();
    let plain = |title: &str, cells: Vec<String>| TableRow {
        key: title.to_string(),
        cells: cells.into_iter().map(Cell::plain).collect(),
        highlight: false,
    };
    let mut rows = vec![
        plain(
            "test images",
            reports
                .iter()
                .map(|r| {
                    r.and_then(|r| r["images"].as_u64())
                        .map_or("–".into(), |n| n.to_string())
                })
                .collect(),
        ),
        marked_row("test mean AUROC", &values(&["mean_auroc"]), true),
        plain(
            "test mean AUROC, 95 % CI",
            reports
                .iter()
                .map(|r| r.map_or("n/a".into(), |r| interval_text(&r["mean_auroc_ci"])))
                .collect(),
        ),
        marked_row("test mAP", &values(&["map"]), true),
    ];
    for label in report_keys(&reports, "labels") {
        rows.push(marked_row(
            &format!("test AUROC: {label}"),
            &values(&["labels", &label, "auroc"]),
            true,
        ));
    }
    rows
}

/// The keys of one object of the runs' test reports (labels), each once, in first-seen order.
fn report_keys(reports: &[Option<&Value>], field: &str) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for report in reports.iter().flatten() {
        for key in report[field].as_object().into_iter().flat_map(|m| m.keys()) {
            if !keys.contains(key) {
                keys.push(key.clone());
            }
        }
    }
    keys
}

/// Per-label AUROC at each run's best epoch, one row per label any run has, best marked.
fn label_rows(per_label: &[Vec<metrics::LabelMetrics>]) -> Vec<TableRow> {
    let mut label_names: Vec<String> = Vec::new();
    for l in per_label.iter().flatten() {
        if !label_names.contains(&l.label) {
            label_names.push(l.label.clone());
        }
    }
    label_names
        .iter()
        .map(|label| {
            let values: Vec<Option<f64>> = per_label
                .iter()
                .map(|rows| rows.iter().find(|l| &l.label == label).and_then(|l| l.auroc))
                .collect();
            marked_row(label, &values, true)
        })
        .collect()
}

/// A row of values with the best one(s) marked (ties all marked; none when fewer than two values).
fn marked_row(title: &str, values: &[Option<f64>], higher_is_better: bool) -> TableRow {
    let present: Vec<f64> = values.iter().flatten().copied().filter(|v| v.is_finite()).collect();
    let best = if present.len() < 2 {
        None
    } else if higher_is_better {
        present.iter().copied().reduce(f64::max)
    } else {
        present.iter().copied().reduce(f64::min)
    };
    TableRow {
        key: title.to_string(),
        cells: values
            .iter()
            .map(|v| Cell {
                text: metrics::format_value(*v),
                best: best.is_some() && *v == best,
            })
            .collect(),
        highlight: false,
    }
}

async fn compare_chart(
    State(state): State<Arc<AppState>>,
    Path(file): Path<String>,
    Query(pairs): Query<Pairs>,
) -> Result<Response, AppError> {
    let (name, format) = chart_file(&file)?;
    let ids = run_ids(&pairs)?;
    let display = chart_query(&pairs).display()?;
    let runs = load(&state, &ids)?;
    let names = display_names(&runs);
    let figure = match name {
        "per_label_auroc" => {
            let per_label = per_label_of(&best_epochs(&state, &runs)?);
            let mut categories: Vec<String> = Vec::new();
            for l in per_label.iter().flatten() {
                if !categories.contains(&l.label) {
                    categories.push(l.label.clone());
                }
            }
            let groups: Vec<BarGroup> = per_label
                .iter()
                .zip(&names)
                .map(|(rows, name)| BarGroup {
                    name: name.clone(),
                    values: categories
                        .iter()
                        .map(|c| rows.iter().find(|l| &l.label == c).and_then(|l| l.auroc))
                        .collect(),
                })
                .collect();
            Figure::Bars {
                title: "AUROC per label (best epoch of each run)".into(),
                categories,
                groups,
                range: (0.0, 1.0),
            }
        }
        "roc" | "pr" => {
            let label = value(&pairs, "label")
                .ok_or_else(|| AppError::BadRequest(format!("the {name} chart needs &label=NAME")))?;
            // Every run keeps its colour (its position), with an empty line when it has no curve.
            let series: Vec<Series> = runs
                .iter()
                .zip(&names)
                .map(|((run, _), run_name)| {
                    run.test
                        .as_ref()
                        .and_then(|report| curve_series(&report["curves"][label], name, run_name))
                        .unwrap_or_else(|| Series::new(run_name.clone(), Vec::new()))
                })
                .collect();
            if series.iter().all(|s| s.points.is_empty()) {
                return Err(AppError::NotFound(format!(
                    "no test {name} curve for '{label}' in these runs"
                )));
            }
            super::curve_chart(name, "Test ", label, "", series)
        }
        _ => {
            let key = metric_key(name);
            let known = runs
                .iter()
                .any(|(_, epochs)| metrics::scalar_keys(epochs).iter().any(|k| k == key));
            if !known && !COMPARE_CHARTS.contains(&key) {
                return Err(AppError::NotFound(format!("no metric '{name}' in these runs")));
            }
            let mut series = overlaid_series(&state, &runs, &names, key, &display)?;
            let mut chart = LineChart::new(metric_title(key));
            // The title names the split; the axis the quantity ("exact-match accuracy", not a key).
            let title = metric_title(key);
            chart.y_label = ["Validation ", "Training "]
                .iter()
                .find_map(|split| title.strip_prefix(split))
                .unwrap_or(&title)
                .to_string();
            chart.y_within = super::value_bounds(key);
            display.apply(&mut chart);
            axes::fit_x(display.x, &mut chart, &mut series);
            Figure::Line { chart, series }
        }
    };
    chart_response(&figure, name, format, &display)
}

/// One series per run for a metric key on the chosen x-axis, each run from its own step 0 / time
/// 0. Every run keeps its colour (its position) even when it has no points for this metric.
fn overlaid_series(
    state: &AppState,
    runs: &Loaded,
    names: &[String],
    key: &str,
    display: &ChartDisplay,
) -> Result<Vec<Series>, AppError> {
    runs.iter()
        .zip(names)
        .map(|((run, epochs), name)| {
            let points = if display.wants_steps() && axes::step_counterpart(key).is_some() {
                state.store.step_points(&run.id)?
            } else {
                Vec::new()
            };
            Ok(Series::new(
                name.clone(),
                axes::compare_points(epochs, &points, key, display.x),
            ))
        })
        .collect()
}

/// `GET /compare/export.csv?runs=…[&x=epoch|step|time]`: every series the compare page overlays
/// (each chart's metric for each run, on the chosen x-axis) in long form, for plotting elsewhere.
async fn export_csv(State(state): State<Arc<AppState>>, Query(pairs): Query<Pairs>) -> Result<Response, AppError> {
    let ids = run_ids(&pairs)?;
    let display = chart_query(&pairs).display()?;
    let runs = load(&state, &ids)?;
    let names = display_names(&runs);
    let mut csv = format!("run_id,run,metric,{},value\n", axes::name(display.x));
    for key in COMPARE_CHARTS {
        let series = overlaid_series(&state, &runs, &names, key, &display)?;
        for (((run, _), name), series) in runs.iter().zip(&names).zip(series) {
            for (x, value) in series.points {
                csv.push_str(&format!(
                    "{},{},{key},{x},{value}\n",
                    charts::csv_cell(&run.id),
                    charts::csv_cell(name)
                ));
            }
        }
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"compare.csv\""),
        ],
        csv,
    )
        .into_response())
}
