//! The runs list (`/`): one row per run, filtered and sorted by query parameters, with checkboxes
//! that submit to the compare page.

use std::cmp::Ordering;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use crate::store::{Run, RunStatus};
use crate::web::metrics::{self, RANKING_KEY};
use crate::web::templates::{encode_query, Column, Pager, QueueItem, RunRow, RunsPage};
use crate::web::{AppError, AppState};

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/", get(runs_page))
}

#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    /// Case-insensitive text found in the name, model, data set, id or a tag.
    q: Option<String>,
    status: Option<String>,
    dataset: Option<String>,
    sort: Option<String>,
    dir: Option<String>,
    /// 1-based page of [`PAGE_ROWS`] rows.
    page: Option<String>,
}

/// Rows per page: thousands of rows make a page of megabytes that no one scrolls through;
/// filters and sorting still apply to every run.
const PAGE_ROWS: usize = 200;

const STATUSES: [&str; 6] = ["queued", "running", "done", "failed", "cancelled", "interrupted"];

/// Sortable columns: (query key, header).
const COLUMNS: [(&str, &str); 11] = [
    ("name", "Name"),
    ("status", "Status"),
    ("model", "Model"),
    ("dataset", "Data set"),
    ("size", "Image"),
    ("epochs", "Epochs"),
    ("auroc", "Val mean AUROC (best)"),
    ("test_auroc", "Test mean AUROC"),
    ("balanced", "Val balanced accuracy (best)"),
    ("duration", "Duration"),
    ("created", "Created"),
];

/// A run with the numbers the table shows and sorts by.
pub(super) struct Summary<'a> {
    pub run: &'a Run,
    pub best_auroc: Option<f64>,
    /// Single-label runs only: their headline (a multi-label run's is mean AUROC).
    pub best_balanced: Option<f64>,
    pub test_auroc: Option<f64>,
    pub duration: Option<f64>,
}

/// The table's numbers come from the best epoch, which the store keeps on the run
/// (`best_val_mean_auroc`, `best_val_balanced_accuracy`). A run without a recorded best epoch (one that
/// never validated, or stored by an old cxr8 without it) has its epochs read to find one.
pub(super) fn summarise<'a>(state: &AppState, run: &'a Run, now: &str) -> Result<Summary<'a>, AppError> {
    let (auroc, best_balanced) = if run.best_epoch.is_none() && run.epochs_done > 0 {
        // Straight from the store: the list would churn the page cache of epoch rows.
        let epochs = state.store.scalar_epochs(&run.id)?;
        let best = metrics::best_epoch(run, &epochs);
        (
            best.and_then(|e| metrics::number(&e.metrics, RANKING_KEY)),
            best.and_then(|e| metrics::number(&e.metrics, "val_balanced_accuracy")),
        )
    } else {
        (run.best_val_mean_auroc, run.best_val_balanced_accuracy)
    };
    let best_auroc = auroc.or(run
        .best_metric
        .filter(|_| run.best_metric_name.as_deref() == Some(RANKING_KEY)));
    let duration = metrics::duration_seconds(run, now);
    Ok(Summary {
        run,
        best_auroc,
        best_balanced,
        test_auroc: run.test_mean_auroc,
        duration,
    })
}

/// Percent of planned epochs done.
pub(super) fn progress_pct(run: &Run) -> u32 {
    if run.status == RunStatus::Done {
        return 100;
    }
    (run.epochs_done * 100)
        .checked_div(run.epochs_planned)
        .unwrap_or(0)
        .min(100)
}

async fn runs_page(State(state): State<Arc<AppState>>, Query(query): Query<ListQuery>) -> Result<RunsPage, AppError> {
    let now = crate::store::now();
    let view = query.view()?;
    // The list never shows configs: they are not even read.
    let all = state.store.runs_for_list()?;
    let total = all.len();
    let queue = queue_items(&state, all.as_slice());
    // Distinct names before any copying: thousands of runs share a handful of data sets.
    let datasets: Vec<String> = all
        .iter()
        .map(|r| r.dataset.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(str::to_string)
        .collect();

    let mut summaries = Vec::with_capacity(all.len());
    for run in all.iter().filter(|run| view.shows(run)) {
        summaries.push(summarise(&state, run, &now)?);
    }
    sort_summaries(&mut summaries, &view.sort, view.descending);

    let filter_query = format!(
        "q={}&status={}&dataset={}",
        encode_query(&view.q),
        encode_query(&view.status),
        encode_query(&view.dataset)
    );
    let columns = columns(&view, &filter_query);
    let matching = summaries.len();
    let pages = matching.div_ceil(PAGE_ROWS).max(1);
    // Past the end (runs were deleted meanwhile): the last page.
    let page = view.page.min(pages);
    let first = (page - 1) * PAGE_ROWS;
    let rows: Vec<RunRow> = summaries.into_iter().skip(first).take(PAGE_ROWS).map(row).collect();
    let dir = if view.descending { "desc" } else { "asc" };
    let page_href = |p: usize| format!("/?{filter_query}&sort={}&dir={dir}&page={p}", encode_query(&view.sort));
    let pager = (pages > 1).then(|| Pager {
        first: first + 1,
        last: first + rows.len(),
        prev_href: if page > 1 { page_href(page - 1) } else { String::new() },
        next_href: if page < pages {
            page_href(page + 1)
        } else {
            String::new()
        },
    });
    Ok(RunsPage {
        rows,
        matching,
        pager,
        total,
        columns,
        statuses: STATUSES.to_vec(),
        datasets,
        dir: dir.into(),
        queue,
        q: view.q,
        status: view.status,
        dataset: view.dataset,
        sort: view.sort,
    })
}

/// The list's filters, order and page, checked.
struct ListView {
    /// Lower-case text searched in name, model, data set, id and tags.
    q: String,
    status: String,
    dataset: String,
    /// A [`COLUMNS`] key.
    sort: String,
    descending: bool,
    /// 1-based.
    page: usize,
}

impl ListQuery {
    fn view(&self) -> Result<ListView, AppError> {
        let q = self.q.clone().unwrap_or_default().trim().to_lowercase();
        let status = self.status.clone().unwrap_or_default();
        let dataset = self.dataset.clone().unwrap_or_default();
        if !status.is_empty() && !STATUSES.contains(&status.as_str()) {
            return Err(AppError::BadRequest(format!(
                "unknown status '{status}'; use one of {}",
                STATUSES.join(", ")
            )));
        }
        // `accuracy` was this column's key before it named its accuracy: old links keep working.
        let sort = match self.sort.as_deref() {
            None => "created".to_string(),
            Some("accuracy") => "balanced".to_string(),
            Some(other) => other.to_string(),
        };
        if !COLUMNS.iter().any(|(key, _)| *key == sort) {
            let keys: Vec<&str> = COLUMNS.iter().map(|(k, _)| *k).collect();
            return Err(AppError::BadRequest(format!(
                "cannot sort by '{sort}'; use one of {}",
                keys.join(", ")
            )));
        }
        let descending = match self.dir.as_deref() {
            Some("asc") => false,
            Some("desc") => true,
            None | Some("") => sort == "created",
            Some(other) => return Err(AppError::BadRequest(format!("dir must be asc or desc, not '{other}'"))),
        };
        let page = match self.page.as_deref().map(str::trim) {
            None | Some("") => 1,
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|&p| p >= 1)
                .ok_or_else(|| AppError::BadRequest(format!("page must be a whole number from 1, not '{text}'")))?,
        };

        Ok(ListView {
            q,
            status,
            dataset,
            sort,
            descending,
            page,
        })
    }
}

impl ListView {
    /// Whether `run` passes the text, status and data set filters.
    fn shows(&self, run: &Run) -> bool {
        let q = &self.q;
        let matches_text = q.is_empty()
            || [&run.name, &run.model, &run.dataset, &run.id]
                .iter()
                .any(|field| field.to_lowercase().contains(q))
            || run.tags.iter().any(|t| t.to_lowercase().contains(q));
        let matches_status = self.status.is_empty() || run.status.as_str() == self.status;
        let matches_dataset = self.dataset.is_empty() || run.dataset == self.dataset;
        matches_text && matches_status && matches_dataset
    }
}

/// The column headers, each a link that sorts by it (the active one flips the order).
fn columns(view: &ListView, filter_query: &str) -> Vec<Column> {
    let (sort, descending) = (&view.sort, view.descending);
    COLUMNS
        .iter()
        .map(|&(key, label)| {
            let active = key == sort.as_str();
            // Clicking the active column flips the order; a new column starts with its natural one.
            let next_desc = if active {
                !descending
            } else {
                matches!(key, "auroc" | "test_auroc" | "balanced" | "created")
            };
            Column {
                label,
                href: format!(
                    "/?{filter_query}&sort={key}&dir={}",
                    if next_desc { "desc" } else { "asc" }
                ),
                arrow: match (active, descending) {
                    (false, _) => "",
                    (true, true) => "▼",
                    (true, false) => "▲",
                },
            }
        })
        .collect()
}

/// The queue in training order, with names (a run deleted meanwhile shows its id).
fn queue_items(state: &AppState, runs: &[Run]) -> Vec<QueueItem> {
    state
        .jobs
        .queue()
        .into_iter()
        .map(|id| {
            let run = runs.iter().find(|r| r.id == id);
            QueueItem {
                name: run.map(|r| r.name.clone()).unwrap_or_else(|| id.clone()),
                status: run.map(|r| r.status.as_str()).unwrap_or("queued"),
                id,
            }
        })
        .collect()
}

fn sort_summaries(summaries: &mut [Summary<'_>], sort: &str, descending: bool) {
    // Missing numbers sort last whichever the direction.
    fn by_option(a: Option<f64>, b: Option<f64>, descending: bool) -> Ordering {
        match (a, b) {
            (Some(a), Some(b)) if descending => b.total_cmp(&a),
            (Some(a), Some(b)) => a.total_cmp(&b),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        }
    }
    summaries.sort_by(|a, b| {
        let (ra, rb) = (a.run, b.run);
        let ordering = match sort {
            "auroc" => return by_option(a.best_auroc, b.best_auroc, descending),
            "balanced" => return by_option(a.best_balanced, b.best_balanced, descending),
            "test_auroc" => return by_option(a.test_auroc, b.test_auroc, descending),
            "duration" => return by_option(a.duration, b.duration, descending),
            "name" => ra.name.to_lowercase().cmp(&rb.name.to_lowercase()),
            "status" => ra.status.as_str().cmp(rb.status.as_str()),
            "model" => ra.model.cmp(&rb.model),
            "dataset" => ra.dataset.cmp(&rb.dataset),
            "size" => ra.image_size.cmp(&rb.image_size),
            "epochs" => ra.epochs_done.cmp(&rb.epochs_done),
            _ => ra.created_at.cmp(&rb.created_at).then(ra.id.cmp(&rb.id)),
        };
        if descending {
            ordering.reverse()
        } else {
            ordering
        }
    });
}

fn row(summary: Summary<'_>) -> RunRow {
    let run = summary.run;
    RunRow {
        progress_pct: progress_pct(run),
        show_progress: matches!(run.status, RunStatus::Running | RunStatus::Interrupted),
        status: run.status.as_str(),
        demo: run.dataset == "demo",
        epochs: format!("{} / {}", run.epochs_done, run.epochs_planned),
        best_auroc: metrics::format_value(summary.best_auroc),
        // A balanced accuracy marks a single-label run: its headline. Otherwise mean AUROC
        // leads, and a multi-label run's accuracies (per-label accuracy rewards predicting
        // nothing: ~92 % on NIH) stay on its own page, named.
        single_label: summary.best_balanced.is_some(),
        multi_label: summary.best_balanced.is_none() && summary.best_auroc.is_some(),
        best_balanced: metrics::format_value(summary.best_balanced),
        test_auroc: metrics::format_value(summary.test_auroc),
        duration: summary.duration.map(metrics::format_duration).unwrap_or_default(),
        created: run.created_at.get(..16).unwrap_or(&run.created_at).replace('T', " "),
        id: run.id.clone(),
        name: run.name.clone(),
        model: run.model.clone(),
        dataset: run.dataset.clone(),
        image_size: run.image_size,
        tags: run.tags.clone(),
    }
}
