//! On-the-fly augmentation settings (applied by the loader to training batches only).

use serde::{Deserialize, Serialize};

/// Defaults are mild: chest films vary a little in positioning and exposure, and the heart is on
/// the patient's left, so horizontal flips are off unless asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct AugmentConfig {
    /// Enable augmentation of training batches.
    #[arg(long = "augment", default_value_t = true, action = clap::ArgAction::Set)]
    pub enabled: bool,
    /// Random horizontal flips (anatomy is not symmetric: off by default).
    #[arg(long = "aug-hflip", default_value_t = false, action = clap::ArgAction::Set)]
    pub hflip: bool,
    /// Maximum rotation, degrees.
    #[arg(long = "aug-rotate", default_value_t = 5.0)]
    pub rotate_deg: f32,
    /// Maximum translation, fraction of the image side.
    #[arg(long = "aug-translate", default_value_t = 0.05)]
    pub translate: f32,
    /// Maximum relative zoom in or out.
    #[arg(long = "aug-scale", default_value_t = 0.05)]
    pub scale: f32,
    /// Maximum brightness shift, fraction of full range.
    #[arg(long = "aug-brightness", default_value_t = 0.1)]
    pub brightness: f32,
    /// Maximum relative contrast change.
    #[arg(long = "aug-contrast", default_value_t = 0.1)]
    pub contrast: f32,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            enabled: true,
            hflip: false,
            rotate_deg: 5.0,
            translate: 0.05,
            scale: 0.05,
            brightness: 0.1,
            contrast: 0.1,
        }
    }
}
