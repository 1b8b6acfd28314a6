//! One data set's page: its statistics, label and co-occurrence charts, and the thumbnail
//! browser with its images.

use std::sync::Arc;

use axum::extract::{MatchedPath, Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::data::images;
use crate::service::datasets::{self, CacheStatus, DatasetFacts};
use crate::web::charts::{BarGroup, Figure};
use crate::web::templates::{encode_query, ChartLink, DatasetPage, LabelCountRow, Thumb};
use crate::web::{AppError, AppState};

use super::*;
use crate::web::routes::{chart_file, chart_response, ChartQuery};

/// `?page=` and `?label=` of the thumbnail browser, unparsed so bad values get our error format.
#[derive(Debug, Default, Deserialize)]
pub(super) struct BrowseQuery {
    page: Option<String>,
    label: Option<String>,
}

pub(super) async fn dataset_page(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(query): Query<BrowseQuery>,
) -> Result<impl IntoResponse, AppError> {
    let located = locate(&state, &name)?;
    let summary = located.summary();
    let status = state.datasets.cache_status(&located.name, summary.as_ref());
    let mut page = registration_page(&located, &status);
    page.split_rows = split_rows(&located, summary.as_ref());
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
    page.facts = fact_rows(&facts);
    page.missing_examples = missing_examples(&facts);
    let base = format!("/datasets/{}", located.name);
    label_section(&mut page, &facts.stats, &base);
    browse_section(&mut page, &facts, &base, &query)?;
    Ok(page)
}

/// The page with what the registration alone says (names, folders, cache state); the sections
/// read from the files are filled in after.
fn registration_page(located: &Located, status: &CacheStatus) -> DatasetPage {
    DatasetPage {
        name: located.name.clone(),
        demo: located.row.is_none(),
        label_file: located.label_file.display().to_string(),
        image_dir: located.image_dir.display().to_string(),
        created: located.row.as_ref().map(|r| r.created_at.clone()).unwrap_or_default(),
        split_rows: Vec::new(),
        files_error: String::new(),
        facts: Vec::new(),
        missing_examples: String::new(),
        cache_state: status.state,
        cache_done: status.done,
        cache_total: status.total,
        cache_text: cache_text(status),
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
    }
}

/// The split files of a data set whose split is given as files, what each holds, and the
/// patients they share (a warning: results on them are then not patient-disjoint).
fn split_rows(located: &Located, summary: Option<&datasets::Summary>) -> Vec<(String, String)> {
    let Some(files) = located.row.as_ref().and_then(|row| row.split_files.as_ref()) else {
        return Vec::new();
    };
    let mut rows = vec![
        ("Validation label file".to_string(), files.val.clone()),
        ("Test label file".to_string(), files.test.clone()),
    ];
    if let Some(counts) = summary.and_then(|s| s.split_files.as_ref()) {
        rows.push((
            "Split".into(),
            format!(
                "as given by the files: {} training, {} validation and {} test images",
                count(counts.train),
                count(counts.val),
                count(counts.test)
            ),
        ));
        rows.extend(
            counts
                .shared_patients
                .iter()
                .map(|shared| ("Warning".to_string(), shared.to_string())),
        );
    }
    rows
}

/// The data set's facts table: format, counts, patients, views, sex and age.
fn fact_rows(facts: &DatasetFacts) -> Vec<(String, String)> {
    let stats = &facts.stats;
    let missing = facts.table.len() - facts.found_rows.len();
    let mut rows = vec![
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
        rows.push(("Views".into(), known_views.join(", ")));
    }
    if stats.sex.male + stats.sex.female > 0 {
        rows.push((
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
        rows.push((
            "Age (years)".into(),
            format!(
                "{} – {}, median {}, mean {:.1}; {} implausible ages left out",
                age.min, age.max, age.median, age.mean, age.implausible
            ),
        ));
    }
    rows
}

/// A few of the label file's images that are not in the folder ("" when none is missing).
fn missing_examples(facts: &DatasetFacts) -> String {
    let examples: Vec<&str> = facts
        .table
        .records
        .iter()
        .map(|r| r.image.as_str())
        .filter(|image| facts.index.get(image).is_none())
        .take(images::REPORT_EXAMPLES)
        .collect();
    examples.join(", ")
}

/// Per-label counts (each a link to its images) and the two label charts.
fn label_section(page: &mut DatasetPage, stats: &crate::data::stats::Stats, base: &str) {
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
}

/// One page of thumbnails, all images or one label's, with links to the neighbouring pages.
fn browse_section(
    page: &mut DatasetPage,
    facts: &DatasetFacts,
    base: &str,
    query: &BrowseQuery,
) -> Result<(), AppError> {
    let label = query.label.as_deref().map(str::trim).unwrap_or("");
    let rows = browse_rows(facts, label)?;
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
    Ok(())
}

/// Rows of found images, all or those with `label` ("No Finding" = no label bit, in NIH files).
pub(super) fn browse_rows(facts: &DatasetFacts, label: &str) -> Result<Vec<usize>, AppError> {
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

pub(super) fn cache_text(status: &CacheStatus) -> String {
    let size = cache_label(status);
    match status.state {
        "building" => format!("building at {size}: {} of {} images", status.done, status.total),
        "ready" => format!("ready at {size} ({} images)", status.done),
        "failed" => format!("the cache build at {size} failed; training will try again"),
        _ => "not built yet; the first run on this data set builds it".into(),
    }
}

/// `labels.{svg,png,csv}` (images per label) and `cooccurrence.{…}` (images with both labels) of
/// a data set; which one is read from the route that matched.
pub(super) async fn dataset_chart(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    matched: MatchedPath,
    Query(query): Query<ChartQuery>,
) -> Result<Response, AppError> {
    let file = matched.as_str().rsplit('/').next().unwrap_or_default();
    let (chart, format) = chart_file(file)?;
    let display = query.display()?;
    let located = locate(&state, &name)?;
    let facts = facts_or_404(&state, &located).await?;
    let figure = if chart == "labels" {
        let labels = &facts.stats.label_table;
        let max = labels.iter().map(|l| l.images).max().unwrap_or(0).max(1) as f64;
        Figure::Bars {
            title: "Images per label".into(),
            categories: labels.iter().map(|l| l.label.clone()).collect(),
            groups: vec![BarGroup {
                name: located.name.clone(),
                values: labels.iter().map(|l| Some(l.images as f64)).collect(),
            }],
            range: (0.0, max * 1.05),
        }
    } else {
        let c = &facts.stats.cooccurrence;
        Figure::Counts {
            title: "Images with both labels".into(),
            labels: c.labels.clone(),
            counts: c.counts.clone(),
        }
    };
    chart_response(&figure, chart, format, &display)
}

/// A thumbnail of one of the data set's images. The name is looked up among the label file's
/// rows whose file was found, so nothing outside the data set can be read whatever the URL says.
pub(super) async fn thumbnail(
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
    let png = tokio::task::spawn_blocking(move || datasets::thumbnail_png(&path, THUMB_SIZE))
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
