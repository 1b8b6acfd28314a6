//! Named starting configurations shared by the CLI (`--preset NAME`, explicit flags override) and
//! the web form. Presets leave the data paths empty: the user picks the data set.

use crate::model::{Architecture, NormKind};

use super::config::{DeviceChoice, LossKind, Monitor, OptimizerKind, OutputActivation, ScheduleKind, TrainConfig};

/// A preset's name (as typed) and one line for the form and `--help`.
pub const PRESETS: [(&str, &str); 4] = [
    (
        "quick-demo",
        "Small CNN at 64 px on the CPU: about a minute on the synthetic demo set",
    ),
    (
        "school-project",
        "The school project's setup: simple CNN, SGD, MSE on softmax outputs, batch 2",
    ),
    (
        "chexnet",
        "CheXNet (Rajpurkar et al. 2017): DenseNet-121, Adam 1e-3, weighted BCE, 224 px",
    ),
    (
        "mobilenet-v2",
        "MobileNetV2 at 224 px with AdamW and a cosine schedule: fast on a GPU",
    ),
];

/// The preset called `name`, or `None` (see [`PRESETS`] for the names).
pub fn preset(name: &str) -> Option<TrainConfig> {
    let base = TrainConfig::default();
    let config = match name {
        // A narrow simple CNN at the smallest accepted size: on 2 CPU cores an epoch of the demo
        // set takes about 7 s (Burn 0.22), and the demo's synthetic findings are large enough to
        // see at 64 px.
        "quick-demo" => TrainConfig {
            image_size: 64,
            architecture: Architecture::SimpleCnn,
            norm: NormKind::Batch,
            width: 0.5,
            // Eight epochs leave little to overfit: without dropout the run crosses 0.90 mean
            // validation AUROC at epoch 7 (0.9045), where dropout 0.1 needed 8 of 10 epochs.
            dropout: 0.0,
            epochs: 8,
            batch_size: 32,
            optimizer: OptimizerKind::Adam,
            lr: 3e-3,
            schedule: ScheduleKind::Cosine,
            warmup_epochs: 1,
            loss: LossKind::Bce,
            pos_weight: true,
            device: DeviceChoice::Cpu,
            tags: vec!["demo".into()],
            ..base
        },
        // Reproduces the school project's failure: MSE on softmax outputs gives tiny gradients for
        // multi-label targets, and batch 2 makes batch norm statistics noise.
        "school-project" => TrainConfig {
            image_size: 128,
            architecture: Architecture::SimpleCnn,
            norm: NormKind::Batch,
            width: 1.0,
            dropout: 0.5,
            epochs: 10,
            batch_size: 2,
            optimizer: OptimizerKind::Sgd,
            lr: 0.01,
            momentum: 0.0,
            loss: LossKind::Mse,
            output_activation: Some(OutputActivation::Softmax),
            pos_weight: false,
            augment: crate::data::augment::AugmentConfig {
                enabled: false,
                ..Default::default()
            },
            tags: vec!["school-project".into()],
            ..base
        },
        // Rajpurkar et al. 2017: DenseNet-121, 224 px, Adam (beta 0.9/0.999) at 1e-3, weighted
        // BCE, learning rate divided by 10 when validation loss plateaus, batch 16, random flips.
        "chexnet" => TrainConfig {
            image_size: 224,
            architecture: Architecture::DenseNet121,
            norm: NormKind::Batch,
            width: 1.0,
            epochs: 20,
            batch_size: 16,
            optimizer: OptimizerKind::Adam,
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            schedule: ScheduleKind::Plateau,
            plateau_factor: 0.1,
            plateau_patience: 1,
            loss: LossKind::Bce,
            pos_weight: true,
            checkpoint_metric: Monitor::ValLoss,
            augment: crate::data::augment::AugmentConfig {
                hflip: true,
                ..Default::default()
            },
            tags: vec!["chexnet".into()],
            ..base
        },
        "mobilenet-v2" => TrainConfig {
            image_size: 224,
            architecture: Architecture::MobileNetV2,
            norm: NormKind::Batch,
            width: 1.0,
            dropout: 0.2,
            epochs: 15,
            batch_size: 32,
            optimizer: OptimizerKind::AdamW,
            lr: 1e-3,
            weight_decay: 1e-4,
            schedule: ScheduleKind::Cosine,
            warmup_epochs: 1,
            loss: LossKind::Bce,
            pos_weight: true,
            early_stopping: Some(4),
            tags: vec!["mobilenet".into()],
            ..base
        },
        _ => return None,
    };
    Some(config)
}

/// The new-run form's starting configuration on a machine without a usable GPU: the quick-demo
/// model, size and schedule (a few minutes on the demo set on two CPU cores; BENCHMARKS.md
/// "CPU defaults"), left on `auto` so that it follows the machine, and untagged. The full
/// [`TrainConfig::default`] (resnet-18 at 224 px) would take hours there.
pub fn cpu_sized() -> TrainConfig {
    let demo = preset("quick-demo").expect("quick-demo is a preset");
    TrainConfig {
        device: DeviceChoice::Auto,
        tags: Vec::new(),
        ..demo
    }
}

/// A preset name that is not one of [`PRESETS`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown preset {name:?}; choose one of: {}", PRESETS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "))]
pub struct UnknownPreset {
    pub name: String,
}

/// The preset, or an error listing the names there are.
pub fn preset_or_error(name: &str) -> Result<TrainConfig, UnknownPreset> {
    preset(name).ok_or_else(|| UnknownPreset { name: name.into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_valid_once_data_is_chosen() {
        for (name, about) in PRESETS {
            assert!(!about.is_empty());
            let mut config = preset(name).unwrap_or_else(|| panic!("{name} listed but not defined"));
            config.labels = Some("labels.csv".into());
            assert_eq!(config.validate(), Ok(()), "{name}");
        }
    }

    #[test]
    fn presets_say_what_they_promise() {
        let school = preset("school-project").unwrap();
        assert_eq!(
            (
                school.architecture,
                school.optimizer,
                school.loss,
                school.activation(),
                school.batch_size
            ),
            (
                Architecture::SimpleCnn,
                OptimizerKind::Sgd,
                LossKind::Mse,
                OutputActivation::Softmax,
                2
            )
        );
        let chexnet = preset("chexnet").unwrap();
        assert_eq!(
            (
                chexnet.architecture,
                chexnet.optimizer,
                chexnet.lr,
                chexnet.loss,
                chexnet.image_size
            ),
            (Architecture::DenseNet121, OptimizerKind::Adam, 1e-3, LossKind::Bce, 224)
        );
        let demo = preset("quick-demo").unwrap();
        assert_eq!((demo.image_size, demo.device), (64, DeviceChoice::Cpu));
        assert_eq!(preset("mobilenet-v2").unwrap().architecture, Architecture::MobileNetV2);
    }

    #[test]
    fn the_cpu_sized_default_is_the_quick_demo_on_auto() {
        let cpu = cpu_sized();
        let demo = preset("quick-demo").unwrap();
        assert_eq!(
            (cpu.architecture, cpu.image_size, cpu.epochs),
            (demo.architecture, 64, demo.epochs)
        );
        assert_eq!(cpu.device, DeviceChoice::Auto, "follows the machine");
        assert!(cpu.tags.is_empty());
        assert_ne!(cpu.architecture, TrainConfig::default().architecture);
    }

    #[test]
    fn unknown_preset_lists_the_names() {
        let err = preset_or_error("fast").unwrap_err();
        assert_eq!(err.name, "fast");
        let message = err.to_string();
        assert!(
            message.contains("quick-demo") && message.contains("chexnet"),
            "{message}"
        );
    }
}
