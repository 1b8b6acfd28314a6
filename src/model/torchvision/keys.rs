//! Where each tensor of a cxr8 model sits in torchvision's `state_dict` of the same architecture,
//! and how its layout differs. The Burn side is the module path as `ModuleSnapshot::collect`
//! names it, enum variants included (`backbone.ResNet.blocks.2.conv.norm.Batch.gamma`).

use super::super::Architecture;

/// How a torchvision tensor becomes the cxr8 one (import) and back (export).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Same shape and order.
    Same,
    /// The first convolution: torchvision's `[C, 3, k, k]` (RGB) is cxr8's `[C, 1, k, k]` (gray),
    /// folded by summing over the input channels — exact for a gray image repeated on three
    /// channels. A 1-channel stem is taken as is.
    Stem,
    /// A linear layer's weight: torch `[out, in]`, Burn `[in, out]`.
    Linear,
    /// EfficientNet's squeeze-excitation weights: torchvision uses 1×1 convolutions
    /// `[out, in, 1, 1]` where cxr8 uses linear layers `[in, out]` (the same map on a 1×1 input).
    ConvAsLinear,
}

/// One tensor's torchvision key and layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorchKey {
    pub key: String,
    pub layout: Layout,
    /// The classifier head (kept only when its shape matches the run's labels).
    pub head: bool,
}

/// The architectures with a torchvision counterpart (simple-cnn has none).
pub fn supported(arch: Architecture) -> bool {
    arch != Architecture::SimpleCnn
}

/// The torchvision key of a cxr8 tensor; `None` for a path that has no counterpart (which is a
/// bug in this table: every tensor of the six architectures maps, see the tests).
pub fn torch_key(arch: Architecture, burn_path: &str) -> Option<TorchKey> {
    if let Some(leaf) = burn_path.strip_prefix("head.") {
        let module = match arch {
            Architecture::ResNet18 | Architecture::ResNet34 | Architecture::ResNet50 => "fc",
            Architecture::DenseNet121 => "classifier",
            Architecture::MobileNetV2 | Architecture::EfficientNetB0 => "classifier.1",
            Architecture::SimpleCnn => return None,
        };
        return Some(TorchKey {
            key: format!("{module}.{leaf}"),
            layout: if leaf == "weight" { Layout::Linear } else { Layout::Same },
            head: true,
        });
    }
    let inner = burn_path.strip_prefix("backbone.")?;
    let (_variant, inner) = inner.split_once('.')?;
    let parts: Vec<&str> = inner.split('.').collect();
    let (module, layout) = match arch {
        Architecture::ResNet18 | Architecture::ResNet34 | Architecture::ResNet50 => resnet(arch, &parts)?,
        Architecture::DenseNet121 => densenet(&parts)?,
        Architecture::MobileNetV2 => mobilenet(&parts)?,
        Architecture::EfficientNetB0 => efficientnet(&parts)?,
        Architecture::SimpleCnn => return None,
    };
    let leaf = torch_leaf(parts.last()?);
    Some(TorchKey {
        key: format!("{module}.{leaf}"),
        layout: if layout == Layout::Same || leaf == "weight" {
            layout
        } else {
            Layout::Same
        },
        head: false,
    })
}

/// Burn's batch norm names its affine parameters `gamma`/`beta`; torch `weight`/`bias`.
fn torch_leaf(leaf: &str) -> &str {
    match leaf {
        "gamma" => "weight",
        "beta" => "bias",
        other => other,
    }
}

/// A `ConvNorm` (`x.conv.weight`, `x.norm.Batch.*`) at `parts[at..]` as torch's
/// `(conv module, norm module)` pair.
fn conv_or_norm<'a>(parts: &[&str], at: usize, conv: &'a str, norm: &'a str) -> Option<&'a str> {
    match *parts.get(at)? {
        "conv" => Some(conv),
        "norm" => Some(norm),
        _ => None,
    }
}

/// The stage and the block within it of flat block `k`, given blocks per stage.
fn stage_of(k: usize, per_stage: &[usize]) -> Option<(usize, usize)> {
    let mut start = 0;
    for (stage, &n) in per_stage.iter().enumerate() {
        if k < start + n {
            return Some((stage, k - start));
        }
        start += n;
    }
    None
}

fn resnet(arch: Architecture, parts: &[&str]) -> Option<(String, Layout)> {
    let bottleneck = arch == Architecture::ResNet50;
    let per_stage: &[usize] = if arch == Architecture::ResNet18 {
        &[2, 2, 2, 2]
    } else {
        &[3, 4, 6, 3]
    };
    match *parts.first()? {
        "stem" => {
            let module = conv_or_norm(parts, 1, "conv1", "bn1")?;
            let layout = if module == "conv1" { Layout::Stem } else { Layout::Same };
            Some((module.to_string(), layout))
        }
        "blocks" => {
            let k: usize = parts.get(1)?.parse().ok()?;
            let (stage, i) = stage_of(k, per_stage)?;
            let prefix = format!("layer{}.{i}", stage + 1);
            let (conv, norm) = match (*parts.get(2)?, bottleneck) {
                ("reduce", true) => ("conv1", "bn1"),
                ("conv", true) => ("conv2", "bn2"),
                ("out", true) => ("conv3", "bn3"),
                ("conv", false) => ("conv1", "bn1"),
                ("out", false) => ("conv2", "bn2"),
                ("shortcut", _) => ("downsample.0", "downsample.1"),
                _ => return None,
            };
            Some((
                format!("{prefix}.{}", conv_or_norm(parts, 3, conv, norm)?),
                Layout::Same,
            ))
        }
        _ => None,
    }
}

fn densenet(parts: &[&str]) -> Option<(String, Layout)> {
    match *parts.first()? {
        // A bare convolution: `stem.weight`.
        "stem" => Some(("features.conv0".into(), Layout::Stem)),
        "stem_norm" => Some(("features.norm0".into(), Layout::Same)),
        "final_norm" => Some(("features.norm5".into(), Layout::Same)),
        "blocks" => {
            let block: usize = parts.get(1)?.parse().ok()?;
            let layer: usize = parts.get(3)?.parse().ok()?;
            let role = *parts.get(4)?;
            if !["norm1", "conv1", "norm2", "conv2"].contains(&role) || parts.get(2) != Some(&"layers") {
                return None;
            }
            Some((
                format!("features.denseblock{}.denselayer{}.{role}", block + 1, layer + 1),
                Layout::Same,
            ))
        }
        "transitions" => {
            let t: usize = parts.get(1)?.parse().ok()?;
            let role = *parts.get(2)?;
            if role != "norm" && role != "conv" {
                return None;
            }
            Some((format!("features.transition{}.{role}", t + 1), Layout::Same))
        }
        _ => None,
    }
}

/// torchvision's index of each part of an inverted-residual block's `Sequential`, which shifts
/// when the block has no expansion (its first block, expansion factor 1).
fn inverted_residual_index(role: &str, expands: bool) -> Option<usize> {
    let shift = usize::from(expands);
    match role {
        "expand" if expands => Some(0),
        "depthwise" => Some(shift),
        "squeeze_excite" => Some(1 + shift),
        _ => None,
    }
}

/// A `ConvNorm` at `parts[0]` as torchvision's `features.{index}` `Conv2dNormActivation` (`.0`
/// the conv, `.1` the norm); the stem's conv is the one folded from RGB.
fn features_conv_norm(parts: &[&str], index: usize, stem: bool) -> Option<(String, Layout)> {
    let module = format!("features.{index}.{}", conv_or_norm(parts, 1, "0", "1")?);
    let layout = if stem && parts[1] == "conv" {
        Layout::Stem
    } else {
        Layout::Same
    };
    Some((module, layout))
}

fn mobilenet(parts: &[&str]) -> Option<(String, Layout)> {
    match *parts.first()? {
        "stem" => features_conv_norm(parts, 0, true),
        "last" => features_conv_norm(parts, 18, false),
        "blocks" => {
            let k: usize = parts.get(1)?.parse().ok()?;
            let expands = k > 0;
            let role = *parts.get(2)?;
            let prefix = format!("features.{}.conv", k + 1);
            let shift = usize::from(expands);
            // Expand and depthwise are `Conv2dNormActivation`s (`.0` conv, `.1` norm); the
            // projection is a bare conv with its norm at the next index.
            let module = match (role, *parts.get(3)?) {
                ("project", "conv") => format!("{prefix}.{}", 1 + shift),
                ("project", "norm") => format!("{prefix}.{}", 2 + shift),
                (role, part) => format!(
                    "{prefix}.{}.{}",
                    inverted_residual_index(role, expands)?,
                    conv_or_norm(&[part], 0, "0", "1")?
                ),
            };
            Some((module, Layout::Same))
        }
        _ => None,
    }
}

/// EfficientNet-B0's blocks per stage (torchvision's `features.1` … `features.7`).
const EFFICIENTNET_B0_STAGES: [usize; 7] = [1, 2, 2, 3, 3, 4, 1];

fn efficientnet(parts: &[&str]) -> Option<(String, Layout)> {
    match *parts.first()? {
        "stem" => features_conv_norm(parts, 0, true),
        "head" => features_conv_norm(parts, 8, false),
        "blocks" => {
            let k: usize = parts.get(1)?.parse().ok()?;
            let (stage, j) = stage_of(k, &EFFICIENTNET_B0_STAGES)?;
            let expands = stage > 0;
            let role = *parts.get(2)?;
            let prefix = format!("features.{}.{j}.block", stage + 1);
            match role {
                "squeeze_excite" => {
                    let fc = match *parts.get(3)? {
                        "reduce" => "fc1",
                        "expand" => "fc2",
                        _ => return None,
                    };
                    let index = inverted_residual_index(role, expands)?;
                    Some((format!("{prefix}.{index}.{fc}"), Layout::ConvAsLinear))
                }
                "project" => {
                    let index = 2 + usize::from(expands);
                    Some((
                        format!("{prefix}.{index}.{}", conv_or_norm(parts, 3, "0", "1")?),
                        Layout::Same,
                    ))
                }
                _ => {
                    let index = inverted_residual_index(role, expands)?;
                    Some((
                        format!("{prefix}.{index}.{}", conv_or_norm(parts, 3, "0", "1")?),
                        Layout::Same,
                    ))
                }
            }
        }
        _ => None,
    }
}
