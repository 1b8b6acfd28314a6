//! Data set pages: the list (`/datasets`), one data set's statistics, charts and thumbnail browser
//! (`/datasets/{name}`), adding one (`/datasets/new`, `POST /datasets`, which starts its cache
//! build), forgetting one, and the JSON API (`/api/datasets`). Registration rules live in
//! `crate::service::datasets`; this file only turns them into pages.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::data::demo;
use crate::data::images::{self, SquareResizer};
use crate::service::datasets::DEMO_DATASET;
use crate::service::datasets::{self, CacheStatus, DatasetFacts, Registration, Summary};
use crate::store::DatasetRow;
use crate::train::config::{MAX_IMAGE_SIZE, MIN_IMAGE_SIZE};
use crate::web::charts::{self, BarGroup};
use crate::web::templates::{
    encode_query, ChartLink, DatasetListRow, DatasetNewPage, DatasetPage, DatasetsPage, LabelCountRow, Thumb,
};
use crate::web::{AppError, AppState};

/// Thumbnails per page of the image browser.
const THUMBS_PER_PAGE: usize = 24;
/// Thumbnail side in pixels.
const THUMB_SIZE: u32 = 128;
/// Cache image size suggested by the form: the training default.
const DEFAULT_CACHE_SIZE: u32 = 224;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/datasets", get(list_page).post(create))
        .route("/datasets/new", get(new_page))
        .route("/datasets/{name}", get(dataset_page))
        .route("/datasets/{name}/labels.svg", get(labels_chart))
        .route("/datasets/{name}/cooccurrence.svg", get(cooccurrence_chart))
        .route("/datasets/{name}/thumbs/{file}", get(thumbnail))
        .route("/datasets/{name}/delete", post(delete))
        .route("/api/datasets", get(api_list))
        .route("/api/datasets/{name}", get(api_detail))
}

/// A data set's files and registration; `row` is `None` for the built-in demo.
struct Located {
    name: String,
    label_file: PathBuf,
    image_dir: PathBuf,
    row: Option<DatasetRow>,
}

impl Located {
    fn summary(&self) -> Option<Summary> {
        self.row.as_ref().and_then(Summary::from_row)
    }
}

fn locate(state: &AppState, name: &str) -> Result<Located, AppError> {
    if name == DEMO_DATASET {
        let dir = state.data_dir.join("demo");
        let label_file = dir.join(demo::LABEL_FILE);
        if !label_file.is_file() {
            return Err(AppError::NotFound(
                "the demo data set has not been generated yet: `cxr8 serve` or `cxr8 demo` makes it".into(),
            ));
        }
        return Ok(Located {
            name: name.into(),
            label_file,
            image_dir: dir.join(demo::IMAGES_DIR),
            row: None,
        });
    }
    let row = state
        .store
        .dataset(name)?
        .ok_or_else(|| AppError::NotFound(format!("no data set named '{name}'; see /datasets")))?;
    Ok(Located {
        name: row.name.clone(),
        label_file: row.label_file.clone().into(),
        image_dir: row.image_dir.clone().into(),
        row: Some(row),
    })
}

/// The parsed files, from the in-memory cache or read on a blocking thread.
async fn facts(state: &Arc<AppState>, located: &Located) -> Result<Arc<DatasetFacts>, String> {
    let (state, name, labels, images) = (
        state.clone(),
        located.name.clone(),
        located.label_file.clone(),
        located.image_dir.clone(),
    );
    tokio::task::spawn_blocking(move || state.datasets.facts(&name, &labels, &images))
        .await
        .map_err(|e| format!("reading the data set failed: {e}"))?
        .map_err(|e| format!("cannot read this data set's files any more: {e}"))
}

async fn facts_or_404(state: &Arc<AppState>, located: &Located) -> Result<Arc<DatasetFacts>, AppError> {
    facts(state, located).await.map_err(AppError::NotFound)
}

fn count(n: usize) -> String {
    // Thousands separated by commas: 112,120 reads at a glance.
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn cache_label(status: &CacheStatus) -> String {
    status.size.map(|s| format!("{s} px")).unwrap_or_default()
}

async fn list_page(State(state): State<Arc<AppState>>) -> Result<impl IntoResponse, AppError> {
    let mut rows = Vec::new();
    match locate(&state, DEMO_DATASET) {
        Ok(located) => {
            let row = match facts(&state, &located).await {
                Ok(f) => DatasetListRow {
                    name: DEMO_DATASET.into(),
                    demo: true,
                    images: count(f.table.len()),
                    found: count(f.found_rows.len()),
                    patients: count(f.stats.patients),
                    labels: f.table.labels.len().to_string(),
                    cache: "",
                    cache_size: String::new(),
                    note: "built in; training caches it at the run's image size".into(),
                },
                Err(message) => unknown_row(DEMO_DATASET, true, message),
            };
            rows.push(row);
        }
        Err(_) => rows.push(unknown_row(
            DEMO_DATASET,
            true,
            "not generated yet (cxr8 serve makes it)".into(),
        )),
    }
    for row in state.store.datasets()? {
        let summary = Summary::from_row(&row);
        let status = state.datasets.cache_status(&row.name, summary.as_ref());
        rows.push(match summary {
            Some(s) => DatasetListRow {
                name: row.name.clone(),
                demo: false,
                images: count(s.images),
                found: count(s.found),
                patients: count(s.patients),
                labels: s.labels.len().to_string(),
                cache: status.state,
                cache_size: cache_label(&status),
                note: String::new(),
            },
            None => unknown_row(&row.name, false, "no summary stored".into()),
        });
    }
    Ok(DatasetsPage { rows })
}

fn unknown_row(name: &str, demo: bool, note: String) -> DatasetListRow {
    DatasetListRow {
        name: name.into(),
        demo,
        images: "–".into(),
        found: "–".into(),
        patients: "–".into(),
        labels: "–".into(),
        cache: "",
        cache_size: String::new(),
        note,
    }
}

/// `?page=` and `?label=` of the thumbnail browser, unparsed so bad values get our error format.
#[derive(Debug, Default, Deserialize)]
struct BrowseQuery {
    page: Option<String>,
    label: Option<String>,
}

async fn dataset_page(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(query): Query<BrowseQuery>,
) -> Result<impl IntoResponse, AppError> {
    let located = locate(&state, &name)?;
    let summary = located.summary();
    let status = state.datasets.cache_status(&located.name, summary.as_ref());
    let mut page = DatasetPage {
        name: located.name.clone(),
        demo: located.row.is_none(),
        label_file: located.label_file.display().to_string(),
        image_dir: located.image_dir.display().to_string(),
        created: located.row.as_ref().map(|r| r.created_at.clone()).unwrap_or_default(),
        files_error: String::new(),
        facts: Vec::new(),
        missing_examples: String::new(),
        cache_state: status.state,
        cache_done: status.done,
        cache_total: status.total,
        cache_text: cache_text(&status),
        cache_error: status.error.clone().unwrap_or_default(),
        show_cache: located.row.is_some(),
        label_rows: Vec::new(),
        charts: Vec::new(),
        label_filter: String::new(),
        label_options: Vec::new(),
        thumbs: Vec::new(),
        thumbs_total: 0,
        page: 1,
        pages: 1,
        prev_href: String::new(),
        next_href: String::new(),
    };
    let facts = match facts(&state, &located).await {
        Ok(facts) => facts,
        Err(message) => {
            // The registration is still worth showing: its stored summary and cache state.
            page.files_error = message;
            if let Some(s) = &summary {
                page.facts = vec![
                    ("Images".into(), count(s.images)),
                    ("Patients".into(), count(s.patients)),
                ];
            }
            return Ok(page);
        }
    };
    let stats = &facts.stats;
    let missing = facts.table.len() - facts.found_rows.len();
    page.facts = vec![
        ("Format".into(), format!("{:?}", facts.table.format)),
        ("Task".into(), format!("{:?}", facts.table.task)),
        ("Images (label rows)".into(), count(stats.images)),
        ("Found on disk".into(), count(facts.found_rows.len())),
        ("Missing".into(), count(missing)),
        ("Patients".into(), count(stats.patients)),
        (
            "Images per patient".into(),
            format!(
                "{} – {} (median {}, mean {:.1})",
                stats.images_per_patient.min,
                stats.images_per_patient.max,
                stats.images_per_patient.median,
                stats.images_per_patient.mean
            ),
        ),
        ("Labels".into(), facts.table.labels.len().to_string()),
    ];
    let known_views: Vec<String> = stats
        .views
        .iter()
        .filter(|(view, _)| view.as_str() != "unknown")
        .map(|(view, n)| format!("{view} {}", count(*n)))
        .collect();
    if !known_views.is_empty() {
        page.facts.push(("Views".into(), known_views.join(", ")));
    }
    if stats.sex.male + stats.sex.female > 0 {
        page.facts.push((
            "Sex".into(),
            format!(
                "{} male, {} female, {} unknown",
                count(stats.sex.male),
                count(stats.sex.female),
                count(stats.sex.unknown)
            ),
        ));
    }
    if let Some(age) = &stats.age {
        page.facts.push((
            "Age (years)".into(),
            format!(
                "{} – {}, median {}, mean {:.1}; {} implausible ages left out",
                age.min, age.max, age.median, age.mean, age.implausible
            ),
        ));
    }
    if missing > 0 {
        let examples: Vec<&str> = facts
            .table
            .records
            .iter()
            .map(|r| r.image.as_str())
            .filter(|image| facts.index.get(image).is_none())
            .take(images::REPORT_EXAMPLES)
            .collect();
        page.missing_examples = examples.join(", ");
    }
    let base = format!("/datasets/{}", located.name);
    page.label_rows = stats
        .label_table
        .iter()
        .map(|l| LabelCountRow {
            label: l.label.clone(),
            images: count(l.images),
            percent: format!("{:.1} %", l.percent),
            patients: count(l.patients),
            href: format!("{base}?label={}#images", encode_query(&l.label)),
        })
        .collect();
    page.label_options = stats.label_table.iter().map(|l| l.label.clone()).collect();
    page.charts = vec![
        ChartLink {
            title: "Images per label".into(),
            src: format!("{base}/labels.svg"),
            wide: true,
        },
        ChartLink {
            title: "Label co-occurrence".into(),
            src: format!("{base}/cooccurrence.svg"),
            wide: true,
        },
    ];

    let label = query.label.as_deref().map(str::trim).unwrap_or("");
    let rows = browse_rows(&facts, label)?;
    let number = match query.page.as_deref().map(str::trim) {
        None | Some("") => 1,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| AppError::BadRequest(format!("page must be a number from 1, not '{text}'")))?,
    };
    let pages = rows.len().div_ceil(THUMBS_PER_PAGE).max(1);
    let number = number.min(pages);
    let link = |n: usize| {
        let mut href = format!("{base}?page={n}");
        if !label.is_empty() {
            href.push_str(&format!("&label={}", encode_query(label)));
        }
        href.push_str("#images");
        href
    };
    page.thumbs = rows
        .iter()
        .skip((number - 1) * THUMBS_PER_PAGE)
        .take(THUMBS_PER_PAGE)
        .map(|&row| {
            let image = facts.table.records[row].image.clone();
            Thumb {
                src: format!("{base}/thumbs/{}.png", encode_query(&image)),
                labels: facts.labels_of(row).join(", "),
                image,
            }
        })
        .collect();
    page.thumbs_total = rows.len();
    page.label_filter = label.to_string();
    page.page = number;
    page.pages = pages;
    if number > 1 {
        page.prev_href = link(number - 1);
    }
    if number < pages {
        page.next_href = link(number + 1);
    }
    Ok(page)
}

/// Rows of found images, all or those with `label` ("No Finding" = no label bit, in NIH files).
fn browse_rows(facts: &DatasetFacts, label: &str) -> Result<Vec<usize>, AppError> {
    if label.is_empty() {
        return Ok(facts.found_rows.clone());
    }
    let table = &facts.table;
    let wanted: Box<dyn Fn(usize) -> bool> = if let Some(bit) = table.labels.iter().position(|l| l == label) {
        Box::new(move |row| table.records[row].has(bit))
    } else if label == crate::data::labels::NO_FINDING && table.no_finding_is_implicit() {
        Box::new(|row| table.records[row].targets == 0)
    } else {
        return Err(AppError::BadRequest(format!(
            "no label '{label}' in this data set; it has: {}",
            table.labels.join(", ")
        )));
    };
    Ok(facts.found_rows.iter().copied().filter(|&row| wanted(row)).collect())
}

fn cache_text(status: &CacheStatus) -> String {
    let size = cache_label(status);
    match status.state {
        "building" => format!("building at {size}: {} of {} images", status.done, status.total),
        "ready" => format!("ready at {size} ({} images)", status.done),
        "failed" => format!("the cache build at {size} failed; training will try again"),
        _ => "not built yet; the first run on this data set builds it".into(),
    }
}

async fn labels_chart(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    let located = locate(&state, &name)?;
    let facts = facts_or_404(&state, &located).await?;
    let labels = &facts.stats.label_table;
    let categories: Vec<String> = labels.iter().map(|l| l.label.clone()).collect();
    let group = BarGroup {
        name: located.name.clone(),
        values: labels.iter().map(|l| Some(l.images as f64)).collect(),
    };
    let max = labels.iter().map(|l| l.images).max().unwrap_or(0).max(1) as f64;
    let svg = charts::bar_chart("Images per label", &categories, &[group], (0.0, max * 1.05))?;
    Ok(svg_response(svg))
}

async fn cooccurrence_chart(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    let located = locate(&state, &name)?;
    let facts = facts_or_404(&state, &located).await?;
    let c = &facts.stats.cooccurrence;
    let svg = charts::count_heatmap("Images with both labels", &c.labels, &c.counts)?;
    Ok(svg_response(svg))
}

/// Charts of a data set change only when it is registered anew under the same name.
fn svg_response(body: String) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

/// A thumbnail of one of the data set's images. The name is looked up among the label file's
/// rows whose file was found, so nothing outside the data set can be read whatever the URL says.
async fn thumbnail(
    State(state): State<Arc<AppState>>,
    Path((name, file)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let located = locate(&state, &name)?;
    let facts = facts_or_404(&state, &located).await?;
    let not_listed = || AppError::NotFound(format!("no image '{file}' in data set '{name}'"));
    let image = file.strip_suffix(".png").ok_or_else(not_listed)?;
    if !facts.by_image.contains_key(image) {
        return Err(not_listed());
    }
    let path = facts.index.get(image).ok_or_else(not_listed)?.to_path_buf();
    let png = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
        let gray = images::load_gray(&path).map_err(|e| e.to_string())?;
        let small = SquareResizer::new()
            .resize(&gray, THUMB_SIZE)
            .map_err(|e| e.to_string())?;
        demo::encode_png(small.as_raw(), THUMB_SIZE).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| AppError::Internal(format!("thumbnail task failed: {e}")))?
    // A damaged file (or a link to something that is not an image) is a fact about the data set,
    // not a server fault: no thumbnail, and say why.
    .map_err(|e| AppError::NotFound(format!("image '{image}' of data set '{name}' cannot be shown: {e}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, "private, max-age=3600"),
        ],
        png,
    )
        .into_response())
}

async fn new_page() -> impl IntoResponse {
    DatasetNewPage {
        image_size: DEFAULT_CACHE_SIZE.to_string(),
        ..DatasetNewPage::default()
    }
}

/// The add form as posted (urlencoded); every value optional so a missing one gets a message.
#[derive(Debug, Default, Deserialize)]
struct NewDatasetForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    label_file: String,
    #[serde(default)]
    image_dir: String,
    allow_missing: Option<String>,
    #[serde(default)]
    image_size: String,
}

async fn create(State(state): State<Arc<AppState>>, Form(form): Form<NewDatasetForm>) -> Response {
    let mut page = DatasetNewPage {
        name: form.name.trim().to_string(),
        label_file: form.label_file.trim().to_string(),
        image_dir: form.image_dir.trim().to_string(),
        allow_missing: matches!(form.allow_missing.as_deref(), Some("on" | "true" | "1")),
        image_size: form.image_size.trim().to_string(),
        ..DatasetNewPage::default()
    };
    let size = match page.image_size.as_str() {
        "" => Some(DEFAULT_CACHE_SIZE),
        text => text
            .parse::<u32>()
            .ok()
            .filter(|s| (MIN_IMAGE_SIZE..=MAX_IMAGE_SIZE).contains(s)),
    };
    if size.is_none() {
        page.image_size_error = format!(
            "use a whole number of pixels from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE}, not '{}'",
            page.image_size
        );
    }
    let input = Registration {
        name: page.name.clone(),
        label_file: page.label_file.clone(),
        image_dir: page.image_dir.clone(),
        allow_missing: page.allow_missing,
    };
    let store = state.store.clone();
    // Parsing a 112k-row label file and scanning folders must not stall the runtime. Only
    // checked here when the size is bad, so nothing is stored with an unusable form.
    let register = size.is_some();
    let result = tokio::task::spawn_blocking(move || {
        if register {
            datasets::register(&store, &input)
        } else {
            datasets::check(&store, &input)
        }
    })
    .await;
    let result = match result {
        Ok(result) => result,
        Err(e) => return AppError::Internal(format!("registration task failed: {e}")).into_response(),
    };
    match (result, size) {
        (Ok(checked), Some(size)) => {
            let name = checked.name.clone();
            state.datasets.forget(&name);
            state
                .datasets
                .start_cache_build(state.store.clone(), &state.data_dir, checked, size);
            Redirect::to(&format!("/datasets/{name}")).into_response()
        }
        (result, _) => {
            for problem in result.err().unwrap_or_default() {
                let slot = match problem.field.as_str() {
                    "name" => &mut page.name_error,
                    "label_file" => &mut page.label_file_error,
                    "image_dir" => &mut page.image_dir_error,
                    "allow_missing" => &mut page.allow_missing_error,
                    _ => &mut page.general_error,
                };
                if !slot.is_empty() {
                    slot.push(' ');
                }
                slot.push_str(&problem.message);
            }
            (StatusCode::UNPROCESSABLE_ENTITY, page).into_response()
        }
    }
}

async fn delete(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Result<Response, AppError> {
    if name == DEMO_DATASET {
        return Err(AppError::Conflict(
            "the demo data set is built in and cannot be removed".into(),
        ));
    }
    // Unknown names get the usual 404.
    locate(&state, &name)?;
    let store = state.store.clone();
    let target = name.clone();
    tokio::task::spawn_blocking(move || datasets::remove(&store, &target))
        .await
        .map_err(|e| AppError::Internal(format!("delete task failed: {e}")))?
        .map_err(AppError::Internal)?;
    state.datasets.forget(&name);
    Ok(Redirect::to("/datasets").into_response())
}

/// A data set as the API shows it: the row, its summary and the cache state.
async fn api_value(state: &Arc<AppState>, located: &Located) -> Value {
    match &located.row {
        Some(row) => {
            let summary = Summary::from_row(row);
            let cache = state.datasets.cache_status(&row.name, summary.as_ref());
            let mut value = crate::service::datasets::registered_json(row);
            value["cache"] = json!(cache);
            value
        }
        None => {
            let summary = facts(state, located)
                .await
                .ok()
                .map(|f| Summary::of(&f.table, &f.index, false).to_json());
            json!({
                "name": located.name,
                "demo": true,
                "label_file": located.label_file,
                "image_dir": located.image_dir,
                "created_at": null,
                "summary": summary,
                "cache": state.datasets.cache_status(&located.name, None),
            })
        }
    }
}

async fn api_list(State(state): State<Arc<AppState>>) -> Result<Json<Vec<Value>>, AppError> {
    let mut out = Vec::new();
    if let Ok(demo) = locate(&state, DEMO_DATASET) {
        out.push(api_value(&state, &demo).await);
    }
    for row in state.store.datasets()? {
        let located = Located {
            name: row.name.clone(),
            label_file: row.label_file.clone().into(),
            image_dir: row.image_dir.clone().into(),
            row: Some(row),
        };
        out.push(api_value(&state, &located).await);
    }
    Ok(Json(out))
}

async fn api_detail(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Result<Json<Value>, AppError> {
    let located = locate(&state, &name)?;
    Ok(Json(api_value(&state, &located).await))
}
