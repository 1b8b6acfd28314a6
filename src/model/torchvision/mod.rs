//! Weights in torchvision's layout: reading a PyTorch `state_dict` (`torch.save` zip `.pth`/`.pt`,
//! or `.safetensors`; f32, f16 or bf16) into a cxr8 model, and writing a cxr8 model back as a
//! safetensors file torchvision's model loads. The files are read with Burn's own stores
//! (`burn::store`); the key table is in [`keys`].

mod keys;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::store::{ModuleSnapshot, ModuleStore, PytorchStore, SafetensorsStore};

pub use keys::{supported, torch_key, Layout, TorchKey};

use super::{Architecture, Classifier, ModelSpec, NormKind};

/// Something that stops an import or export; every message names the key and the shapes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: cannot read it as a PyTorch state_dict (.pth/.pt saved by torch.save) or a .safetensors file: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path}: holds no tensors")]
    Empty { path: PathBuf },
    #[error(
        "{architecture} has no torchvision counterpart: import and export cover resnet-18/34/50, \
         densenet-121, mobilenet-v2 and efficientnet-b0"
    )]
    Unsupported { architecture: Architecture },
    #[error(
        "torchvision weights fit only the torchvision architecture: width 1.0 and batch norm \
         (this model has width {width} and {norm:?} norm)"
    )]
    NotTorchvisionShaped { width: f32, norm: NormKind },
    #[error("{path}: missing '{key}' (the {architecture} model needs it with shape {shape:?}); is it a torchvision {architecture} state_dict?")]
    Missing {
        path: PathBuf,
        key: String,
        architecture: Architecture,
        shape: Vec<usize>,
    },
    #[error("{path}: '{key}' has shape {found:?}, the {architecture} model needs {expected:?}")]
    Shape {
        path: PathBuf,
        key: String,
        architecture: Architecture,
        found: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("{path}: {} tensor(s) that {architecture} does not have: {}", keys.len(), keys.join(", "))]
    Extra {
        path: PathBuf,
        architecture: Architecture,
        keys: Vec<String>,
    },
    #[error("{path}: '{key}' is stored as {dtype}; only f32, f16 and bf16 weights are read")]
    DType { path: PathBuf, key: String, dtype: String },
    #[error("cxr8 has no torchvision key for its tensor '{0}' (a bug: please report it)")]
    Unmapped(String),
    #[error("applying the weights failed: {0}")]
    Apply(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Tensors by key, each as (shape, values row-major) in f32.
pub type Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// A state_dict read into memory as f32.
#[derive(Debug, Clone)]
pub struct StateDict {
    pub source: PathBuf,
    pub tensors: Tensors,
}

/// Buffers torch keeps that carry no weights (batch norm's update counter).
fn is_bookkeeping(key: &str) -> bool {
    key.ends_with("num_batches_tracked")
}

impl StateDict {
    /// Reads a `.safetensors` file, or anything else as a `torch.save` file (a bare state_dict,
    /// or one under a `state_dict` / `model` key as training scripts often save them).
    pub fn read(path: &Path) -> Result<StateDict> {
        let read_error = |message: String| Error::Read {
            path: path.to_path_buf(),
            message,
        };
        let is_safetensors = path.extension().and_then(|e| e.to_str()) == Some("safetensors");
        let tensors = if is_safetensors {
            let mut store = SafetensorsStore::from_file(path);
            store.get_all_tensors().map_err(|e| read_error(e.to_string()))?.clone()
        } else {
            let mut found = BTreeMap::new();
            for top in [None, Some("state_dict"), Some("model")] {
                // Indices as in the file: torchvision's are not contiguous (a dropout has no tensors).
                let mut store = PytorchStore::from_file(path).map_indices_contiguous(false);
                if let Some(key) = top {
                    store = store.with_top_level_key(key);
                }
                match store.get_all_tensors() {
                    Ok(tensors) if !tensors.is_empty() => {
                        found = tensors.clone();
                        break;
                    }
                    Ok(_) => {}
                    Err(e) if top.is_none() => return Err(read_error(e.to_string())),
                    Err(_) => {}
                }
            }
            found
        };
        if tensors.is_empty() {
            return Err(Error::Empty {
                path: path.to_path_buf(),
            });
        }
        let mut out = BTreeMap::new();
        for (key, tensor) in tensors {
            if is_bookkeeping(&key) {
                continue;
            }
            let dtype = tensor.dtype;
            if !matches!(
                dtype,
                burn::tensor::DType::F32
                    | burn::tensor::DType::F16
                    | burn::tensor::DType::BF16
                    | burn::tensor::DType::F64
            ) {
                return Err(Error::DType {
                    path: path.to_path_buf(),
                    key,
                    dtype: format!("{dtype:?}"),
                });
            }
            let data = burn::store::bridge::into_data(tensor).map_err(|e| read_error(format!("'{key}': {e}")))?;
            let shape = data.shape().to_vec();
            let values: Vec<f32> = data
                .convert::<f32>()
                .try_to_vec::<f32>()
                .map_err(|e| read_error(format!("'{key}': {e:?}")))?;
            out.insert(legacy_densenet_key(&key), (shape, values));
        }
        Ok(StateDict {
            source: path.to_path_buf(),
            tensors: out,
        })
    }
}

/// torchvision's published DenseNet weights predate its current names: `denselayer1.norm.1.weight`
/// is today's `denselayer1.norm1.weight` (torchvision renames them the same way when it loads them).
fn legacy_densenet_key(key: &str) -> String {
    if !key.contains("denselayer") {
        return key.to_string();
    }
    let mut key = key.to_string();
    for role in ["norm", "relu", "conv"] {
        for n in ["1", "2"] {
            key = key.replace(&format!(".{role}.{n}."), &format!(".{role}{n}."));
        }
    }
    key
}

/// What an import did besides loading every tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub tensors: usize,
    /// Whether the file's classifier head was kept; otherwise the model's own (freshly
    /// initialised) head stays, with `head_reason` saying why.
    pub head_kept: bool,
    pub head_reason: Option<String>,
    /// Whether the file's stem had three input channels (folded to one by summing).
    pub stem_folded: bool,
}

/// The torch shape that holds the tensor a cxr8 tensor of `shape` comes from.
fn torch_shape(layout: Layout, shape: &[usize]) -> Vec<usize> {
    match layout {
        Layout::Same => shape.to_vec(),
        Layout::Stem => vec![shape[0], 3, shape[2], shape[3]],
        Layout::Linear => vec![shape[1], shape[0]],
        Layout::ConvAsLinear => vec![shape[1], shape[0], 1, 1],
    }
}

/// `[rows, cols]` row-major → `[cols, rows]`.
fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}

/// The cxr8 values of a tensor of shape `target` from the file's `(shape, values)`; `None` when
/// the shapes do not correspond.
fn to_cxr8(layout: Layout, (shape, values): &(Vec<usize>, Vec<f32>), target: &[usize]) -> Option<Vec<f32>> {
    match layout {
        Layout::Same => (shape.as_slice() == target).then(|| values.clone()),
        Layout::Stem => {
            let [out, channels, kh, kw] = shape.as_slice() else {
                return None;
            };
            if [*out, 1, *kh, *kw] != *target {
                return None;
            }
            match channels {
                1 => Some(values.clone()),
                // Σ over RGB: a gray image repeated on three channels gives the same output.
                3 => {
                    let plane = kh * kw;
                    let mut folded = vec![0.0f32; out * plane];
                    for o in 0..*out {
                        for c in 0..3 {
                            let from = &values[(o * 3 + c) * plane..(o * 3 + c + 1) * plane];
                            for (sum, v) in folded[o * plane..(o + 1) * plane].iter_mut().zip(from) {
                                *sum += v;
                            }
                        }
                    }
                    Some(folded)
                }
                _ => None,
            }
        }
        Layout::Linear | Layout::ConvAsLinear => {
            let (out, inputs) = match shape.as_slice() {
                [out, inputs] if layout == Layout::Linear => (*out, *inputs),
                [out, inputs, 1, 1] if layout == Layout::ConvAsLinear => (*out, *inputs),
                _ => return None,
            };
            ([inputs, out] == *target).then(|| transpose(values, out, inputs))
        }
    }
}

/// Checks that a model can take or give torchvision weights.
pub fn check_spec(spec: &ModelSpec) -> Result<()> {
    if !supported(spec.architecture) {
        return Err(Error::Unsupported {
            architecture: spec.architecture,
        });
    }
    if spec.width != 1.0 || spec.norm != NormKind::Batch {
        return Err(Error::NotTorchvisionShaped {
            width: spec.width,
            norm: spec.norm,
        });
    }
    Ok(())
}

/// Loads a torchvision state_dict into `model` (built from `spec`). Every tensor must be there
/// with its shape, and the file must have nothing else; the classifier head alone is taken only
/// when its shape fits the model's labels, and otherwise left as initialised (reported).
pub fn import(model: Classifier, spec: &ModelSpec, dict: &StateDict) -> Result<(Classifier, ImportReport)> {
    check_spec(spec)?;
    let architecture = spec.architecture;
    let path = dict.source.clone();
    let mut used = BTreeSet::new();
    let mut loaded = Vec::new();
    let mut head = Vec::new();
    let mut head_problem = None;
    let mut stem_folded = false;
    for snapshot in model.collect(None, None, false) {
        let name = snapshot.name.clone();
        let target = snapshot.shape.to_vec();
        let torch = torch_key(architecture, &name).ok_or_else(|| Error::Unmapped(name.clone()))?;
        let expected = torch_shape(torch.layout, &target);
        let Some(found) = dict.tensors.get(&torch.key) else {
            if torch.head {
                head_problem = Some(format!("the file has no '{}'", torch.key));
                continue;
            }
            return Err(Error::Missing {
                path,
                key: torch.key,
                architecture,
                shape: expected,
            });
        };
        used.insert(torch.key.clone());
        let values = to_cxr8(torch.layout, found, &target);
        if torch.layout == Layout::Stem && found.0.get(1) == Some(&3) {
            stem_folded = true;
        }
        match (values, torch.head) {
            (Some(values), false) => loaded.push(burn::store::bridge::from_data(
                TensorData::new(values, target),
                name,
                None,
            )),
            (Some(values), true) => head.push(burn::store::bridge::from_data(
                TensorData::new(values, target),
                name,
                None,
            )),
            // The weight's shapes say the most ([outputs, features]); named in preference.
            (None, true) if head_problem.is_none() || torch.key.ends_with("weight") => {
                head_problem = Some(format!(
                    "the file's '{}' has shape {:?}, this model's head needs {expected:?} (its labels differ)",
                    torch.key, found.0
                ))
            }
            (None, true) => {}
            (None, false) => {
                return Err(Error::Shape {
                    path,
                    key: torch.key,
                    architecture,
                    found: found.0.clone(),
                    expected,
                })
            }
        }
    }
    let extra: Vec<String> = dict.tensors.keys().filter(|k| !used.contains(*k)).cloned().collect();
    if !extra.is_empty() {
        return Err(Error::Extra {
            path,
            architecture,
            keys: extra,
        });
    }
    let tensors = loaded.len() + if head_problem.is_none() { head.len() } else { 0 };
    if head_problem.is_none() {
        loaded.extend(head);
    }
    let mut model = model;
    let result = model.apply(loaded, None, None, false);
    if !result.errors.is_empty() {
        return Err(Error::Apply(result.to_string()));
    }
    Ok((
        model,
        ImportReport {
            tensors,
            head_kept: head_problem.is_none(),
            head_reason: head_problem,
            stem_folded,
        },
    ))
}

/// The model's tensors under torchvision's keys and layout (the stem stays one-channel), ready
/// for a safetensors file.
pub fn export(model: &Classifier, spec: &ModelSpec) -> Result<Tensors> {
    check_spec(spec)?;
    let mut out = BTreeMap::new();
    for snapshot in model.collect(None, None, false) {
        let name = snapshot.name.clone();
        let torch = torch_key(spec.architecture, &name).ok_or_else(|| Error::Unmapped(name.clone()))?;
        let shape = snapshot.shape.to_vec();
        let data = burn::store::bridge::into_data(snapshot).map_err(|e| Error::Apply(format!("'{name}': {e}")))?;
        let values: Vec<f32> = data
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| Error::Apply(format!("'{name}': {e:?}")))?;
        let (shape, values) = match torch.layout {
            Layout::Same | Layout::Stem => (shape, values),
            Layout::Linear => (vec![shape[1], shape[0]], transpose(&values, shape[0], shape[1])),
            Layout::ConvAsLinear => (vec![shape[1], shape[0], 1, 1], transpose(&values, shape[0], shape[1])),
        };
        out.insert(torch.key, (shape, values));
    }
    Ok(out)
}

/// A safetensors file of f32 tensors with string metadata (what `export` gives, plus the run's
/// `architecture`, `labels`, `image_size`, `mean`, `std`).
pub fn safetensors_bytes(tensors: &Tensors, metadata: &BTreeMap<String, String>) -> Result<Vec<u8>> {
    // safetensors stores little-endian bytes; an export is written once, so a copy is fine.
    let bytes: Vec<(&String, &Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(key, (shape, values))| (key, shape, values.iter().flat_map(|v| v.to_le_bytes()).collect()))
        .collect();
    let views = bytes
        .iter()
        .map(|(key, shape, bytes)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.to_vec(), bytes)
                .map(|view| (key.to_string(), view))
                .map_err(|e| Error::Apply(format!("'{key}': {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata: std::collections::HashMap<String, String> = metadata.clone().into_iter().collect();
    safetensors::serialize(views, Some(metadata)).map_err(|e| Error::Apply(e.to_string()))
}

#[cfg(test)]
mod tests;
