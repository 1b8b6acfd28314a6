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

impl ChartLink {
    /// The same chart as a PNG (same query, so the same data; see `charts::Figure::digest`).
    pub fn png(&self) -> String {
        self.with_extension("png")
    }

    /// The data behind the chart as CSV.
    pub fn csv(&self) -> String {
        self.with_extension("csv")
    }

    fn with_extension(&self, extension: &str) -> String {
        let (path, query) = self
            .src
            .split_once('?')
            .map_or((self.src.as_str(), None), |(p, q)| (p, Some(q)));
        let path = path.strip_suffix(".svg").unwrap_or(path);
        match query {
            Some(query) => format!("{path}.{extension}?{query}"),
            None => format!("{path}.{extension}"),
        }
    }
}

/// The run page's confusion figure for the chosen epoch.
pub struct ConfusionSection {
    /// What the figure shows and how to read it.
    pub heading: String,
    pub chart: ChartLink,
    /// Single-label runs: the other view (counts ↔ row-normalised) as (link text, page address).
    pub other_view: Option<(String, String)>,
    /// Multi-label runs: labels to show one 2×2 at 0.5 for, the chosen one and its chart.
    pub labels: Vec<String>,
    pub label: String,
    pub label_chart: Option<ChartLink>,
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
    pub best_balanced: String,
    /// Whether balanced accuracy (not mean AUROC) is this run's headline.
    pub single_label: bool,
    /// A validated multi-label run: no balanced accuracy, and it says why.
    pub multi_label: bool,
    pub test_auroc: String,
    pub duration: String,
    /// `2026-11-29 03:45` (UTC).
    pub created: String,
    pub tags: Vec<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "runs.html")]
pub struct RunsPage {
    /// This page's rows of the runs that match the filters.
    pub rows: Vec<RunRow>,
    /// Runs that match the filters, on all pages.
    pub matching: usize,
    /// Set when the matching runs take more than one page.
    pub pager: Option<Pager>,
    pub total: usize,
    pub columns: Vec<Column>,
    pub q: String,
    pub status: String,
    pub dataset: String,
    pub statuses: Vec<&'static str>,
    pub datasets: Vec<String>,
    pub sort: String,
    pub dir: String,
    pub queue: Vec<QueueItem>,
}

/// Which rows of the runs list a page shows, with links to its neighbours (empty at the ends).
pub struct Pager {
    /// 1-based positions of the first and last row shown.
    pub first: usize,
    pub last: usize,
    pub prev_href: String,
    pub next_href: String,
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
    /// The line charts' x-axis (`epoch`, `step` or `time`).
    pub x_axis: &'static str,
    pub epoch_columns: Vec<String>,
    /// Metric keys in column order, for the live script to fill new rows.
    pub epoch_keys: String,
    pub epoch_rows: Vec<TableRow>,
    pub chosen_epoch: Option<u32>,
    pub epoch_options: Vec<u32>,
    pub labels: Vec<TableRow>,
    pub confusion: Option<ConfusionSection>,
    pub events: Vec<EventLine>,
    pub events_hidden: usize,
    /// The newest event shown, so the live stream starts after it.
    pub last_seq: i64,
    pub config_json: String,
    /// Validation images to show predictions for (0..n); empty when the run has no best checkpoint.
    pub prediction_slots: Vec<usize>,
    /// Held-out test results, once scored.
    pub test: Option<TestSection>,
    /// Unscored, not queued or running, with a best checkpoint: the page offers to score it.
    pub can_score_test: bool,
    /// The duration estimated when the run was submitted ("estimated 4m 00s before start (…)"),
    /// shown against the live ETA and the real duration; empty when it was submitted without one.
    pub estimate: String,
}

/// The run page's "Test (held-out)" section, from the stored report.
pub struct TestSection {
    /// Mean AUROC with its interval, mAP, images; or why there are no numbers.
    pub headline: String,
    /// Single-label runs: accuracy and balanced accuracy; multi-label: exact match.
    pub accuracies: String,
    /// label, AUROC, 95 % CI, AP, F1, sensitivity, specificity, threshold, support.
    pub rows: Vec<TableRow>,
    /// How the numbers were made (thresholds from validation, bootstrap unit and resamples).
    pub method: String,
    /// Labels with test curves, the one shown, and its ROC and PR charts (validation and test).
    pub curve_labels: Vec<String>,
    pub curve_label: String,
    pub curves: Vec<ChartLink>,
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
    /// A run is queued or running: the page follows `/compare/events` (static/compare.js).
    pub live: bool,
    /// Where that stream starts (`?after=`): the newest event when the page was drawn.
    pub last_seq: i64,
    pub runs: Vec<CompareRun>,
    pub charts: Vec<ChartLink>,
    pub smooth: String,
    pub log: bool,
    /// The line charts' x-axis (`epoch`, `step` or `time`).
    pub x_axis: &'static str,
    pub runs_param: String,
    pub params: Vec<TableRow>,
    pub params_hidden: usize,
    pub only_differences: bool,
    pub toggle_href: String,
    pub best_rows: Vec<TableRow>,
    /// Held-out test results side by side (empty when no chosen run was scored).
    pub test_rows: Vec<TableRow>,
    /// Labels with test curves in any chosen run, the one shown, and its overlaid ROC / PR charts.
    pub curve_labels: Vec<String>,
    pub curve_label: String,
    pub test_curves: Vec<ChartLink>,
    pub label_rows: Vec<TableRow>,
    /// Each run's confusion figure at its best epoch, side by side.
    pub matrices: Vec<ChartLink>,
    /// The other view of the matrices: (link text, page address).
    pub other_view: (String, String),
    /// The overlaid series as one CSV.
    pub export_href: String,
}

/// A run offered on the Predict page (one with a best checkpoint).
pub struct PredictRunOption {
    pub id: String,
    /// `name · model · best AUROC 0.7400`.
    pub text: String,
    pub selected: bool,
}

/// One label's probability with the run's tuned threshold, drawn as a bar with a tick.
pub struct ProbabilityRow {
    pub label: String,
    pub probability: String,
    pub threshold: String,
    /// The probability reaches the threshold.
    pub positive: bool,
    /// Bar length and threshold position in percent of the bar's box.
    pub bar_width: String,
    pub threshold_x: String,
    /// The result page with this label's Grad-CAM.
    pub gradcam_href: String,
    /// This label's Grad-CAM is the one shown.
    pub chosen: bool,
    /// This label's Grad-CAM is known to be empty (no region raises its score).
    pub gradcam_empty: bool,
}

pub struct PredictResult {
    pub sha: String,
    pub run_id: String,
    pub run_name: String,
    pub model: String,
    /// `1024 × 1024`.
    pub image_size: String,
    /// Side of the model's input.
    pub model_size: u32,
    pub positives: usize,
    pub rows: Vec<ProbabilityRow>,
    pub gradcam_label: String,
    pub gradcam_src: String,
    /// The shown map is empty: the overlay is the image alone, hatched.
    pub gradcam_empty: bool,
    /// Why this map is shown or what it lacks, in words; empty when there is nothing to say.
    pub gradcam_note: String,
    /// The map's raw peak before scaling, e.g. `3.14e-3`.
    pub gradcam_peak: String,
    pub image_src: String,
    /// The upload was not square: the overlay shows the centred square the model saw.
    pub cropped: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "predict.html")]
pub struct PredictPage {
    pub runs: Vec<PredictRunOption>,
    pub label: String,
    pub error: String,
    pub result: Option<PredictResult>,
}

/// One of a run's validation images with its top predictions.
pub struct ValidationItem {
    pub n: usize,
    /// The image's file name in the data set.
    pub name: String,
    /// Its true labels, comma-separated ("no finding" when none).
    pub truth: String,
    pub image_src: String,
    pub gradcam_src: String,
    /// The label whose Grad-CAM is shown: the most probable one whose map is not empty.
    pub gradcam_label: String,
    pub gradcam_empty: bool,
    /// Labels passed over or an empty map, in words; empty when there is nothing to say.
    pub gradcam_note: String,
    pub top: Vec<ProbabilityRow>,
    /// The Predict page for this image, to see other labels' Grad-CAM.
    pub details_href: String,
}

/// `/runs/{id}/predictions`: predictions on a few of the run's validation images.
#[derive(Template, WebTemplate)]
#[template(path = "predictions.html")]
pub struct ValidationPage {
    pub run_id: String,
    pub run_name: String,
    /// Why there are no items, when there are none.
    pub note: String,
    pub items: Vec<ValidationItem>,
}

/// One preset button at the top of the new-run form.
pub struct PresetLink {
    pub name: &'static str,
    pub label: &'static str,
    pub about: &'static str,
    pub active: bool,
}

/// One `<option>` of a select.
pub struct FormOption {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

/// One input of the new-run form, ready to lay out.
pub struct FormField {
    /// The input's `name`: the JSON field name (`augment.rotate_deg` for nested ones).
    pub name: String,
    pub label: &'static str,
    pub help: String,
    /// `whole`, `number`, `text`, `checkbox` or `select`.
    pub kind: &'static str,
    /// The text shown in a text input (the user's own input after a rejected submit).
    pub value: String,
    pub checked: bool,
    pub options: Vec<FormOption>,
    /// Shown for an optional field left empty.
    pub placeholder: String,
    /// Every message about this field, joined; empty when it is fine.
    pub error: String,
}

pub struct FormGroup {
    pub title: &'static str,
    pub fields: Vec<FormField>,
}

#[derive(Template, WebTemplate)]
#[template(path = "new_run.html")]
pub struct NewRunPage {
    pub heading: String,
    /// Where the values came from (a preset, a cloned run), or empty for the defaults.
    pub source: String,
    pub presets: Vec<PresetLink>,
    pub groups: Vec<FormGroup>,
    /// Every problem of a rejected submit, `field: message`, for the summary at the top.
    pub errors: Vec<String>,
    /// The run's estimated duration and what it includes (empty until known; the page's script
    /// fills them in as fields change).
    pub estimate_headline: String,
    pub estimate_note: String,
    /// Why "Start anyway" must be ticked: set when a run estimated above an hour was submitted
    /// without it.
    pub confirm_long: Option<String>,
}

/// A run waiting or training, as the runs page lists the queue.
pub struct QueueItem {
    pub id: String,
    pub name: String,
    pub status: &'static str,
}

/// "Delete run X and its checkpoints?" with a confirm button.
#[derive(Template, WebTemplate)]
#[template(path = "confirm_delete.html")]
pub struct ConfirmDeletePage {
    pub id: String,
    pub name: String,
    pub status: &'static str,
    /// The checkpoint folders that will be removed with it.
    pub folders: Vec<String>,
    /// Folders recorded with the run that will be left in place, and why.
    pub kept: Vec<String>,
}

/// A plain page with a title, a message and a way back (errors of the HTML forms, outcomes).
#[derive(Template, WebTemplate)]
#[template(path = "message.html")]
pub struct MessagePage {
    pub title: String,
    pub lines: Vec<String>,
    pub back_href: String,
    pub back_label: String,
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
    /// The split files and what they hold, for a data set whose split is given as files.
    pub split_rows: Vec<(String, String)>,
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
    pub val_label_file: String,
    pub test_label_file: String,
    pub image_dir: String,
    pub allow_missing: bool,
    pub image_size: String,
    pub name_error: String,
    pub label_file_error: String,
    pub val_label_file_error: String,
    pub test_label_file_error: String,
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
    fn a_chart_link_gives_the_png_and_csv_of_the_same_query() {
        let link = ChartLink {
            title: "Loss".into(),
            src: "/runs/a/charts/loss.svg?smooth=0.6&log=1".into(),
            wide: false,
        };
        assert_eq!(link.png(), "/runs/a/charts/loss.png?smooth=0.6&log=1");
        assert_eq!(link.csv(), "/runs/a/charts/loss.csv?smooth=0.6&log=1");
        let bare = ChartLink {
            src: "/runs/a/charts/lr.svg".into(),
            ..link
        };
        assert_eq!(bare.png(), "/runs/a/charts/lr.png");
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode_query("No Finding&x=1"), "No%20Finding%26x%3D1");
        assert_eq!(encode_query("20261129-0345-ab_c"), "20261129-0345-ab_c");
    }
}
