//! What a run asks for: architecture, normalisation, width and dropout. Plain serde data, shared
//! by the CLI, the web form, the store and checkpoints; Burn configs are built from it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Architecture {
    /// The school project's small Keras CNN: conv blocks, dense layer, dropout.
    #[value(name = "simple-cnn")]
    SimpleCnn,
    /// Depthwise-separable inverted residuals (Sandler et al. 2018).
    #[value(name = "mobilenet-v2")]
    #[serde(rename = "mobilenet-v2")]
    MobileNetV2,
    #[value(name = "resnet-18")]
    #[serde(rename = "resnet-18")]
    ResNet18,
    #[value(name = "resnet-34")]
    #[serde(rename = "resnet-34")]
    ResNet34,
    #[value(name = "resnet-50")]
    #[serde(rename = "resnet-50")]
    ResNet50,
    /// CheXNet's model (Rajpurkar et al. 2017).
    #[value(name = "densenet-121")]
    #[serde(rename = "densenet-121")]
    DenseNet121,
    #[value(name = "efficientnet-b0")]
    #[serde(rename = "efficientnet-b0")]
    EfficientNetB0,
}

impl Architecture {
    pub const ALL: [Architecture; 7] = [
        Architecture::SimpleCnn,
        Architecture::MobileNetV2,
        Architecture::ResNet18,
        Architecture::ResNet34,
        Architecture::ResNet50,
        Architecture::DenseNet121,
        Architecture::EfficientNetB0,
    ];

    /// The name used on the command line, in forms, JSON and the store.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::SimpleCnn => "simple-cnn",
            Architecture::MobileNetV2 => "mobilenet-v2",
            Architecture::ResNet18 => "resnet-18",
            Architecture::ResNet34 => "resnet-34",
            Architecture::ResNet50 => "resnet-50",
            Architecture::DenseNet121 => "densenet-121",
            Architecture::EfficientNetB0 => "efficientnet-b0",
        }
    }
}

impl std::fmt::Display for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The normalisation layer used after convolutions (the school project wanted to try others).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum NormKind {
    #[default]
    Batch,
    Group,
    Layer,
    Instance,
}

/// Everything needed to build a model, besides the number of labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelSpec {
    pub architecture: Architecture,
    pub norm: NormKind,
    /// Channel width multiplier (1.0 = the published model); small values make CPU runs fast.
    pub width: f32,
    /// Dropout before the classifier head.
    pub dropout: f32,
}

impl Default for ModelSpec {
    fn default() -> Self {
        ModelSpec {
            architecture: Architecture::ResNet18,
            norm: NormKind::Batch,
            width: 1.0,
            dropout: 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_serde_and_clap() {
        use clap::ValueEnum;
        for arch in Architecture::ALL {
            let json = serde_json::to_string(&arch).unwrap();
            assert_eq!(json, format!("\"{}\"", arch.name()));
            assert_eq!(serde_json::from_str::<Architecture>(&json).unwrap(), arch);
            assert_eq!(Architecture::from_str(arch.name(), false).unwrap(), arch);
        }
    }
}
