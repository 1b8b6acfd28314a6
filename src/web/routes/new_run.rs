//! The new-run form: `GET /runs/new` (defaults, `?preset=NAME`, or `?from=RUN_ID` to clone a run)
//! and `POST /runs`, which turns the form into the JSON training config, submits it through
//! [`JobControl`](crate::web::JobControl) and redirects to the new run (303), or shows the form
//! again with the user's values and a message next to each bad field (422), having queued nothing.
//!
//! The form is generated from one table of fields whose names are the JSON names the API accepts;
//! the choices of every select come from the option types themselves, so a new model or optimiser
//! appears here without touching this file.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::actions::page_error;
use super::run::load_run;
use crate::model::{Architecture, NormKind};
use crate::service::datasets::DEMO_DATASET;
use crate::store::Run;
use crate::train::config::{
    DeviceChoice, LossKind, Monitor, OptimizerKind, OutputActivation, Precision, ScheduleKind, SplitStrategy,
};
use crate::train::presets::{self, PRESETS};
use crate::train::TrainConfig;
use crate::web::templates::{encode_query, FormField, FormGroup, FormOption, NewRunPage, PresetLink};
use crate::web::{AppError, AppState, FieldError};

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/runs/new", get(new_run_form))
        .route("/runs", post(submit_form))
}

/// How a field's text becomes JSON.
#[derive(Debug, Clone)]
enum Kind {
    /// A whole number from 0 to `max` (the largest value of the field's Rust type).
    Whole {
        max: u64,
    },
    /// Any finite decimal number.
    Number,
    /// A checkbox: present = true, absent = false.
    Flag,
    /// One of these `(value, label)` pairs.
    Choice(Vec<(String, String)>),
    Text,
    /// Comma-separated words, sent as an array.
    Tags,
}

/// One form field.
#[derive(Debug, Clone)]
struct Spec {
    /// The input's name and the key sent in the JSON config (`augment.x` goes into the nested object).
    name: &'static str,
    /// Where the value sits in a serialised [`TrainConfig`] (differs for the aliases `model` and
    /// `learning_rate`).
    source: &'static str,
    label: &'static str,
    kind: Kind,
    /// Empty means "leave it out" (the config's `None`); otherwise empty is an error.
    optional: bool,
    /// What an empty optional field means.
    placeholder: &'static str,
    /// Other names [`TrainConfig::validate`] uses for this field.
    aliases: &'static [&'static str],
}

impl Spec {
    fn new(name: &'static str, label: &'static str, kind: Kind) -> Spec {
        Spec {
            name,
            source: name,
            label,
            kind,
            optional: false,
            placeholder: "",
            aliases: &[],
        }
    }

    /// Empty is allowed and leaves the setting out; `placeholder` says what that means.
    fn optional(mut self, placeholder: &'static str) -> Spec {
        self.optional = true;
        self.placeholder = placeholder;
        self
    }

    fn source(mut self, source: &'static str, aliases: &'static [&'static str]) -> Spec {
        self.source = source;
        self.aliases = aliases;
        self
    }

    fn is_flag(&self) -> bool {
        matches!(self.kind, Kind::Flag)
    }
}

const U32: Kind = Kind::Whole { max: u32::MAX as u64 };
const USIZE: Kind = Kind::Whole { max: usize::MAX as u64 };
const U64: Kind = Kind::Whole { max: u64::MAX };

/// Every value of an option type: its JSON name and a label with the variant's doc line.
fn choices<T: ValueEnum + Serialize>() -> Vec<(String, String)> {
    T::value_variants()
        .iter()
        .map(|variant| {
            let value = match serde_json::to_value(variant) {
                Ok(Value::String(name)) => name,
                _ => String::new(),
            };
            let help = variant
                .to_possible_value()
                .and_then(|p| p.get_help().map(|h| h.to_string()));
            let label = match help {
                Some(help) => format!("{value} — {help}"),
                None => value.clone(),
            };
            (value, label)
        })
        .collect()
}

/// The form's fieldsets and fields, in display order. `datasets` are the registered data sets.
fn groups(datasets: &[String]) -> Vec<(&'static str, Vec<Spec>)> {
    let mut dataset_choices = vec![(
        DEMO_DATASET.to_string(),
        "demo — synthetic images, built in".to_string(),
    )];
    dataset_choices.extend(datasets.iter().map(|name| (name.clone(), name.clone())));
    vec![
        (
            "Data",
            vec![
                Spec::new("dataset", "Data set", Kind::Choice(dataset_choices)).optional("the label file below"),
                Spec::new("labels", "Label file (instead of a data set)", Kind::Text).optional("none"),
                Spec::new("images", "Image folder", Kind::Text).optional("images/ next to the label file"),
                Spec::new("split", "Split strategy", Kind::Choice(choices::<SplitStrategy>())),
                Spec::new("val_fraction", "Validation fraction", Kind::Number),
                Spec::new("test_fraction", "Test fraction", Kind::Number),
                Spec::new("per_class", "Images per class (balanced split)", USIZE).optional("none"),
                Spec::new("max_images", "At most this many images", USIZE).optional("all"),
                Spec::new("allow_missing_images", "Skip missing images", Kind::Flag),
                Spec::new("image_size", "Image size (px)", U32),
                Spec::new("balanced_sampling", "Balanced sampling", Kind::Flag),
            ],
        ),
        (
            "Model",
            vec![
                Spec::new("model", "Model", Kind::Choice(choices::<Architecture>())).source("architecture", &[]),
                Spec::new("norm", "Normalisation", Kind::Choice(choices::<NormKind>())),
                Spec::new("width", "Width multiplier", Kind::Number),
                Spec::new("dropout", "Dropout", Kind::Number),
            ],
        ),
        (
            "Optimisation",
            vec![
                Spec::new("epochs", "Epochs", USIZE),
                Spec::new("batch_size", "Batch size", USIZE),
                Spec::new("optimizer", "Optimiser", Kind::Choice(choices::<OptimizerKind>())),
                Spec::new("learning_rate", "Learning rate", Kind::Number).source("lr", &["lr"]),
                Spec::new("momentum", "Momentum (SGD)", Kind::Number),
                Spec::new("nesterov", "Nesterov (SGD)", Kind::Flag),
                Spec::new("weight_decay", "Weight decay", Kind::Number),
                Spec::new("beta1", "Beta 1 (Adam)", Kind::Number),
                Spec::new("beta2", "Beta 2 (Adam)", Kind::Number),
                Spec::new("schedule", "Schedule", Kind::Choice(choices::<ScheduleKind>())),
                Spec::new("warmup_epochs", "Warm-up epochs", USIZE),
                Spec::new("step_size", "Step size (step schedule)", USIZE),
                Spec::new("step_gamma", "Step gamma (step schedule)", Kind::Number),
                Spec::new("min_lr", "Final rate (cosine schedule)", Kind::Number),
                Spec::new("plateau_factor", "Plateau factor", Kind::Number),
                Spec::new("plateau_patience", "Plateau patience (epochs)", USIZE),
                Spec::new("grad_clip", "Gradient clipping", Kind::Number).optional("off"),
            ],
        ),
        (
            "Loss",
            vec![
                Spec::new("loss", "Loss", Kind::Choice(choices::<LossKind>())),
                Spec::new("pos_weight", "Weight positives (neg/pos)", Kind::Flag),
                Spec::new("focal_gamma", "Focal gamma", Kind::Number),
                Spec::new("focal_alpha", "Focal alpha", Kind::Number).optional("unweighted"),
                Spec::new(
                    "output_activation",
                    "Output activation (MSE/MAE)",
                    Kind::Choice(choices::<OutputActivation>()),
                )
                .optional("follow the loss"),
            ],
        ),
        (
            "Augmentation",
            vec![
                Spec::new("augment.enabled", "Augment training batches", Kind::Flag),
                Spec::new("augment.hflip", "Horizontal flips", Kind::Flag),
                Spec::new("augment.rotate_deg", "Rotation (degrees)", Kind::Number)
                    .source("augment.rotate_deg", &["aug_rotate"]),
                Spec::new("augment.translate", "Translation", Kind::Number)
                    .source("augment.translate", &["aug_translate"]),
                Spec::new("augment.scale", "Zoom", Kind::Number).source("augment.scale", &["aug_scale"]),
                Spec::new("augment.brightness", "Brightness", Kind::Number)
                    .source("augment.brightness", &["aug_brightness"]),
                Spec::new("augment.contrast", "Contrast", Kind::Number).source("augment.contrast", &["aug_contrast"]),
            ],
        ),
        (
            "Stopping & checkpoints",
            vec![
                Spec::new("early_stopping", "Early stopping patience (epochs)", USIZE).optional("never"),
                Spec::new(
                    "early_stop_metric",
                    "Early stopping metric",
                    Kind::Choice(choices::<Monitor>()),
                ),
                Spec::new(
                    "checkpoint_metric",
                    "Best checkpoint by",
                    Kind::Choice(choices::<Monitor>()),
                ),
            ],
        ),
        (
            "Run",
            vec![
                Spec::new("seed", "Seed", U64),
                Spec::new("device", "Device", Kind::Choice(choices::<DeviceChoice>())),
                Spec::new("precision", "Precision", Kind::Choice(choices::<Precision>())),
                Spec::new("threads", "CPU threads", USIZE).optional("all cores"),
                Spec::new("name", "Name", Kind::Text).optional("model and image size"),
                Spec::new("tags", "Tags (comma separated)", Kind::Tags).optional("none"),
            ],
        ),
    ]
}

/// Help text per config field, taken from the `cxr8 train` option docs so both say the same.
fn help_texts() -> &'static HashMap<String, String> {
    static HELP: OnceLock<HashMap<String, String>> = OnceLock::new();
    HELP.get_or_init(|| {
        use clap::Args;
        let command = TrainConfig::augment_args(clap::Command::new("train"));
        command
            .get_arguments()
            .filter_map(|arg| Some((arg.get_id().to_string(), arg.get_help()?.to_string())))
            .collect()
    })
}

fn help_for(spec: &Spec) -> String {
    // Clap ids are field names; augmentation fields are flattened, so their id is the last part.
    let id = spec.source.rsplit('.').next().unwrap_or(spec.source);
    help_texts().get(id).cloned().unwrap_or_default()
}

/// Looks up a dotted path (`augment.scale`) in a JSON object.
fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, key| v.get(key))
}

/// The form's text for every field, from a config.
fn config_values(specs: &[Spec], config: &TrainConfig) -> HashMap<String, String> {
    // Through text so f32 fields show as typed (0.1, not 0.10000000149011612).
    let text = serde_json::to_string(config).expect("configs serialise");
    let json: Value = serde_json::from_str(&text).expect("serialised configs parse");
    let mut values = HashMap::new();
    for spec in specs {
        let text = match lookup(&json, spec.source) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Bool(b)) => if *b { "true" } else { "" }.to_string(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| i.as_str().map(String::from).unwrap_or_else(|| i.to_string()))
                .collect::<Vec<_>>()
                .join(", "),
            Some(other) => other.to_string(),
        };
        values.insert(spec.name.to_string(), text);
    }
    // No data set and no label file means the demo set: say so in the select.
    if config.dataset.is_none() && config.labels.is_none() {
        values.insert("dataset".into(), DEMO_DATASET.into());
    }
    values
}

/// The posted fields as the form shows them again (checkboxes: "true" when ticked).
fn posted_values(specs: &[Spec], pairs: Vec<(String, String)>) -> HashMap<String, String> {
    let mut raw: HashMap<String, String> = HashMap::new();
    for (key, value) in pairs {
        raw.insert(key, value);
    }
    specs
        .iter()
        .map(|spec| {
            let value = match raw.get(spec.name) {
                Some(_) if spec.is_flag() => "true".to_string(),
                Some(text) => text.clone(),
                None => String::new(),
            };
            (spec.name.to_string(), value)
        })
        .collect()
}

/// The JSON config the form describes, or a message per field that cannot be read.
fn parse(specs: &[Spec], values: &HashMap<String, String>) -> (Map<String, Value>, Vec<FieldError>) {
    let defaults = config_values(specs, &TrainConfig::default());
    let mut config = Map::new();
    let mut errors = Vec::new();
    for spec in specs {
        let text = values.get(spec.name).map(|v| v.trim()).unwrap_or("");
        let example = defaults.get(spec.name).map(String::as_str).unwrap_or("");
        let value = match &spec.kind {
            Kind::Flag => Some(Value::Bool(!text.is_empty())),
            _ if text.is_empty() => {
                if !spec.optional {
                    errors.push(FieldError::new(spec.name, empty_message(&spec.kind, example)));
                }
                None
            }
            Kind::Whole { max } => match text.parse::<u64>() {
                Ok(n) if n <= *max => Some(Value::from(n)),
                Ok(_) => {
                    errors.push(FieldError::new(
                        spec.name,
                        format!("{text} is too large; the largest accepted value is {max}"),
                    ));
                    None
                }
                Err(_) => {
                    errors.push(FieldError::new(
                        spec.name,
                        format!("'{text}' is not a whole number; enter e.g. {example}"),
                    ));
                    None
                }
            },
            Kind::Number => match text.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
                Some(n) => Some(Value::Number(n)),
                None => {
                    let example = if example.is_empty() { "0.5" } else { example };
                    errors.push(FieldError::new(
                        spec.name,
                        format!("'{text}' is not a number; enter e.g. {example}"),
                    ));
                    None
                }
            },
            Kind::Choice(options) => {
                if options.iter().any(|(value, _)| value == text) {
                    Some(Value::String(text.to_string()))
                } else {
                    errors.push(FieldError::new(
                        spec.name,
                        format!("'{text}' is not one of the choices: {}", option_list(options)),
                    ));
                    None
                }
            }
            Kind::Text => Some(Value::String(text.to_string())),
            Kind::Tags => Some(Value::Array(
                text.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(|t| Value::String(t.to_string()))
                    .collect(),
            )),
        };
        if let Some(value) = value {
            insert(&mut config, spec.name, value);
        }
    }
    (config, errors)
}

fn empty_message(kind: &Kind, example: &str) -> String {
    match kind {
        Kind::Whole { .. } => format!("is empty; enter a whole number, e.g. {example}"),
        Kind::Number => format!("is empty; enter a number, e.g. {example}"),
        Kind::Choice(options) => format!("is empty; choose one of: {}", option_list(options)),
        _ => "is empty; fill it in".into(),
    }
}

fn option_list(options: &[(String, String)]) -> String {
    options.iter().map(|(v, _)| v.as_str()).collect::<Vec<_>>().join(", ")
}

/// Puts `value` at a dotted `name` (`augment.scale` → `{"augment": {"scale": …}}`).
fn insert(config: &mut Map<String, Value>, name: &str, value: Value) {
    match name.split_once('.') {
        Some((outer, inner)) => {
            let nested = config
                .entry(outer.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(map) = nested {
                insert(map, inner, value);
            }
        }
        None => {
            config.insert(name.to_string(), value);
        }
    }
}

/// The form field an error is about, whichever name the engine used for it.
fn field_of<'a>(specs: &'a [Spec], error_field: &str) -> Option<&'a Spec> {
    specs
        .iter()
        .find(|s| s.name == error_field || s.source == error_field || s.aliases.contains(&error_field))
}

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
    match new_run_page(&state, &query) {
        Ok(page) => page.into_response(),
        Err(e) => page_error(e),
    }
}

fn new_run_page(state: &AppState, query: &NewRunQuery) -> Result<NewRunPage, AppError> {
    let preset = query.preset.as_deref().map(str::trim).filter(|p| !p.is_empty());
    let from = query.from.as_deref().map(str::trim).filter(|p| !p.is_empty());
    let (config, about) = match (preset, from) {
        (Some(_), Some(_)) => {
            return Err(AppError::BadRequest(
                "start from a preset (?preset=NAME) or from a run (?from=ID), not both".into(),
            ))
        }
        (Some(name), None) => {
            let config = presets::preset_or_error(name).map_err(AppError::BadRequest)?;
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
        (None, None) => (
            TrainConfig::default(),
            FormIntro {
                heading: "New run".into(),
                source: String::new(),
                preset: None,
            },
        ),
    };
    let groups = groups(&dataset_names(state)?);
    let specs: Vec<Spec> = groups.iter().flat_map(|(_, s)| s.iter().cloned()).collect();
    let values = config_values(&specs, &config);
    Ok(render(&groups, &values, &[], about))
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
    let specs: Vec<Spec> = groups.iter().flat_map(|(_, s)| s.iter().cloned()).collect();
    let values = posted_values(&specs, pairs);
    let (config, mut errors) = parse(&specs, &values);
    if errors.is_empty() {
        let jobs = state.jobs.clone();
        let config = Value::Object(config);
        let submit = move || super::api::check_submission(&config).and_then(|()| jobs.submit(config));
        match tokio::task::spawn_blocking(submit).await {
            Ok(Ok(id)) => return Redirect::to(&format!("/runs/{}", encode_query(&id))).into_response(),
            Ok(Err(rejected)) => errors = rejected,
            Err(e) => return page_error(AppError::Internal(format!("submitting a run: {e}"))),
        }
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
    let about = FormIntro {
        heading: "New run".into(),
        source: String::new(),
        preset: None,
    };
    (status, render(&groups, &values, &errors, about)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

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
