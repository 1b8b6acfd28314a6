//! Askama page types: plain, pre-formatted view data, so the templates only lay out and escape.
//! Rendering goes through `askama_web::WebTemplate`, which turns a render failure into a 500.

use askama::Template;
use askama_web::WebTemplate;

/// A chart image on a page.
pub struct ChartLink {
    pub title: String,
    pub src: String,
    /// Wide charts take a full row (bar charts with many labels).
    pub wide: bool,
}

/// A sortable column header.
pub struct Column {
    pub label: &'static str,
    pub href: String,
    /// `▲`, `▼` or empty.
    pub arrow: &'static str,
}

pub struct RunRow {
    pub id: String,
    pub name: String,
    pub status: &'static str,
    pub progress_pct: u32,
    pub show_progress: bool,
    pub model: String,
    pub dataset: String,
    pub demo: bool,
    pub image_size: u32,
    pub epochs: String,
    pub best_auroc: String,
    pub best_accuracy: String,
    pub duration: String,
    /// `2026-11-29 03:45` (UTC).
    pub created: String,
    pub tags: Vec<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "runs.html")]
pub struct RunsPage {
    pub rows: Vec<RunRow>,
    pub total: usize,
    pub columns: Vec<Column>,
    pub q: String,
    pub status: String,
    pub dataset: String,
    pub statuses: Vec<&'static str>,
    pub datasets: Vec<String>,
    pub sort: String,
    pub dir: String,
    pub queue: Vec<String>,
}

/// A run's header facts.
pub struct RunSummary {
    pub id: String,
    pub name: String,
    pub status: &'static str,
    pub finished: bool,
    pub progress_pct: u32,
    pub model: String,
    pub dataset: String,
    pub demo: bool,
    pub image_size: u32,
    pub epochs_done: u32,
    pub epochs_planned: u32,
    pub best: String,
    pub created_at: String,
    pub duration: String,
    pub device: String,
    pub tags: Vec<String>,
    pub notes: String,
    pub error: String,
}

pub struct TableRow {
    pub key: String,
    pub cells: Vec<Cell>,
    pub highlight: bool,
}

pub struct Cell {
    pub text: String,
    pub best: bool,
}

impl Cell {
    pub fn plain(text: impl Into<String>) -> Cell {
        Cell {
            text: text.into(),
            best: false,
        }
    }
}

pub struct EventLine {
    pub seq: i64,
    pub at: String,
    pub kind: String,
    pub summary: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "run.html")]
pub struct RunPage {
    pub run: RunSummary,
    pub charts: Vec<ChartLink>,
    pub smooth: String,
    pub log: bool,
    pub epoch_columns: Vec<String>,
    /// Metric keys in column order, for the live script to fill new rows.
    pub epoch_keys: String,
    pub epoch_rows: Vec<TableRow>,
    pub chosen_epoch: Option<u32>,
    pub epoch_options: Vec<u32>,
    pub labels: Vec<TableRow>,
    pub confusion: Vec<ChartLink>,
    pub events: Vec<EventLine>,
    pub events_hidden: usize,
    /// The newest event shown, so the live stream starts after it.
    pub last_seq: i64,
    pub config_json: String,
}

pub struct CompareRun {
    pub id: String,
    pub name: String,
    pub color: String,
    pub status: &'static str,
    pub demo: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "compare.html")]
pub struct ComparePage {
    pub runs: Vec<CompareRun>,
    pub charts: Vec<ChartLink>,
    pub smooth: String,
    pub log: bool,
    pub runs_param: String,
    pub params: Vec<TableRow>,
    pub params_hidden: usize,
    pub only_differences: bool,
    pub toggle_href: String,
    pub best_rows: Vec<TableRow>,
    pub label_rows: Vec<TableRow>,
}

/// A data set in the `/datasets` list.
pub struct DatasetListRow {
    pub name: String,
    pub demo: bool,
    /// Label rows, images found, patients, labels: formatted, `–` when unknown.
    pub images: String,
    pub found: String,
    pub patients: String,
    pub labels: String,
    /// `building`, `ready`, `failed`, `none`, or empty when not applicable.
    pub cache: &'static str,
    pub cache_size: String,
    pub note: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "datasets.html")]
pub struct DatasetsPage {
    pub rows: Vec<DatasetListRow>,
}

/// One label's counts on a data set page.
pub struct LabelCountRow {
    pub label: String,
    pub images: String,
    pub percent: String,
    pub patients: String,
    /// The thumbnail browser filtered to this label.
    pub href: String,
}

/// One image in the thumbnail browser.
pub struct Thumb {
    pub image: String,
    pub src: String,
    pub labels: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "dataset.html")]
pub struct DatasetPage {
    pub name: String,
    pub demo: bool,
    pub label_file: String,
    pub image_dir: String,
    pub created: String,
    /// Set when the files cannot be read any more; the page then shows only the stored facts.
    pub files_error: String,
    pub facts: Vec<(String, String)>,
    pub missing_examples: String,
    pub cache_state: &'static str,
    pub cache_done: usize,
    pub cache_total: usize,
    pub cache_text: String,
    pub cache_error: String,
    pub show_cache: bool,
    pub label_rows: Vec<LabelCountRow>,
    pub charts: Vec<ChartLink>,
    pub label_filter: String,
    pub label_options: Vec<String>,
    pub thumbs: Vec<Thumb>,
    pub thumbs_total: usize,
    pub page: usize,
    pub pages: usize,
    pub prev_href: String,
    pub next_href: String,
}

/// The add-a-data-set form: the values as typed and a message per field.
#[derive(Template, WebTemplate, Default)]
#[template(path = "dataset_new.html")]
pub struct DatasetNewPage {
    pub name: String,
    pub label_file: String,
    pub image_dir: String,
    pub allow_missing: bool,
    pub image_size: String,
    pub name_error: String,
    pub label_file_error: String,
    pub image_dir_error: String,
    pub allow_missing_error: String,
    pub image_size_error: String,
    pub general_error: String,
}

/// Percent-encodes a value for a URL query (everything but RFC 3986 unreserved characters).
pub fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode_query("No Finding&x=1"), "No%20Finding%26x%3D1");
        assert_eq!(encode_query("20261129-0345-ab_c"), "20261129-0345-ab_c");
    }
}
