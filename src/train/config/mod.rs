//! The run configuration: one [`TrainConfig`] used by the CLI (flattened clap args), the web form,
//! the JSON API, the store and checkpoints, with one [`TrainConfig::validate`] that names every
//! impossible value.

mod validate;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::data::augment::AugmentConfig;
use crate::model::{Architecture, ModelSpec, NormKind};

/// How images are divided into train / validation / test sets (the data layer's strategies).
pub use crate::data::split::Strategy as SplitStrategy;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    Sgd,
    #[default]
    Adam,
    #[value(name = "adamw")]
    #[serde(rename = "adamw")]
    AdamW,
}

/// How the learning rate changes over epochs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleKind {
    #[default]
    Constant,
    /// Multiply by `step_gamma` every `step_size` epochs.
    Step,
    /// Cosine decay from the base rate to `min_lr` over the run (after warm-up).
    Cosine,
    /// Multiply by `plateau_factor` when the monitored metric has not improved for `plateau_patience` epochs.
    Plateau,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LossKind {
    /// Binary cross-entropy on logits, one sigmoid per label (multi-label).
    #[default]
    Bce,
    /// Focal loss (Lin et al. 2017): BCE that down-weights easy examples.
    Focal,
    /// Softmax cross-entropy over labels (single-label).
    Ce,
    /// Mean squared error on activated outputs (the school project used this with softmax).
    Mse,
    /// Mean absolute error on activated outputs.
    Mae,
}

/// The function that turns logits into probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum OutputActivation {
    Sigmoid,
    Softmax,
}

/// How input pixels are normalised: `(gray/255 − mean) / std`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Normalisation {
    /// The training images' own mean and std.
    #[default]
    Dataset,
    /// ImageNet's constants averaged over R, G, B (mean 0.449, std 0.226): a gray image fed to
    /// an ImageNet model whose RGB stem was folded sees what the RGB model saw.
    Imagenet,
}

/// Whether "No Finding" (an image with none of the findings) is a label the model outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum NoFinding {
    /// As the label file has it: a label in NIH-CXR-LT's one-hot files, implied by no finding in NIH's.
    #[default]
    AsFile,
    /// A label (added for NIH files: 1 exactly when an image has no finding).
    Label,
    /// Not a label (dropped from one-hot files: such images have every output 0).
    NotALabel,
}

/// The validation quantity used to pick the best checkpoint, for early stopping and the plateau schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Monitor {
    #[default]
    ValMeanAuroc,
    ValLoss,
    ValAccuracy,
}

impl Monitor {
    /// The key of this quantity in the validation metrics JSON object.
    pub fn key(self) -> &'static str {
        match self {
            Monitor::ValMeanAuroc => "mean_auroc",
            Monitor::ValLoss => "loss",
            Monitor::ValAccuracy => "accuracy",
        }
    }

    pub fn higher_is_better(self) -> bool {
        !matches!(self, Monitor::ValLoss)
    }

    /// True when `candidate` beats `best` (any finite value beats none).
    pub fn improves(self, candidate: f64, best: Option<f64>) -> bool {
        match best {
            None => candidate.is_finite(),
            Some(b) if self.higher_is_better() => candidate > b,
            Some(b) => candidate < b,
        }
    }
}

/// Where training runs (auto = CUDA when usable, else CPU).
pub use crate::train::backend::{DeviceChoice, Precision};

/// Everything that defines a training run. Defaults are a reasonable multi-label ResNet-18 run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    // --- data ---
    /// A data set registered in the store (the dashboard's "Add a data set", or `demo`); sets
    /// `labels` and `images` when the run is submitted. Leave out with `--labels`.
    #[arg(long)]
    pub dataset: Option<String>,
    /// Label file (NIH Data_Entry_2017*.csv[.gz], Kaggle sample_labels.csv or one-hot CSV).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Image folder (default: `images/` next to the label file).
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// With `--test-labels`: the validation rows as a file of their own (NIH-CXR-LT ships its
    /// split as train / val / test CSVs); `--labels` is then the training file and the split is
    /// used as given.
    #[arg(long, requires = "test_labels")]
    pub val_labels: Option<PathBuf>,
    /// With `--val-labels`: the test rows as a file of their own.
    #[arg(long, requires = "val_labels")]
    pub test_labels: Option<PathBuf>,
    /// How to split images into train / validation / test.
    #[arg(long, value_enum, default_value_t = SplitStrategy::Patient)]
    pub split: SplitStrategy,
    /// Fraction of patients (or images) held out for validation.
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f32,
    /// Fraction held out for testing (ignored by the official split).
    #[arg(long, default_value_t = 0.2)]
    pub test_fraction: f32,
    /// Images per class for the balanced split.
    #[arg(long)]
    pub per_class: Option<usize>,
    /// Use at most this many images (a quick look at a big data set).
    #[arg(long)]
    pub max_images: Option<usize>,
    /// Skip rows whose image file is missing instead of stopping.
    #[arg(long, default_value_t = false)]
    pub allow_missing_images: bool,
    /// Keep only labels with at least this many positive training images (drop the rarest).
    #[arg(long)]
    pub min_label_count: Option<usize>,
    /// Keep only these labels (names as in the label file, comma separated); empty: all.
    #[arg(long, value_delimiter = ',')]
    pub labels_include: Vec<String>,
    /// Whether "No Finding" is one of the model's labels.
    #[arg(long, value_enum, default_value_t = NoFinding::AsFile)]
    pub no_finding: NoFinding,
    /// Start from these PyTorch weights (torchvision key layout; .pth/.pt or .safetensors) instead
    /// of a random initialisation; the classifier head is kept only if it fits the labels.
    #[arg(long, value_name = "FILE")]
    pub init_weights: Option<PathBuf>,
    /// Train only the classifier head for this many epochs first (fine-tuning imported weights).
    #[arg(long, default_value_t = 0)]
    pub freeze_backbone_epochs: usize,
    /// The backbone's learning rate as a fraction of the head's (e.g. 0.1 when fine-tuning).
    #[arg(long, default_value_t = 1.0)]
    pub backbone_lr_factor: f64,
    /// Input normalisation: the training images' own mean and std, or ImageNet's constants
    /// (what torchvision's ImageNet weights expect).
    #[arg(long, value_enum, default_value_t = Normalisation::Dataset)]
    pub normalisation: Normalisation,
    /// Side of the square network input, pixels.
    #[arg(long, default_value_t = 224)]
    pub image_size: u32,
    /// Sample training images so rare labels are seen as often as common ones.
    #[arg(long, default_value_t = false)]
    pub balanced_sampling: bool,

    // --- model ---
    /// Network architecture.
    #[arg(long = "model", alias = "architecture", value_enum, default_value_t = Architecture::ResNet18)]
    #[serde(alias = "model")]
    pub architecture: Architecture,
    /// Normalisation layer after convolutions.
    #[arg(long, value_enum, default_value_t = NormKind::Batch)]
    pub norm: NormKind,
    /// Channel width multiplier (1.0 = the published network).
    #[arg(long, default_value_t = 1.0)]
    pub width: f32,
    /// Dropout before the classifier head.
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f32,

    // --- augmentation ---
    #[command(flatten)]
    pub augment: AugmentConfig,

    // --- optimisation ---
    /// Passes over the training set.
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// Images per optimiser step.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Optimiser.
    #[arg(long, value_enum, default_value_t = OptimizerKind::Adam)]
    pub optimizer: OptimizerKind,
    /// Base learning rate.
    #[arg(long, alias = "learning-rate", default_value_t = 1e-3)]
    #[serde(alias = "learning_rate")]
    pub lr: f64,
    /// SGD momentum (0 = plain SGD).
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// SGD Nesterov momentum.
    #[arg(long, default_value_t = false)]
    pub nesterov: bool,
    /// L2 penalty (SGD, Adam) or decoupled weight decay (AdamW).
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f32,
    /// Adam/AdamW first-moment decay.
    #[arg(long, default_value_t = 0.9)]
    pub beta1: f32,
    /// Adam/AdamW second-moment decay.
    #[arg(long, default_value_t = 0.999)]
    pub beta2: f32,
    /// Learning-rate schedule.
    #[arg(long, value_enum, default_value_t = ScheduleKind::Constant)]
    pub schedule: ScheduleKind,
    /// Epochs of linear warm-up from near zero to the base rate (any schedule).
    #[arg(long, default_value_t = 0)]
    pub warmup_epochs: usize,
    /// Step schedule: epochs between decays.
    #[arg(long, default_value_t = 10)]
    pub step_size: usize,
    /// Step schedule: multiplier at each decay.
    #[arg(long, default_value_t = 0.1)]
    pub step_gamma: f64,
    /// Cosine schedule: final learning rate.
    #[arg(long, default_value_t = 0.0)]
    pub min_lr: f64,
    /// Plateau schedule: multiplier when the monitored metric stalls.
    #[arg(long, default_value_t = 0.1)]
    pub plateau_factor: f64,
    /// Plateau schedule: epochs without improvement before decaying.
    #[arg(long, default_value_t = 2)]
    pub plateau_patience: usize,
    /// Clip the global gradient norm of each parameter to this value.
    #[arg(long)]
    pub grad_clip: Option<f32>,

    // --- loss ---
    /// Loss function.
    #[arg(long, value_enum, default_value_t = LossKind::Bce)]
    pub loss: LossKind,
    /// Weight positives by neg/pos per label (BCE and focal), computed on the training split.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub pos_weight: bool,
    /// Focal loss focusing parameter gamma.
    #[arg(long, default_value_t = 2.0)]
    pub focal_gamma: f32,
    /// Focal loss positive-class weight alpha in [0, 1] (none = unweighted).
    #[arg(long)]
    pub focal_alpha: Option<f32>,
    /// Output activation for MSE/MAE (default sigmoid; BCE/focal imply sigmoid, CE softmax).
    #[arg(long, value_enum)]
    pub output_activation: Option<OutputActivation>,

    // --- stopping and checkpoints ---
    /// Stop after this many epochs without improvement of `early_stop_metric` (none = never).
    #[arg(long)]
    pub early_stopping: Option<usize>,
    /// Metric watched by early stopping.
    #[arg(long, value_enum, default_value_t = Monitor::ValMeanAuroc)]
    pub early_stop_metric: Monitor,
    /// Metric that picks the best checkpoint (and drives the plateau schedule).
    #[arg(long, value_enum, default_value_t = Monitor::ValMeanAuroc)]
    pub checkpoint_metric: Monitor,

    // --- run ---
    /// Random seed for weights, shuffling, augmentation and dropout.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Where to train.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Number format for training: bf16 or f16 halve the memory and speed up GPUs with tensor
    /// cores (the whole model in that format; loss and metrics in f32).
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub precision: Precision,
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Step points: how many points of the step-level training curve (smoothed loss and
    /// accuracy) a run stores at most; one every ceil(total steps / this) steps, and at most
    /// two a second.
    #[arg(long, default_value_t = DEFAULT_STEP_POINTS)]
    pub step_points: usize,
    /// A name for the run shown in the dashboard.
    #[arg(long)]
    pub name: Option<String>,
    /// Free-form tags (repeat the flag for several).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
}

/// Step points a run stores by default: enough for a smooth curve at any chart width, few enough
/// that drawing one is a single cheap read (~2,000 rows).
pub const DEFAULT_STEP_POINTS: usize = 2_000;

/// The most step points a run may ask for (a chart shows at most ~1,000 anyway).
pub const MAX_STEP_POINTS: usize = 100_000;

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            dataset: None,
            labels: None,
            images: None,
            split: SplitStrategy::Patient,
            val_fraction: 0.1,
            test_fraction: 0.2,
            per_class: None,
            max_images: None,
            allow_missing_images: false,
            min_label_count: None,
            val_labels: None,
            test_labels: None,
            labels_include: Vec::new(),
            no_finding: NoFinding::AsFile,
            init_weights: None,
            freeze_backbone_epochs: 0,
            backbone_lr_factor: 1.0,
            normalisation: Normalisation::Dataset,
            image_size: 224,
            balanced_sampling: false,
            architecture: Architecture::ResNet18,
            norm: NormKind::Batch,
            width: 1.0,
            dropout: 0.0,
            augment: AugmentConfig::default(),
            epochs: 10,
            batch_size: 16,
            optimizer: OptimizerKind::Adam,
            lr: 1e-3,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            schedule: ScheduleKind::Constant,
            warmup_epochs: 0,
            step_size: 10,
            step_gamma: 0.1,
            min_lr: 0.0,
            plateau_factor: 0.1,
            plateau_patience: 2,
            grad_clip: None,
            loss: LossKind::Bce,
            pos_weight: true,
            focal_gamma: 2.0,
            focal_alpha: None,
            output_activation: None,
            early_stopping: None,
            early_stop_metric: Monitor::ValMeanAuroc,
            checkpoint_metric: Monitor::ValMeanAuroc,
            seed: 42,
            device: DeviceChoice::Auto,
            precision: Precision::F32,
            threads: None,
            step_points: DEFAULT_STEP_POINTS,
            name: None,
            tags: Vec::new(),
        }
    }
}

/// One rejected setting or form field: the field's name (as in JSON and, with `-` for `_`, on the
/// command line; dotted for nested values; empty for the input as a whole) and what to do about
/// it. The one type for this in the crate: the web layer answers with it as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Smallest and largest accepted input side, pixels: below 64 the findings vanish, above 1024 is
/// larger than the NIH originals.
pub const MIN_IMAGE_SIZE: u32 = 64;
pub const MAX_IMAGE_SIZE: u32 = 1024;
/// Upper bounds that catch typos (an extra zero) rather than limit real use.
pub const MAX_EPOCHS: usize = 10_000;
pub const MAX_BATCH_SIZE: usize = 4096;
pub const MAX_WIDTH: f32 = 8.0;

impl TrainConfig {
    /// The model part of the config.
    pub fn model_spec(&self) -> ModelSpec {
        ModelSpec {
            architecture: self.architecture,
            norm: self.norm,
            width: self.width,
            dropout: self.dropout,
        }
    }

    /// The activation that turns this run's logits into probabilities (and that MSE/MAE apply).
    pub fn activation(&self) -> OutputActivation {
        match self.loss {
            LossKind::Bce | LossKind::Focal => OutputActivation::Sigmoid,
            LossKind::Ce => OutputActivation::Softmax,
            LossKind::Mse | LossKind::Mae => self.output_activation.unwrap_or(OutputActivation::Sigmoid),
        }
    }

    /// Parses a JSON config (missing fields take defaults, unknown fields and names are errors)
    /// and validates it.
    pub fn from_json(text: &str) -> Result<TrainConfig, Vec<FieldError>> {
        let config: TrainConfig = serde_json::from_str(text).map_err(|e| {
            vec![FieldError {
                field: "config".into(),
                message: format!("not a valid run configuration: {e}"),
            }]
        })?;
        config.validate()?;
        Ok(config)
    }

    /// A copy without the fields that may change between a run and its resumption (epoch count,
    /// name, tags, device, threads), used to check a resume asks for the same training.
    pub fn resume_key(&self) -> TrainConfig {
        TrainConfig {
            epochs: 0,
            name: None,
            tags: Vec::new(),
            device: DeviceChoice::Auto,
            threads: None,
            // Only how densely the curve is sampled: a resume may change it.
            step_points: 0,
            ..self.clone()
        }
    }

    /// Applies the options given explicitly on the command line (or via the environment) to
    /// `base`, e.g. a preset: `--preset quick-demo --epochs 3` keeps the preset but runs 3 epochs.
    /// `parsed` is the config clap built from the same `matches`.
    pub fn with_cli_overrides(base: &TrainConfig, parsed: &TrainConfig, matches: &clap::ArgMatches) -> TrainConfig {
        use clap::parser::ValueSource;
        let mut merged = serde_json::to_value(base).expect("config serialises");
        let given = serde_json::to_value(parsed).expect("config serialises");
        for id in matches.ids() {
            let explicit = matches!(
                matches.value_source(id.as_str()),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            );
            if !explicit {
                continue;
            }
            let key = id.as_str();
            // Clap ids are field names; augmentation fields live one level down in JSON.
            if let Some(v) = given.get(key) {
                merged[key] = v.clone();
            } else if let Some(v) = given["augment"].get(key) {
                merged["augment"][key] = v.clone();
            }
        }
        serde_json::from_value(merged).expect("merged config deserialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches, Parser};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: TrainConfig,
    }

    fn valid() -> TrainConfig {
        TrainConfig {
            labels: Some("labels.csv".into()),
            ..TrainConfig::default()
        }
    }

    #[test]
    fn clap_defaults_equal_serde_defaults() {
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(cli.config, TrainConfig::default());
        let from_empty_json: TrainConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(from_empty_json, TrainConfig::default());
    }

    #[test]
    fn json_round_trips_and_rejects_unknown_names() {
        let config = valid();
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(TrainConfig::from_json(&json).unwrap(), config);
        let err = TrainConfig::from_json(r#"{"labels":"a.csv","optimizer":"adagrad"}"#).unwrap_err();
        assert!(err[0].message.contains("adagrad"), "{err:?}");
        // The form's names are accepted aliases; near misses are still refused by name.
        let aliased = TrainConfig::from_json(r#"{"labels":"a.csv","learning_rate":0.1,"model":"simple-cnn"}"#).unwrap();
        assert_eq!((aliased.lr, aliased.architecture), (0.1, Architecture::SimpleCnn));
        let err = TrainConfig::from_json(r#"{"labels":"a.csv","learn_rate":0.1}"#).unwrap_err();
        assert!(err[0].message.contains("learn_rate"), "{err:?}");
    }

    #[test]
    fn default_with_labels_is_valid() {
        assert_eq!(valid().validate(), Ok(()));
    }

    #[test]
    fn every_impossible_value_is_rejected_with_its_field() {
        type Edit = fn(&mut TrainConfig);
        let cases: &[(&str, Edit, &str)] = &[
            ("empty label path", |c| c.labels = Some(PathBuf::new()), "labels"),
            ("batch 0", |c| c.batch_size = 0, "batch_size"),
            ("huge batch", |c| c.batch_size = 100_000, "batch_size"),
            ("lr 0", |c| c.lr = 0.0, "lr"),
            ("lr negative", |c| c.lr = -0.1, "lr"),
            ("lr NaN", |c| c.lr = f64::NAN, "lr"),
            ("lr infinite", |c| c.lr = f64::INFINITY, "lr"),
            ("image too small", |c| c.image_size = 32, "image_size"),
            ("image too big", |c| c.image_size = 2048, "image_size"),
            ("epochs 0", |c| c.epochs = 0, "epochs"),
            ("val fraction 1", |c| c.val_fraction = 1.0, "val_fraction"),
            ("val fraction negative", |c| c.val_fraction = -0.1, "val_fraction"),
            ("test fraction NaN", |c| c.test_fraction = f32::NAN, "test_fraction"),
            (
                "fractions sum to 1",
                |c| {
                    c.val_fraction = 0.5;
                    c.test_fraction = 0.5
                },
                "test_fraction",
            ),
            ("width 0", |c| c.width = 0.0, "width"),
            ("width negative", |c| c.width = -1.0, "width"),
            ("dropout 1", |c| c.dropout = 1.0, "dropout"),
            ("dropout negative", |c| c.dropout = -0.5, "dropout"),
            ("balanced without N", |c| c.split = SplitStrategy::Balanced, "per_class"),
            ("per class 0", |c| c.per_class = Some(0), "per_class"),
            ("max images 0", |c| c.max_images = Some(0), "max_images"),
            ("momentum 1", |c| c.momentum = 1.0, "momentum"),
            ("nesterov with adam", |c| c.nesterov = true, "nesterov"),
            ("weight decay negative", |c| c.weight_decay = -1e-4, "weight_decay"),
            ("beta1 1", |c| c.beta1 = 1.0, "beta1"),
            ("beta2 negative", |c| c.beta2 = -0.1, "beta2"),
            ("warm-up as long as the run", |c| c.warmup_epochs = 10, "warmup_epochs"),
            ("step size 0", |c| c.step_size = 0, "step_size"),
            ("step gamma 0", |c| c.step_gamma = 0.0, "step_gamma"),
            (
                "cosine floor above lr",
                |c| {
                    c.schedule = ScheduleKind::Cosine;
                    c.min_lr = 1.0
                },
                "min_lr",
            ),
            ("plateau factor 1", |c| c.plateau_factor = 1.0, "plateau_factor"),
            ("grad clip 0", |c| c.grad_clip = Some(0.0), "grad_clip"),
            ("no step points", |c| c.step_points = 0, "step_points"),
            (
                "too many step points",
                |c| c.step_points = MAX_STEP_POINTS + 1,
                "step_points",
            ),
            ("focal gamma negative", |c| c.focal_gamma = -1.0, "focal_gamma"),
            ("focal alpha above 1", |c| c.focal_alpha = Some(1.5), "focal_alpha"),
            (
                "softmax with bce",
                |c| c.output_activation = Some(OutputActivation::Softmax),
                "output_activation",
            ),
            ("early stopping 0", |c| c.early_stopping = Some(0), "early_stopping"),
            ("threads 0", |c| c.threads = Some(0), "threads"),
            ("empty tag", |c| c.tags = vec![" ".into()], "tags"),
            ("rotation NaN", |c| c.augment.rotate_deg = f32::NAN, "aug_rotate"),
        ];
        for (what, edit, field) in cases {
            let mut config = valid();
            edit(&mut config);
            let errors = config.validate().expect_err(what);
            assert!(
                errors.iter().any(|e| e.field == *field && !e.message.is_empty()),
                "{what}: expected an error on {field}, got {errors:?}"
            );
        }
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let config = TrainConfig {
            batch_size: 0,
            epochs: 0,
            lr: -1.0,
            ..valid()
        };
        let fields: Vec<String> = config.validate().unwrap_err().into_iter().map(|e| e.field).collect();
        for f in ["batch_size", "epochs", "lr"] {
            assert!(fields.iter().any(|x| x == f), "{f} missing from {fields:?}");
        }
    }

    #[test]
    fn activation_follows_the_loss() {
        let mut c = valid();
        assert_eq!(c.activation(), OutputActivation::Sigmoid);
        c.loss = LossKind::Ce;
        assert_eq!(c.activation(), OutputActivation::Softmax);
        c.loss = LossKind::Mse;
        c.output_activation = Some(OutputActivation::Softmax);
        assert_eq!(c.activation(), OutputActivation::Softmax);
    }

    #[test]
    fn explicit_flags_override_a_base_config_and_defaults_do_not() {
        let base = TrainConfig {
            epochs: 30,
            lr: 0.05,
            architecture: Architecture::SimpleCnn,
            ..valid()
        };
        let matches = Cli::command()
            .try_get_matches_from(["x", "--epochs", "3", "--aug-hflip", "true"])
            .unwrap();
        let parsed = Cli::from_arg_matches(&matches).unwrap().config;
        let merged = TrainConfig::with_cli_overrides(&base, &parsed, &matches);
        assert_eq!(merged.epochs, 3);
        assert!(merged.augment.hflip);
        assert_eq!(merged.lr, 0.05, "lr was not given, the base value stays");
        assert_eq!(merged.architecture, Architecture::SimpleCnn);
    }

    #[test]
    fn monitor_direction() {
        assert!(Monitor::ValMeanAuroc.improves(0.8, Some(0.7)));
        assert!(!Monitor::ValMeanAuroc.improves(0.6, Some(0.7)));
        assert!(Monitor::ValLoss.improves(0.5, Some(0.7)));
        assert!(Monitor::ValLoss.improves(0.5, None));
        assert!(!Monitor::ValLoss.improves(f64::NAN, None));
    }
}
