//! Registering data sets: checking a name, a label file and an image folder, and storing them with a
//! summary, shared by the dashboard (`/datasets/new`) and `cxr8 dataset add|list|remove`. Also the
//! facts both show about a data set (its label table, images found, statistics) and where its
//! training cache lives. No HTTP here: callers turn the per-field problems into pages or messages.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::data::images::{self, ImageIndex, REPORT_EXAMPLES};
use crate::data::split::{FileSplit, SharedPatients};
use crate::data::{cache, stats, LabelFormat, LabelTable, Task};
use crate::store::{self, DatasetRow, SplitFiles, Store};
use crate::train::FieldError;

use super::Error;

/// The built-in synthetic data set's name.
pub const DEMO_DATASET: &str = "demo";

/// Longest accepted data set name (it appears in URLs, selects and run lists).
pub const MAX_NAME_LEN: usize = 80;
/// Names that would collide with the dashboard's own addresses under `/datasets/`.
const RESERVED_NAMES: [&str; 2] = [DEMO_DATASET, "new"];

/// What a user asks to register. Paths are as typed; an empty image folder means the label
/// file's folder (as training does when only labels are given).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registration {
    pub name: String,
    pub label_file: String,
    pub image_dir: String,
    /// The data set's own validation and test label files (both or neither; empty: none): its
    /// split is then these files as given, as NIH-CXR-LT ships it.
    pub val_label_file: String,
    pub test_label_file: String,
    /// Register even when some label rows have no image file (they are left out of training).
    pub allow_missing: bool,
}

/// The summary stored with a registered data set (the row's `summary` JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Rows in the label file (one per image).
    pub images: usize,
    /// Rows whose image file was found.
    pub found: usize,
    /// Rows whose image file was not found.
    pub missing: usize,
    /// Up to [`REPORT_EXAMPLES`] missing image names.
    pub missing_examples: Vec<String>,
    pub patients: usize,
    /// Label names in model-output order.
    pub labels: Vec<String>,
    /// Images per label, "No Finding" included.
    pub label_counts: BTreeMap<String, usize>,
    pub task: Task,
    pub format: LabelFormat,
    /// Whether the registration accepted missing images (training then needs `allow_missing_images`).
    pub allow_missing: bool,
    /// Images per split file and patients shared between them, when the split is given as files
    /// (the counts above are then of the three files together).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_files: Option<SplitFilesSummary>,
    /// The training cache this registration built or is building, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheRecord>,
}

/// What a split given as three files holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitFilesSummary {
    pub train: usize,
    pub val: usize,
    pub test: usize,
    /// Pairs of files that share patients (their results are then not patient-disjoint).
    pub shared_patients: Vec<SharedPatients>,
}

/// The last known state of a data set's cache build, kept in the summary so it survives restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheRecord {
    /// Image side in pixels the cache was built for.
    pub size: u32,
    /// `building`, `ready` or `failed`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Summary {
    /// Reads a stored summary; `None` for rows written by something else (shown without counts).
    pub fn from_row(row: &DatasetRow) -> Option<Summary> {
        serde_json::from_value(row.summary.clone()).ok()
    }

    /// Counts a table against the images found.
    pub fn of(table: &LabelTable, index: &ImageIndex, allow_missing: bool) -> Summary {
        let missing: Vec<&str> = table
            .records
            .iter()
            .map(|r| r.image.as_str())
            .filter(|name| index.get(name).is_none())
            .collect();
        let patients = table
            .records
            .iter()
            .map(|r| r.patient.as_str())
            .collect::<std::collections::HashSet<_>>()
            .len();
        Summary {
            images: table.len(),
            found: table.len() - missing.len(),
            missing: missing.len(),
            missing_examples: missing.iter().take(REPORT_EXAMPLES).map(|s| s.to_string()).collect(),
            patients,
            labels: table.labels.clone(),
            label_counts: table.label_counts().into_iter().collect(),
            task: table.task,
            format: table.format,
            allow_missing,
            split_files: None,
            cache: None,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a summary is plain data")
    }
}

/// A data set that passed every check: canonical paths, the parsed table and what was found.
#[derive(Debug)]
pub struct Checked {
    pub name: String,
    pub label_file: PathBuf,
    pub image_dir: PathBuf,
    /// Canonical validation and test label files, when the split is given as files.
    pub split_files: Option<(PathBuf, PathBuf)>,
    pub table: LabelTable,
    pub index: ImageIndex,
    pub summary: Summary,
}

/// Checks a registration without storing anything. Returns every problem found, one or more per
/// field (`name`, `label_file`, `val_label_file`, `test_label_file`, `image_dir`, `allow_missing`).
pub fn check(store: &Store, input: &Registration) -> Result<Checked, Vec<FieldError>> {
    let mut problems = Vec::new();
    if let Err(problem) = check_name(store, &input.name) {
        problems.push(problem);
    }
    let label_file = match label_file_path("label_file", &input.label_file) {
        Ok(path) => Some(path),
        Err(problem) => {
            problems.push(problem);
            None
        }
    };
    let table = label_file.as_ref().and_then(|path| match LabelTable::load(path) {
        Ok(table) if table.is_empty() => {
            problems.push(FieldError {
                field: "label_file".into(),
                message: format!("{}: the file has a header but no rows", path.display()),
            });
            None
        }
        Ok(table) => Some(table),
        Err(e) => {
            problems.push(FieldError {
                field: "label_file".into(),
                message: e.to_string(),
            });
            None
        }
    });
    let (table, split_files, split_counts) = match table {
        Some(table) => with_split_files(table, input, &mut problems),
        None => (None, None, None),
    };
    let image_dir = match image_dir_path(&input.image_dir, label_file.as_deref()) {
        Ok(dir) => dir,
        Err(problem) => {
            problems.push(problem);
            None
        }
    };
    let index = image_dir.as_ref().and_then(|dir| match ImageIndex::scan(dir) {
        Ok(index) => Some(index),
        Err(e) => {
            problems.push(FieldError {
                field: "image_dir".into(),
                message: e.to_string(),
            });
            None
        }
    });
    let (Some(table), Some(index), Some(label_file), Some(image_dir)) = (table, index, label_file, image_dir) else {
        return Err(problems);
    };

    let mut summary = Summary::of(&table, &index, input.allow_missing);
    summary.split_files = split_counts;
    if summary.found == 0 {
        problems.push(FieldError {
            field: "image_dir".into(),
            message: format!(
                "none of the {} images named in the label file is in {} (found {} image files there; \
                 first expected: {}): pick the folder that holds them",
                summary.images,
                image_dir.display(),
                index.len(),
                summary.missing_examples.first().map(String::as_str).unwrap_or("-")
            ),
        });
    } else if summary.missing > 0 && !input.allow_missing {
        problems.push(FieldError {
            field: "allow_missing".into(),
            message: format!(
                "{} of {} images are missing from {} (e.g. {}); training would use the {} found. \
                 Tick \"allow missing images\" (--allow-missing) to register anyway, or fix the folder",
                summary.missing,
                summary.images,
                image_dir.display(),
                summary.missing_examples.join(", "),
                summary.found
            ),
        });
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Checked {
        name: input.name.clone(),
        label_file,
        image_dir,
        split_files,
        table,
        index,
        summary,
    })
}

/// Appends the validation and test files a registration names to its training table. Returns the
/// table of all three (or the training table alone when no split file is named), their canonical
/// paths and counts; problems are added to `problems` under the field of the file they concern.
#[allow(clippy::type_complexity)]
fn with_split_files(
    mut table: LabelTable,
    input: &Registration,
    problems: &mut Vec<FieldError>,
) -> (
    Option<LabelTable>,
    Option<(PathBuf, PathBuf)>,
    Option<SplitFilesSummary>,
) {
    let (val, test) = (input.val_label_file.trim(), input.test_label_file.trim());
    if val.is_empty() && test.is_empty() {
        return (Some(table), None, None);
    }
    let mut paths = Vec::new();
    for (field, typed, other) in [("val_label_file", val, test), ("test_label_file", test, val)] {
        if typed.is_empty() {
            problems.push(FieldError::new(
                field,
                format!(
                    "a split given as files needs both the validation and the test label file \
                     (only {other} was given); leave both empty to split the training file instead"
                ),
            ));
            continue;
        }
        let appended = label_file_path(field, typed).and_then(|path| {
            let part = LabelTable::load(&path).map_err(|e| FieldError::new(field, e.to_string()))?;
            let rows = table.append(part).map_err(|e| FieldError::new(field, e.to_string()))?;
            Ok((path, rows))
        });
        match appended {
            Ok(found) => paths.push(found),
            Err(problem) => problems.push(problem),
        }
    }
    let [(val_path, val_rows), (test_path, test_rows)]: [(PathBuf, std::ops::Range<usize>); 2] = match paths.try_into()
    {
        Ok(both) => both,
        Err(_) => return (None, None, None),
    };
    let files = FileSplit {
        table,
        train: 0..val_rows.start,
        val: val_rows,
        test: test_rows,
    };
    let counts = SplitFilesSummary {
        train: files.train.len(),
        val: files.val.len(),
        test: files.test.len(),
        shared_patients: files.shared_patients(),
    };
    (Some(files.table), Some((val_path, test_path)), Some(counts))
}

/// Checks and stores a registration. Nothing is stored when any check fails.
pub fn register(store: &Store, input: &Registration) -> Result<Checked, Vec<FieldError>> {
    let checked = check(store, input)?;
    store
        .add_dataset(
            &checked.name,
            &checked.label_file.to_string_lossy(),
            &checked.image_dir.to_string_lossy(),
            checked
                .split_files
                .as_ref()
                .map(|(val, test)| SplitFiles {
                    val: val.to_string_lossy().into(),
                    test: test.to_string_lossy().into(),
                })
                .as_ref(),
            &checked.summary.to_json(),
        )
        .map_err(|e| {
            let field = if matches!(e, store::Error::DatasetExists(_)) {
                "name"
            } else {
                ""
            };
            vec![FieldError {
                field: field.into(),
                message: e.to_string(),
            }]
        })?;
    Ok(checked)
}

/// Forgets a registration (files stay). The demo set is built in and cannot be removed.
pub fn remove(store: &Store, name: &str) -> Result<(), Error> {
    if name == DEMO_DATASET {
        return Err(Error::Conflict(
            "the demo data set is built in and cannot be removed".into(),
        ));
    }
    store.delete_dataset(name).map_err(|e| match e {
        store::Error::UnknownDataset(_) => {
            Error::NotFound(format!("{e}; `cxr8 dataset list` shows the registered ones"))
        }
        other => other.into(),
    })
}

/// 1–80 letters, digits, `-` or `_`, not reserved, not taken; the problem is the `name` field's.
pub fn check_name(store: &Store, name: &str) -> Result<(), FieldError> {
    let problem = |message: String| Err(FieldError::new("name", message));
    if name.is_empty() {
        return problem("give the data set a name (letters, digits, - and _)".into());
    }
    if name.chars().count() > MAX_NAME_LEN {
        return problem(format!(
            "the name has {} characters; use at most {MAX_NAME_LEN}",
            name.chars().count()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return problem(format!(
            "'{bad}' is not allowed in a name: use letters, digits, - and _ (e.g. nih-full)"
        ));
    }
    if RESERVED_NAMES.contains(&name) {
        return problem(format!("'{name}' is reserved; pick another name"));
    }
    match store.dataset(name) {
        Ok(Some(_)) => problem(format!(
            "a data set named '{name}' already exists; pick another name or remove that one first"
        )),
        Ok(None) => Ok(()),
        Err(e) => problem(e.to_string()),
    }
}

fn label_file_path(field: &str, typed: &str) -> Result<PathBuf, FieldError> {
    let problem = |message: String| Err(FieldError::new(field, message));
    let typed = typed.trim();
    if typed.is_empty() {
        return problem("give the path of the label file (e.g. Data_Entry_2017_v2020.csv or .csv.gz)".into());
    }
    let path = Path::new(typed);
    if !path.exists() {
        return problem(format!("{typed}: no such file (paths are on the machine running cxr8)"));
    }
    if !path.is_file() {
        return problem(format!("{typed}: is a folder, not a label file"));
    }
    path.canonicalize().or_else(|e| problem(format!("{typed}: {e}")))
}

/// The image folder, canonical; `Ok(None)` when it cannot be known yet (no usable label file).
fn image_dir_path(typed: &str, label_file: Option<&Path>) -> Result<Option<PathBuf>, FieldError> {
    let problem = |message: String| Err(FieldError::new("image_dir", message));
    let typed = typed.trim();
    let dir = if typed.is_empty() {
        match label_file.and_then(Path::parent) {
            Some(parent) => parent.to_path_buf(),
            None => return Ok(None),
        }
    } else {
        PathBuf::from(typed)
    };
    if !dir.exists() {
        return problem(format!("{}: no such folder", dir.display()));
    }
    if !dir.is_dir() {
        return problem(format!(
            "{}: is a file; give the folder that holds the images",
            dir.display()
        ));
    }
    dir.canonicalize()
        .map(Some)
        .or_else(|e| problem(format!("{}: {e}", dir.display())))
}

/// An image of a data set as a `side`² gray PNG (the data set page's thumbnails). Blocking.
pub fn thumbnail_png(path: &Path, side: u32) -> crate::data::Result<Vec<u8>> {
    let gray = images::load_gray(path)?;
    let small = images::SquareResizer::new().resize(&gray, side)?;
    crate::data::demo::encode_png(small.as_raw(), side).map_err(|e| crate::data::Error::Image {
        path: path.to_path_buf(),
        message: format!("cannot encode the thumbnail: {e}"),
    })
}

/// Where training keeps the cache of this table at this size (`<data_dir>/cache/…`), the same
/// path `train::job::prepare_data` looks for.
pub fn cache_path(data_dir: &Path, table: &LabelTable, size: u32) -> PathBuf {
    cache::path_for(data_dir.join("cache"), table, size)
}

/// Everything the data set page shows that comes from the files: parsed once, then shared.
#[derive(Debug)]
pub struct DatasetFacts {
    pub table: LabelTable,
    pub index: ImageIndex,
    pub stats: stats::Stats,
    /// Row numbers of the label rows whose image was found, in file order.
    pub found_rows: Vec<usize>,
    /// Image name → row, for the label rows whose image was found (thumbnails look names up here,
    /// so only files the data set lists can ever be read).
    pub by_image: HashMap<String, usize>,
}

impl DatasetFacts {
    /// Reads the label file (with the split files after it, if any) and scans the image folder.
    pub fn load(
        label_file: &Path,
        split_files: Option<&SplitFiles>,
        image_dir: &Path,
    ) -> crate::data::Result<DatasetFacts> {
        let table = match split_files {
            Some(files) => FileSplit::load(label_file, Path::new(&files.val), Path::new(&files.test))?.table,
            None => LabelTable::load(label_file)?,
        };
        let index = ImageIndex::scan(image_dir)?;
        let stats = stats::compute(&table);
        let mut found_rows = Vec::new();
        let mut by_image = HashMap::new();
        for (row, record) in table.records.iter().enumerate() {
            if index.get(&record.image).is_some() {
                found_rows.push(row);
                by_image.entry(record.image.clone()).or_insert(row);
            }
        }
        Ok(DatasetFacts {
            table,
            index,
            stats,
            found_rows,
            by_image,
        })
    }

    /// The label names of a row, "No Finding" when it has none (NIH files).
    pub fn labels_of(&self, row: usize) -> Vec<String> {
        let record = &self.table.records[row];
        let names: Vec<String> = (0..self.table.labels.len())
            .filter(|&i| record.has(i))
            .map(|i| self.table.labels[i].clone())
            .collect();
        if names.is_empty() && self.table.no_finding_is_implicit() {
            vec![crate::data::labels::NO_FINDING.to_string()]
        } else {
            names
        }
    }
}

/// What this process knows about data sets beyond the store: parsed facts (so a page does not
/// re-read a 112k-row label file on every render) and cache builds in progress.
#[derive(Default)]
pub struct LiveDatasets {
    facts: Mutex<HashMap<String, Arc<DatasetFacts>>>,
    builds: Mutex<HashMap<String, Arc<CacheBuild>>>,
}

/// One cache build on its own thread: progress counters and, once finished, the outcome.
#[derive(Debug)]
pub struct CacheBuild {
    pub size: u32,
    done: AtomicUsize,
    total: AtomicUsize,
    /// `None` while building, then how it ended.
    outcome: Mutex<Option<BuildOutcome>>,
}

/// How a cache build ended: ready, or failed with the message the data set page shows.
#[derive(Debug, Clone)]
enum BuildOutcome {
    Ready,
    Failed(String),
}

/// A cache's state as the API and pages show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheStatus {
    /// `building`, `ready`, `failed` or `none`.
    pub state: &'static str,
    pub size: Option<u32>,
    pub done: usize,
    pub total: usize,
    pub error: Option<String>,
}

impl LiveDatasets {
    /// The facts of a data set, read on first use and kept. Blocking: call off the async runtime.
    pub fn facts(
        &self,
        name: &str,
        label_file: &Path,
        split_files: Option<&SplitFiles>,
        image_dir: &Path,
    ) -> crate::data::Result<Arc<DatasetFacts>> {
        if let Some(facts) = self.facts.lock().expect("facts lock").get(name) {
            return Ok(facts.clone());
        }
        // Read without holding the lock: other data sets' pages stay responsive meanwhile.
        let facts = Arc::new(DatasetFacts::load(label_file, split_files, image_dir)?);
        self.facts
            .lock()
            .expect("facts lock")
            .insert(name.to_string(), facts.clone());
        Ok(facts)
    }

    /// Drops what is known about a name (it was removed or registered anew).
    pub fn forget(&self, name: &str) {
        self.facts.lock().expect("facts lock").remove(name);
        self.builds.lock().expect("builds lock").remove(name);
    }

    /// Builds the training cache of a just-registered data set on a new thread (never on the async
    /// runtime), recording the outcome in the stored summary so it outlives this process.
    pub fn start_cache_build(
        &self,
        store: Arc<Store>,
        data_dir: &Path,
        checked: Checked,
        size: u32,
    ) -> Arc<CacheBuild> {
        let build = Arc::new(CacheBuild {
            size,
            done: AtomicUsize::new(0),
            total: AtomicUsize::new(checked.summary.found),
            outcome: Mutex::new(None),
        });
        self.builds
            .lock()
            .expect("builds lock")
            .insert(checked.name.clone(), build.clone());
        record_cache(&store, &checked.name, size, "building", None);
        let cache_dir = data_dir.join("cache");
        let shared = build.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("cache-{}", checked.name))
            .spawn(move || {
                let counters = shared.clone();
                let options = cache::BuildOptions {
                    allow_missing: checked.summary.allow_missing,
                    threads: None,
                    progress: Some(Arc::new(move |done, total| {
                        counters.done.store(done, Ordering::Relaxed);
                        counters.total.store(total, Ordering::Relaxed);
                    })),
                    force: false,
                };
                let result = cache::build(&checked.table, &checked.index, size, &cache_dir, &options);
                let outcome = match result {
                    Ok((_, report)) => {
                        tracing::info!(dataset = %checked.name, "{report}");
                        shared.done.store(report.cached, Ordering::Relaxed);
                        shared.total.store(report.cached, Ordering::Relaxed);
                        BuildOutcome::Ready
                    }
                    Err(e) => BuildOutcome::Failed(e.to_string()),
                };
                let (state, error) = match &outcome {
                    BuildOutcome::Ready => ("ready", None),
                    BuildOutcome::Failed(message) => ("failed", Some(message.clone())),
                };
                record_cache(&store, &checked.name, size, state, error);
                *shared.outcome.lock().expect("outcome lock") = Some(outcome);
            });
        if let Err(e) = spawned {
            let message = format!("cannot start the cache thread: {e}");
            *build.outcome.lock().expect("outcome lock") = Some(BuildOutcome::Failed(message));
        }
        build
    }

    /// The cache state of a data set: a build of this process if any, else the stored record.
    pub fn cache_status(&self, name: &str, summary: Option<&Summary>) -> CacheStatus {
        if let Some(build) = self.builds.lock().expect("builds lock").get(name) {
            let outcome = build.outcome.lock().expect("outcome lock").clone();
            let (state, error) = match outcome {
                None => ("building", None),
                Some(BuildOutcome::Ready) => ("ready", None),
                Some(BuildOutcome::Failed(message)) => ("failed", Some(message)),
            };
            return CacheStatus {
                state,
                size: Some(build.size),
                done: build.done.load(Ordering::Relaxed),
                total: build.total.load(Ordering::Relaxed),
                error,
            };
        }
        match summary.and_then(|s| s.cache.as_ref()) {
            Some(record) => {
                let state = match record.state.as_str() {
                    "ready" => "ready",
                    "failed" => "failed",
                    // A build this process does not know about died with an earlier process.
                    _ => "none",
                };
                let found = summary.map(|s| s.found).unwrap_or(0);
                CacheStatus {
                    state,
                    size: Some(record.size),
                    done: if state == "ready" { found } else { 0 },
                    total: found,
                    error: record.error.clone(),
                }
            }
            None => CacheStatus {
                state: "none",
                size: None,
                done: 0,
                total: summary.map(|s| s.found).unwrap_or(0),
                error: None,
            },
        }
    }
}

/// Stores a cache state in the data set's summary; a data set removed meanwhile is left removed.
fn record_cache(store: &Store, name: &str, size: u32, state: &str, error: Option<String>) {
    let Ok(Some(row)) = store.dataset(name) else {
        return;
    };
    let mut summary = row.summary;
    let record = CacheRecord {
        size,
        state: state.into(),
        error,
    };
    if let Some(object) = summary.as_object_mut() {
        object.insert("cache".into(), serde_json::to_value(record).expect("plain data"));
        if let Err(e) = store.set_dataset_summary(name, &summary) {
            tracing::warn!(dataset = name, "cannot record the cache state: {e}");
        }
    }
}

/// A registered data set as the JSON API and `cxr8 dataset list --json` show it.
pub fn registered_json(row: &crate::store::DatasetRow) -> serde_json::Value {
    serde_json::json!({
        "name": row.name,
        "demo": false,
        "label_file": row.label_file,
        "image_dir": row.image_dir,
        "val_label_file": row.split_files.as_ref().map(|f| &f.val),
        "test_label_file": row.split_files.as_ref().map(|f| &f.test),
        "created_at": row.created_at,
        "summary": row.summary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-hot label file naming `rows` images (a.png, b.png, …) and a folder holding the
    /// first `present` of them.
    fn files(rows: usize, present: usize) -> (tempfile::TempDir, Registration) {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("imgs");
        std::fs::create_dir(&images).unwrap();
        let mut csv = String::from("id,subject_id,Atelectasis,Effusion\n");
        for i in 0..rows {
            let name = format!("{}.png", (b'a' + i as u8) as char);
            csv.push_str(&format!("{name},{},{},{}\n", i / 2, i % 2, (i + 1) % 2));
            if i < present {
                image::GrayImage::from_pixel(8, 8, image::Luma([i as u8 * 20]))
                    .save(images.join(&name))
                    .unwrap();
            }
        }
        let labels = dir.path().join("labels.csv");
        std::fs::write(&labels, csv).unwrap();
        let input = Registration {
            name: "small".into(),
            label_file: labels.to_string_lossy().into(),
            image_dir: images.to_string_lossy().into(),
            allow_missing: false,
            ..Default::default()
        };
        (dir, input)
    }

    fn fields(result: Result<Checked, Vec<FieldError>>) -> Vec<(String, String)> {
        result
            .expect_err("the registration should be refused")
            .into_iter()
            .map(|e| (e.field, e.message))
            .collect()
    }

    #[test]
    fn a_complete_data_set_is_registered_with_canonical_paths_and_a_summary() {
        let store = Store::open_in_memory().unwrap();
        let (dir, input) = files(3, 3);
        let checked = register(&store, &input).unwrap();
        assert_eq!(checked.summary.images, 3);
        assert_eq!(checked.summary.found, 3);
        assert_eq!(checked.summary.patients, 2);
        assert_eq!(checked.summary.label_counts["Effusion"], 2);
        let row = store.dataset("small").unwrap().unwrap();
        assert!(Path::new(&row.label_file).is_absolute());
        assert_eq!(
            Path::new(&row.image_dir),
            dir.path().join("imgs").canonicalize().unwrap()
        );
        assert_eq!(Summary::from_row(&row).unwrap(), checked.summary);
    }

    #[test]
    fn bad_names_are_refused_with_a_reason() {
        let store = Store::open_in_memory().unwrap();
        let (_dir, input) = files(2, 2);
        register(&store, &input).unwrap();
        let cases = [
            ("", "give the data set a name"),
            ("has space", "' ' is not allowed"),
            ("../etc", "'.' is not allowed"),
            ("demo", "reserved"),
            ("new", "reserved"),
            ("small", "already exists"),
        ];
        for (name, expected) in cases {
            let problem = check_name(&store, name).expect_err(name);
            assert_eq!(problem.field, "name");
            assert!(problem.message.contains(expected), "{name:?}: {}", problem.message);
        }
        let long = "x".repeat(MAX_NAME_LEN + 1);
        assert!(check_name(&store, &long).unwrap_err().message.contains("at most 80"));
        assert!(check_name(&store, &"x".repeat(MAX_NAME_LEN)).is_ok());
    }

    #[test]
    fn every_bad_field_is_reported_and_nothing_is_stored() {
        let store = Store::open_in_memory().unwrap();
        let input = Registration {
            name: "bad name".into(),
            label_file: "/no/such/labels.csv".into(),
            image_dir: "/no/such/folder".into(),
            allow_missing: false,
            ..Default::default()
        };
        let problems = fields(register(&store, &input));
        let named: Vec<&str> = problems.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(named, ["name", "label_file", "image_dir"], "{problems:?}");
        assert!(problems[1].1.contains("no such file"));
        assert!(store.datasets().unwrap().is_empty());
    }

    #[test]
    fn a_label_file_without_the_image_column_names_it() {
        let store = Store::open_in_memory().unwrap();
        let (dir, mut input) = files(2, 2);
        let bad = dir.path().join("bad.csv");
        std::fs::write(&bad, "Finding Labels,Patient ID\nEffusion,1\n").unwrap();
        input.label_file = bad.to_string_lossy().into();
        let problems = fields(check(&store, &input));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, "label_file");
        assert!(
            problems[0].1.contains("missing column 'Image Index'"),
            "{}",
            problems[0].1
        );
        assert!(problems[0].1.contains("line 1"), "{}", problems[0].1);
    }

    #[test]
    fn a_folder_without_any_listed_image_is_refused() {
        let store = Store::open_in_memory().unwrap();
        let (_dir, input) = files(3, 0);
        let problems = fields(check(&store, &input));
        assert_eq!(problems[0].0, "image_dir");
        assert!(problems[0].1.contains("none of the 3 images"), "{}", problems[0].1);
        // Allowing missing images does not make an empty data set acceptable.
        let allowed = Registration {
            allow_missing: true,
            ..input
        };
        assert_eq!(fields(check(&store, &allowed))[0].0, "image_dir");
    }

    #[test]
    fn some_missing_images_need_an_explicit_choice() {
        let store = Store::open_in_memory().unwrap();
        let (_dir, input) = files(4, 2);
        let problems = fields(register(&store, &input));
        assert_eq!(problems[0].0, "allow_missing");
        assert!(problems[0].1.contains("2 of 4 images are missing"), "{}", problems[0].1);
        assert!(problems[0].1.contains("c.png, d.png"), "{}", problems[0].1);
        assert!(store.datasets().unwrap().is_empty());

        let allowed = Registration {
            allow_missing: true,
            ..input
        };
        let checked = register(&store, &allowed).unwrap();
        assert_eq!((checked.summary.found, checked.summary.missing), (2, 2));
        assert!(checked.summary.allow_missing);
    }

    #[test]
    fn an_empty_image_folder_means_the_label_files_folder() {
        let store = Store::open_in_memory().unwrap();
        let (dir, mut input) = files(2, 2);
        // Labels next to the images.
        let labels = dir.path().join("imgs/labels.csv");
        std::fs::copy(&input.label_file, &labels).unwrap();
        input.label_file = labels.to_string_lossy().into();
        input.image_dir = String::new();
        let checked = check(&store, &input).unwrap();
        assert_eq!(checked.image_dir, dir.path().join("imgs").canonicalize().unwrap());
    }

    #[test]
    fn the_demo_cannot_be_removed_and_unknown_names_say_so() {
        let store = Store::open_in_memory().unwrap();
        let built_in = remove(&store, "demo").unwrap_err();
        assert!(
            matches!(&built_in, Error::Conflict(m) if m.contains("built in")),
            "{built_in:?}"
        );
        let unknown = remove(&store, "nope").unwrap_err();
        assert!(
            matches!(&unknown, Error::NotFound(m) if m.contains("no data set named 'nope'") && m.contains("cxr8 dataset list")),
            "{unknown:?}"
        );
        let (_dir, input) = files(2, 2);
        register(&store, &input).unwrap();
        remove(&store, "small").unwrap();
        assert!(store.dataset("small").unwrap().is_none());
    }

    #[test]
    fn facts_list_only_found_images_with_their_labels() {
        let (dir, input) = files(3, 2);
        let facts = DatasetFacts::load(Path::new(&input.label_file), None, &dir.path().join("imgs")).unwrap();
        assert_eq!(facts.found_rows, [0, 1]);
        assert!(facts.by_image.contains_key("a.png"));
        assert!(!facts.by_image.contains_key("c.png"));
        assert_eq!(facts.labels_of(0), ["Effusion"]);
        assert_eq!(facts.labels_of(1), ["Atelectasis"]);
    }
}
