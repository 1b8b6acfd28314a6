//! What the store holds, as Rust values (runs, epochs, events, data sets), and reading them from
//! SQL rows.

use serde::{Deserialize, Serialize};

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
    /// Was running when the process stopped (crash, kill, reboot); can be resumed.
    Interrupted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Done => "done",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Interrupted => "interrupted",
        }
    }

    fn parse(s: &str) -> RunStatus {
        match s {
            "queued" => RunStatus::Queued,
            "running" => RunStatus::Running,
            "done" => RunStatus::Done,
            "cancelled" => RunStatus::Cancelled,
            "interrupted" => RunStatus::Interrupted,
            _ => RunStatus::Failed,
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(self, RunStatus::Done | RunStatus::Failed | RunStatus::Cancelled)
    }
}

/// What is known about a run when it is submitted.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    pub name: &'a str,
    pub config: &'a serde_json::Value,
    pub dataset: &'a str,
    pub model: &'a str,
    pub image_size: u32,
    pub epochs_planned: u32,
    pub tags: &'a [String],
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: String,
    pub name: String,
    pub status: RunStatus,
    pub config: serde_json::Value,
    pub dataset: String,
    pub model: String,
    pub image_size: u32,
    pub epochs_planned: u32,
    pub epochs_done: u32,
    pub best_epoch: Option<u32>,
    pub best_metric_name: Option<String>,
    pub best_metric: Option<f64>,
    /// The best epoch's validation mean AUROC and accuracy, kept on the run so that a list of
    /// thousands of runs never reads their epochs (see `SET_BEST_HEADLINES`).
    pub best_val_mean_auroc: Option<f64>,
    pub best_val_accuracy: Option<f64>,
    /// The best epoch's balanced accuracy (mean per-class recall): single-label runs only.
    pub best_val_balanced_accuracy: Option<f64>,
    /// The best checkpoint's held-out test results (`train::heldout::TestReport` as JSON), once
    /// scored; its mean AUROC is kept beside it for the list.
    pub test: Option<serde_json::Value>,
    pub test_mean_auroc: Option<f64>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub tags: Vec<String>,
    pub notes: String,
    pub error: Option<String>,
    pub checkpoint_dir: Option<String>,
    pub device: Option<String>,
}

impl Run {
    /// The one number this run leads with, as (metric key, value): validation balanced accuracy
    /// for a single-label run, validation mean AUROC for a multi-label one (its accuracies are
    /// misleading headlines: a model that predicts nothing has ~92 % per-label accuracy on NIH).
    pub fn headline(&self) -> Option<(&'static str, f64)> {
        match (self.best_val_balanced_accuracy, self.best_val_mean_auroc) {
            (Some(balanced), _) => Some(("val_balanced_accuracy", balanced)),
            (None, Some(auroc)) => Some(("val_mean_auroc", auroc)),
            (None, None) => None,
        }
    }
}

/// A registered data set: where its files are, plus whatever summary its registration computed
/// (image and patient counts, label counts), kept as JSON so it can grow without migrations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetRow {
    pub name: String,
    pub label_file: String,
    pub image_dir: String,
    pub created_at: String,
    pub summary: serde_json::Value,
    /// The data set's own validation and test label files, when its split is given as files.
    pub split_files: Option<SplitFiles>,
}

/// Validation and test label files of a data set whose split is given as three files (the
/// training file is the data set's `label_file`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitFiles {
    pub val: String,
    pub test: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRow {
    pub epoch: u32,
    pub metrics: serde_json::Value,
    pub committed_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRow {
    /// Increases across the whole store: a client resumes a stream from the last `seq` it saw.
    pub seq: i64,
    pub run_id: String,
    pub kind: String,
    pub payload: serde_json::Value,
    pub at: String,
}

pub(super) const RUN_COLUMNS: &str =
    "id, name, status, config, dataset, model, image_size, epochs_planned, epochs_done, best_epoch, \
     best_metric_name, best_metric, created_at, started_at, finished_at, tags, notes, error, checkpoint_dir, device, \
     best_val_mean_auroc, best_val_accuracy, test_report, test_mean_auroc, best_val_balanced_accuracy";

pub(super) fn run_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Run> {
    Ok(Run {
        id: r.get(0)?,
        name: r.get(1)?,
        status: RunStatus::parse(&r.get::<_, String>(2)?),
        config: parse_json(r.get::<_, String>(3)?),
        dataset: r.get(4)?,
        model: r.get(5)?,
        image_size: r.get(6)?,
        epochs_planned: r.get(7)?,
        epochs_done: r.get(8)?,
        best_epoch: r.get(9)?,
        best_metric_name: r.get(10)?,
        best_metric: r.get(11)?,
        created_at: r.get(12)?,
        started_at: r.get(13)?,
        finished_at: r.get(14)?,
        tags: serde_json::from_str(&r.get::<_, String>(15)?).unwrap_or_default(),
        notes: r.get(16)?,
        error: r.get(17)?,
        checkpoint_dir: r.get(18)?,
        device: r.get(19)?,
        best_val_mean_auroc: r.get(20)?,
        best_val_accuracy: r.get(21)?,
        test: r.get::<_, Option<String>>(22)?.map(parse_json),
        test_mean_auroc: r.get(23)?,
        best_val_balanced_accuracy: r.get(24)?,
    })
}

pub(super) fn dataset_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DatasetRow> {
    Ok(DatasetRow {
        name: r.get(0)?,
        label_file: r.get(1)?,
        image_dir: r.get(2)?,
        created_at: r.get(3)?,
        summary: parse_json(r.get::<_, String>(4)?),
        split_files: match (r.get::<_, Option<String>>(5)?, r.get::<_, Option<String>>(6)?) {
            (Some(val), Some(test)) => Some(SplitFiles { val, test }),
            _ => None,
        },
    })
}

/// Stored JSON was written by us; an unreadable value is kept visible as a string rather than
/// failing the whole page.
pub(super) fn parse_json(text: String) -> serde_json::Value {
    serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
}

/// An epoch from a `SELECT epoch, <metrics JSON>, committed_at` row.
pub(super) fn epoch_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EpochRow> {
    Ok(EpochRow {
        epoch: r.get(0)?,
        metrics: parse_json(r.get::<_, String>(1)?),
        committed_at: r.get(2)?,
    })
}
