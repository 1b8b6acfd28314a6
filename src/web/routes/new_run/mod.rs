//! The new-run form: `GET /runs/new` (defaults, `?preset=NAME`, or `?from=RUN_ID` to clone a run)
//! and `POST /runs`, which turns the form into the JSON training config, submits it through
//! [`JobControl`](crate::web::JobControl) and redirects to the new run (303), or shows the form
//! again with the user's values and a message next to each bad field (422), having queued nothing.
//!
//! The form opens with defaults that fit the machine (a CPU-sized run without a usable GPU) and
//! shows the run's estimated duration ([`estimate`]); a run estimated above an hour is queued
//! only with the "start anyway" box ticked.
//!
//! The form is generated from one table of fields whose names are the JSON names the API accepts;
//! the choices of every select come from the option types themselves, so a new model or optimiser
//! appears here without touching this file.

pub(super) mod estimate;
mod fields;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use serde_json::Value;

use self::fields::*;
use super::actions::page_error;
use super::run::load_run;
use crate::service::datasets::DEMO_DATASET;
use crate::service::estimate::{form_defaults, Estimate, Machine, CONFIRM_ABOVE_SECONDS};
use crate::store::Run;
use crate::train::presets::{self, PRESETS};
use crate::train::TrainConfig;
use crate::web::templates::{encode_query, FormField, FormGroup, FormOption, NewRunPage, PresetLink};
use crate::web::{AppError, AppState, FieldError};

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/runs/new", get(new_run_form))
        .route("/runs", post(submit_form))
        .route("/api/estimate", get(estimate::estimate_api))
        .route("/static/estimate.js", get(estimate_script))
}

async fn estimate_script() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../../../static/estimate.js"),
    )
}

/// The posted box that confirms a run estimated above an hour (not a config field).
const CONFIRM_FIELD: &str = "confirm_long";

/// A preset's label on the form.
fn preset_label(name: &'static str) -> &'static str {
    match name {
        "quick-demo" => "Quick demo (CPU, about a minute)",
        "school-project" => "School project reproduction: SimpleCNN, SGD, MSE, batch 2",
        "chexnet" => "CheXNet-style DenseNet-121",
        "mobilenet-v2" => "MobileNetV2",
        other => other,
    }
}

struct FormIntro {
    heading: String,
    source: String,
    preset: Option<String>,
}

fn render(
    specs_by_group: &[(&'static str, Vec<Spec>)],
    values: &HashMap<String, String>,
    errors: &[FieldError],
    about: FormIntro,
) -> NewRunPage {
    let all: Vec<Spec> = specs_by_group.iter().flat_map(|(_, s)| s.iter().cloned()).collect();
    let mut by_field: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut summary = Vec::new();
    for e in errors {
        match field_of(&all, &e.field) {
            Some(spec) => {
                by_field.entry(spec.name).or_default().push(&e.message);
                summary.push(format!("{}: {}", spec.name, e.message));
            }
            // "config" (the body as a whole), "store" and anything unexpected go to the top only.
            None if e.field.is_empty() => summary.push(e.message.clone()),
            None => summary.push(format!("{}: {}", e.field, e.message)),
        }
    }
    let groups = specs_by_group
        .iter()
        .map(|(title, specs)| FormGroup {
            title,
            fields: specs
                .iter()
                .map(|spec| {
                    let value = values.get(spec.name).cloned().unwrap_or_default();
                    let mut options: Vec<FormOption> = match &spec.kind {
                        Kind::Choice(options) => options
                            .iter()
                            .map(|(v, label)| FormOption {
                                value: v.clone(),
                                label: label.clone(),
                                selected: *v == value,
                            })
                            .collect(),
                        _ => Vec::new(),
                    };
                    if matches!(spec.kind, Kind::Choice(_)) {
                        if spec.optional {
                            options.push(FormOption {
                                value: String::new(),
                                label: format!("(none: {})", spec.placeholder),
                                selected: value.is_empty(),
                            });
                        }
                        if !value.is_empty() && !options.iter().any(|o| o.selected) {
                            // Keep a rejected value visible, so the message beside it makes sense.
                            options.push(FormOption {
                                value: value.clone(),
                                label: format!("{value} (not available)"),
                                selected: true,
                            });
                        }
                    }
                    FormField {
                        name: spec.name.to_string(),
                        label: spec.label,
                        help: help_for(spec),
                        kind: match spec.kind {
                            Kind::Whole { .. } => "whole",
                            Kind::Number => "number",
                            Kind::Flag => "checkbox",
                            Kind::Choice(_) => "select",
                            Kind::Text | Kind::Tags => "text",
                        },
                        checked: spec.is_flag() && !value.is_empty(),
                        value,
                        options,
                        placeholder: spec.placeholder.to_string(),
                        error: by_field.get(spec.name).map(|m| m.join("; ")).unwrap_or_default(),
                    }
                })
                .collect(),
        })
        .collect();
    NewRunPage {
        heading: about.heading,
        source: about.source,
        presets: PRESETS
            .iter()
            .map(|&(name, about_text)| PresetLink {
                name,
                label: preset_label(name),
                about: about_text,
                active: about.preset.as_deref() == Some(name),
            })
            .collect(),
        groups,
        errors: summary,
        estimate_headline: String::new(),
        estimate_note: String::new(),
        confirm_long: None,
    }
}

fn dataset_names(state: &AppState) -> Result<Vec<String>, AppError> {
    Ok(state
        .store
        .datasets()?
        .into_iter()
        .map(|d| d.name)
        .filter(|name| name != DEMO_DATASET)
        .collect())
}

#[derive(Debug, Default, Deserialize)]
struct NewRunQuery {
    preset: Option<String>,
    from: Option<String>,
}

async fn new_run_form(State(state): State<Arc<AppState>>, Query(query): Query<NewRunQuery>) -> Response {
    let page = tokio::task::spawn_blocking({
        let state = state.clone();
        move || new_run_page(&state, &query)
    })
    .await
    .unwrap_or_else(|e| Err(AppError::Internal(format!("drawing the form: {e}"))));
    match page {
        Ok((mut page, specs, values)) => {
            (page.estimate_headline, page.estimate_note) = estimate::cached_lines(&state, values, specs).await;
            page.into_response()
        }
        Err(e) => page_error(e),
    }
}

/// A drawn form with the fields and values it shows (from which its estimate is made).
type DrawnForm = (NewRunPage, Vec<Spec>, HashMap<String, String>);

/// The form for the query. Blocking: the first call asks the CUDA driver whether a GPU is usable.
fn new_run_page(state: &AppState, query: &NewRunQuery) -> Result<DrawnForm, AppError> {
    let preset = query.preset.as_deref().map(str::trim).filter(|p| !p.is_empty());
    let from = query.from.as_deref().map(str::trim).filter(|p| !p.is_empty());
    let (config, about) = match (preset, from) {
        (Some(_), Some(_)) => {
            return Err(AppError::BadRequest(
                "start from a preset (?preset=NAME) or from a run (?from=ID), not both".into(),
            ))
        }
        (Some(name), None) => {
            let config = presets::preset_or_error(name).map_err(|e| AppError::BadRequest(e.to_string()))?;
            let label = PRESETS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(n, _)| preset_label(n))
                .unwrap_or(name);
            let about = FormIntro {
                heading: format!("New run: {label}"),
                source: format!("Filled from the preset '{name}'; change anything before starting."),
                preset: Some(name.to_string()),
            };
            (config, about)
        }
        (None, Some(id)) => {
            let run = load_run(state, id)?;
            let (config, problem) = stored_config(&run);
            let mut source = format!(
                "A copy of run '{}' ({}); change anything before starting.",
                run.name, run.id
            );
            if let Some(problem) = problem {
                source.push_str(&format!(" {problem}"));
            }
            let about = FormIntro {
                heading: format!("Clone of {}", run.name),
                source,
                preset: None,
            };
            (config, about)
        }
        (None, None) => {
            let (config, why) = form_defaults(Machine::get());
            let about = FormIntro {
                heading: "New run".into(),
                source: why,
                preset: None,
            };
            (config, about)
        }
    };
    let groups = groups(&dataset_names(state)?);
    let specs: Vec<Spec> = groups.iter().flat_map(|(_, s)| s.iter().cloned()).collect();
    let values = config_values(&specs, &config);
    let page = render(&groups, &values, &[], about);
    Ok((page, specs, values))
}

/// Names longer than this are refused by the config's validation.
const MAX_NAME_CHARS: usize = 100;

/// The config a run was started with, as a form for a new run named "copy of …". Older or
/// hand-written configs are read leniently: known fields are taken, the rest are named in a note.
fn stored_config(run: &Run) -> (TrainConfig, Option<String>) {
    let mut merged = serde_json::to_value(TrainConfig::default()).expect("configs serialise");
    let mut ignored = Vec::new();
    if let Value::Object(stored) = &run.config {
        for (key, value) in stored {
            let key = match key.as_str() {
                "model" => "architecture",
                "learning_rate" => "lr",
                other => other,
            };
            match merged.get_mut(key) {
                Some(slot) => *slot = value.clone(),
                None => ignored.push(key.to_string()),
            }
        }
    }
    let (mut config, mut problem) = match serde_json::from_value::<TrainConfig>(merged) {
        Ok(config) => (config, None),
        Err(e) => (
            TrainConfig::default(),
            Some(format!(
                "Its stored config could not be read ({e}), so the defaults are shown."
            )),
        ),
    };
    if !ignored.is_empty() && problem.is_none() {
        problem = Some(format!(
            "Stored settings this version does not know were left out: {}.",
            ignored.join(", ")
        ));
    }
    // A registered data set supplies its own files when the run is submitted.
    if config.dataset.is_some() {
        config.labels = None;
        config.images = None;
    }
    let name: String = format!("copy of {}", run.name).chars().take(MAX_NAME_CHARS).collect();
    config.name = Some(name);
    (config, problem)
}

/// What became of a posted form.
enum Submitted {
    Queued(String),
    Rejected(Vec<FieldError>),
    /// Estimated above an hour and not confirmed: nothing was queued.
    Unconfirmed(Box<Estimate>),
}

/// Checks, estimates (timing the step if this machine has not yet) and queues a posted config,
/// keeping the estimate with the run. Blocking.
fn check_estimate_queue(state: &AppState, config: Value, confirmed: bool) -> Submitted {
    if let Err(errors) = super::api::check_submission(&config) {
        return Submitted::Rejected(errors);
    }
    let estimate = match state.estimates.estimate_posted(&config, true) {
        Ok(estimate) => estimate,
        Err(errors) => return Submitted::Rejected(errors),
    };
    if estimate.needs_confirmation && !confirmed {
        return Submitted::Unconfirmed(Box::new(estimate));
    }
    match state.jobs.submit(config) {
        Ok(id) => {
            keep_estimate(state, &id, &estimate);
            Submitted::Queued(id)
        }
        Err(errors) => Submitted::Rejected(errors),
    }
}

/// Stores the estimate a run was submitted with, for its page; a run without one just shows none.
pub(super) fn keep_estimate(state: &AppState, id: &str, estimate: &Estimate) {
    if estimate.total_seconds.is_none() {
        return;
    }
    let value = serde_json::to_value(estimate).expect("estimates serialise");
    if let Err(e) = state.store.set_run_estimate(id, &value) {
        tracing::warn!("run {id}: the estimate was not stored: {e}");
    }
}

async fn submit_form(
    State(state): State<Arc<AppState>>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let Form(pairs) = match form {
        Ok(form) => form,
        Err(rejection) => return page_error(AppError::BadRequest(rejection.body_text())),
    };
    let groups = match dataset_names(&state) {
        Ok(names) => groups(&names),
        Err(e) => return page_error(e),
    };
    let confirmed = pairs.iter().any(|(k, v)| k == CONFIRM_FIELD && v == "true");
    let specs: Vec<Spec> = groups.iter().flat_map(|(_, s)| s.iter().cloned()).collect();
    let values = posted_values(&specs, pairs);
    let (config, mut errors) = parse(&specs, &values);
    let mut unconfirmed = None;
    if errors.is_empty() {
        let worker = state.clone();
        let config = Value::Object(config);
        match tokio::task::spawn_blocking(move || check_estimate_queue(&worker, config, confirmed)).await {
            Ok(Submitted::Queued(id)) => return Redirect::to(&format!("/runs/{}", encode_query(&id))).into_response(),
            Ok(Submitted::Rejected(rejected)) => errors = rejected,
            Ok(Submitted::Unconfirmed(estimate)) => unconfirmed = Some(estimate),
            Err(e) => return page_error(AppError::Internal(format!("submitting a run: {e}"))),
        }
    }
    let about = FormIntro {
        heading: "New run".into(),
        source: String::new(),
        preset: None,
    };
    if let Some(estimate) = unconfirmed {
        let total = estimate.total_seconds.unwrap_or_default();
        let message = format!(
            "This run is estimated to take {} on this machine, more than {}: tick \"Start anyway\" and start \
             it again, or choose a smaller model, image size, epoch count or data set.",
            crate::web::metrics::format_duration(total),
            crate::web::metrics::format_duration(CONFIRM_ABOVE_SECONDS),
        );
        let mut page = render(&groups, &values, &[], about);
        (page.estimate_headline, page.estimate_note) = estimate::estimate_lines(&estimate);
        page.confirm_long = Some(message);
        return (StatusCode::UNPROCESSABLE_ENTITY, page).into_response();
    }
    if errors.is_empty() {
        // A refusal must always say why.
        errors.push(FieldError::new("", "the run was refused without a reason; try again"));
    }
    // A full disk under the store is no fault of the form: 507, with the form kept as filled in
    // so that it can be sent again once there is room.
    let status = match AppError::rejected(errors.clone()) {
        AppError::DiskFull(_) => StatusCode::INSUFFICIENT_STORAGE,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    (status, render(&groups, &values, &errors, about)).into_response()
}

#[cfg(test)]
mod tests {
    use clap::ValueEnum;

    use super::*;
    use crate::model::Architecture;
    use crate::train::config::OptimizerKind;

    fn specs() -> Vec<Spec> {
        groups(&["nih".to_string()]).into_iter().flat_map(|(_, s)| s).collect()
    }

    #[test]
    fn default_values_parse_back_to_the_default_config() {
        let specs = specs();
        let values = config_values(&specs, &TrainConfig::default());
        let (json, errors) = parse(&specs, &values);
        assert!(errors.is_empty(), "{errors:?}");
        let mut config = TrainConfig::from_json(&Value::Object(json).to_string()).unwrap();
        assert_eq!(
            config.dataset.as_deref(),
            Some("demo"),
            "the demo set is chosen explicitly"
        );
        config.dataset = None;
        assert_eq!(config, TrainConfig::default());
    }

    #[test]
    fn every_preset_round_trips_through_the_form() {
        let specs = specs();
        for (name, _) in PRESETS {
            let preset = presets::preset(name).unwrap();
            let (json, errors) = parse(&specs, &config_values(&specs, &preset));
            assert!(errors.is_empty(), "{name}: {errors:?}");
            let mut config = TrainConfig::from_json(&Value::Object(json).to_string()).unwrap();
            config.dataset = None;
            assert_eq!(config, preset, "{name}");
        }
    }

    #[test]
    fn selects_list_every_variant_by_its_json_name() {
        let models = choices::<Architecture>();
        assert_eq!(models.len(), Architecture::value_variants().len());
        assert!(models.iter().any(|(v, _)| v == "densenet-121"));
        assert!(choices::<OptimizerKind>().iter().any(|(v, _)| v == "adamw"));
    }

    #[test]
    fn validation_names_map_to_form_fields() {
        let specs = specs();
        assert_eq!(field_of(&specs, "lr").unwrap().name, "learning_rate");
        assert_eq!(field_of(&specs, "architecture").unwrap().name, "model");
        assert_eq!(field_of(&specs, "aug_rotate").unwrap().name, "augment.rotate_deg");
        assert!(field_of(&specs, "config").is_none());
    }

    #[test]
    fn every_field_has_help() {
        for spec in specs() {
            assert!(!help_for(&spec).is_empty(), "{} has no help text", spec.name);
        }
    }
}
