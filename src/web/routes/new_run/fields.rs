//! The new-run form's fields: one table of specs whose names are the JSON names the API accepts
//! (select choices come from the option types themselves), the values shown for a config or a
//! posted form, and parsing a posted form back into JSON with a message per bad field.

use std::collections::HashMap;
use std::sync::OnceLock;

use clap::ValueEnum;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::model::{Architecture, NormKind};
use crate::service::datasets::DEMO_DATASET;
use crate::train::config::{
    DeviceChoice, LossKind, Monitor, NoFinding, Normalisation, OptimizerKind, OutputActivation, Precision,
    ScheduleKind, SplitStrategy,
};
use crate::train::TrainConfig;
use crate::web::FieldError;

/// How a field's text becomes JSON.
#[derive(Debug, Clone)]
pub(super) enum Kind {
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
pub(super) struct Spec {
    /// The input's name and the key sent in the JSON config (`augment.x` goes into the nested object).
    pub(super) name: &'static str,
    /// Where the value sits in a serialised [`TrainConfig`] (differs for the aliases `model` and
    /// `learning_rate`).
    pub(super) source: &'static str,
    pub(super) label: &'static str,
    pub(super) kind: Kind,
    /// Empty means "leave it out" (the config's `None`); otherwise empty is an error.
    pub(super) optional: bool,
    /// What an empty optional field means.
    pub(super) placeholder: &'static str,
    /// Other names [`TrainConfig::validate`] uses for this field.
    pub(super) aliases: &'static [&'static str],
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

    pub(super) fn is_flag(&self) -> bool {
        matches!(self.kind, Kind::Flag)
    }
}

pub(super) const U32: Kind = Kind::Whole { max: u32::MAX as u64 };
pub(super) const USIZE: Kind = Kind::Whole { max: usize::MAX as u64 };
pub(super) const U64: Kind = Kind::Whole { max: u64::MAX };

/// Every value of an option type: its JSON name and a label with the variant's doc line.
pub(super) fn choices<T: ValueEnum + Serialize>() -> Vec<(String, String)> {
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
pub(super) fn groups(datasets: &[String]) -> Vec<(&'static str, Vec<Spec>)> {
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
                Spec::new("val_labels", "Validation label file (split given as files)", Kind::Text).optional("none"),
                Spec::new("test_labels", "Test label file (split given as files)", Kind::Text).optional("none"),
                Spec::new("split", "Split strategy", Kind::Choice(choices::<SplitStrategy>())),
                Spec::new("val_fraction", "Validation fraction", Kind::Number),
                Spec::new("test_fraction", "Test fraction", Kind::Number),
                Spec::new("per_class", "Images per class (balanced split)", USIZE).optional("none"),
                Spec::new("max_images", "At most this many images", USIZE).optional("all"),
                Spec::new("allow_missing_images", "Skip missing images", Kind::Flag),
                Spec::new(
                    "min_label_count",
                    "Drop labels with fewer training positives than",
                    USIZE,
                )
                .optional("keep all"),
                Spec::new("labels_include", "Only these labels (comma separated)", Kind::Tags).optional("all"),
                Spec::new(
                    "no_finding",
                    "\"No Finding\" as a label",
                    Kind::Choice(choices::<NoFinding>()),
                ),
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
            "Fine-tuning",
            vec![
                Spec::new(
                    "init_weights",
                    "Start from PyTorch weights (torchvision .pth / .safetensors)",
                    Kind::Text,
                )
                .optional("random initialisation"),
                Spec::new("freeze_backbone_epochs", "Head only for the first epochs", USIZE),
                Spec::new(
                    "backbone_lr_factor",
                    "Backbone learning rate × (of the head's)",
                    Kind::Number,
                ),
                Spec::new(
                    "normalisation",
                    "Input normalisation",
                    Kind::Choice(choices::<Normalisation>()),
                ),
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
                Spec::new("step_points", "Step points (most stored per run)", USIZE),
                Spec::new("name", "Name", Kind::Text).optional("model and image size"),
                Spec::new("tags", "Tags (comma separated)", Kind::Tags).optional("none"),
            ],
        ),
    ]
}

/// Help text per config field, taken from the `cxr8 train` option docs so both say the same.
pub(super) fn help_texts() -> &'static HashMap<String, String> {
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

pub(super) fn help_for(spec: &Spec) -> String {
    // Clap ids are field names; augmentation fields are flattened, so their id is the last part.
    let id = spec.source.rsplit('.').next().unwrap_or(spec.source);
    help_texts().get(id).cloned().unwrap_or_default()
}

/// Looks up a dotted path (`augment.scale`) in a JSON object.
pub(super) fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, key| v.get(key))
}

/// The form's text for every field, from a config.
pub(super) fn config_values(specs: &[Spec], config: &TrainConfig) -> HashMap<String, String> {
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
pub(super) fn posted_values(specs: &[Spec], pairs: Vec<(String, String)>) -> HashMap<String, String> {
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
pub(super) fn parse(specs: &[Spec], values: &HashMap<String, String>) -> (Map<String, Value>, Vec<FieldError>) {
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

pub(super) fn empty_message(kind: &Kind, example: &str) -> String {
    match kind {
        Kind::Whole { .. } => format!("is empty; enter a whole number, e.g. {example}"),
        Kind::Number => format!("is empty; enter a number, e.g. {example}"),
        Kind::Choice(options) => format!("is empty; choose one of: {}", option_list(options)),
        _ => "is empty; fill it in".into(),
    }
}

pub(super) fn option_list(options: &[(String, String)]) -> String {
    options.iter().map(|(v, _)| v.as_str()).collect::<Vec<_>>().join(", ")
}

/// Puts `value` at a dotted `name` (`augment.scale` → `{"augment": {"scale": …}}`).
pub(super) fn insert(config: &mut Map<String, Value>, name: &str, value: Value) {
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
pub(super) fn field_of<'a>(specs: &'a [Spec], error_field: &str) -> Option<&'a Spec> {
    specs
        .iter()
        .find(|s| s.name == error_field || s.source == error_field || s.aliases.contains(&error_field))
}
