//! PyTorch / torchvision weights in and out of cxr8 checkpoints: `cxr8 import` turns a state_dict
//! into a checkpoint folder every `--checkpoint` accepts, `cxr8 export` and
//! `GET /runs/{id}/weights.safetensors` write a checkpoint in torchvision's layout, and a run with
//! `init_weights` starts from a state_dict.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;

use crate::model::torchvision::{self, ImportReport, StateDict};
use crate::model::{Architecture, Classifier, ModelSpec};
use crate::train::checkpoint::{self, CheckpointState, InferenceInfo, RunCheckpoints, Slot, FORMAT_VERSION};
use crate::train::config::TrainConfig;
use crate::train::optim::Schedule;
use crate::train::predict::CheckpointRef;
use crate::train::{Error, Result};

/// torchvision's ImageNet normalisation, per RGB channel (`transforms.Normalize`).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// One mean and std for gray images fed to an ImageNet model whose stem is folded: the averages
/// of the RGB constants (the three channels of a gray image are equal).
pub fn imagenet_gray() -> (f32, f32) {
    (
        IMAGENET_MEAN.iter().sum::<f32>() / 3.0,
        IMAGENET_STD.iter().sum::<f32>() / 3.0,
    )
}

/// What `cxr8 import` is asked to make.
#[derive(Debug, Clone)]
pub struct ImportRequest {
    pub weights: PathBuf,
    pub architecture: Architecture,
    pub image_size: u32,
    pub mean: f32,
    pub std: f32,
    /// Output names; `None`: as many as the file's head has outputs, named `output 0`, ….
    pub labels: Option<Vec<String>>,
    /// The checkpoint folder to write (a run folder: `--checkpoint DIR` accepts it).
    pub out: PathBuf,
}

/// Reads a state_dict into a fresh model of `spec` with `labels` outputs, on the CPU.
pub fn import_into(
    spec: &ModelSpec,
    labels: usize,
    weights: &Path,
    device: &Device,
) -> Result<(Classifier, ImportReport)> {
    torchvision::check_spec(spec)?;
    let dict = StateDict::read(weights)?;
    let model = Classifier::new(spec, labels, device);
    Ok(torchvision::import(model, spec, &dict)?)
}

/// The number of outputs of a state_dict's classifier head, if it has one.
fn head_outputs(architecture: Architecture, dict: &StateDict) -> Option<usize> {
    let key = torchvision::torch_key(architecture, "head.bias")?.key;
    dict.tensors.get(&key).map(|(shape, _)| shape[0])
}

/// Writes a checkpoint folder holding the imported weights as epoch 0 (best and last).
pub fn import_checkpoint(request: &ImportRequest) -> Result<(PathBuf, ImportReport, Vec<String>)> {
    let config = TrainConfig {
        architecture: request.architecture,
        image_size: request.image_size,
        init_weights: Some(request.weights.clone()),
        ..TrainConfig::default()
    };
    let spec = config.model_spec();
    torchvision::check_spec(&spec)?;
    let dict = StateDict::read(&request.weights)?;
    let labels = match &request.labels {
        Some(labels) => labels.clone(),
        None => {
            let outputs = head_outputs(request.architecture, &dict).ok_or_else(|| {
                Error::WeightsUsage(format!(
                    "{}: no classifier head to count outputs from; give --labels",
                    request.weights.display()
                ))
            })?;
            (0..outputs).map(|i| format!("output {i}")).collect()
        }
    };
    let device = Device::flex();
    let model = Classifier::new(&spec, labels.len(), &device);
    let (model, report) = torchvision::import(model, &spec, &dict)?;
    let run_id = request
        .out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "imported".into());
    let parent = request.out.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(&request.out).map_err(|e| Error::io(&request.out, e))?;
    let state = CheckpointState {
        format: FORMAT_VERSION,
        run_id: run_id.clone(),
        config: config.clone(),
        epoch: 0,
        train_metrics: serde_json::Value::Null,
        val_metrics: serde_json::Value::Null,
        schedule: Schedule::from_config(&config),
        best_epoch: Some(0),
        best_metric: None,
        early_stop_best: None,
        epochs_without_improvement: 0,
        pos_weight: None,
        num_labels: labels.len(),
        inference: Some(InferenceInfo {
            labels: labels.clone(),
            image_size: request.image_size,
            mean: request.mean,
            std: request.std,
        }),
        clock: None,
    };
    let ckpts = RunCheckpoints::new(parent, &run_id);
    let dir = ckpts.save_epoch(&model, &[], &state, None)?;
    ckpts.point(Slot::Best, 0)?;
    ckpts.point(Slot::Last, 0)?;
    Ok((dir, report, labels))
}

/// A checkpoint's weights as a safetensors file in torchvision's key layout (one-channel stem,
/// the run's head), with string metadata `architecture`, `labels` (JSON array, output order),
/// `image_size`, `mean`, `std`.
pub fn export_checkpoint(ckpt: &CheckpointRef) -> Result<Vec<u8>> {
    let state = checkpoint::read_state_at(&ckpt.epoch_dir)?;
    let spec = state.config.model_spec();
    torchvision::check_spec(&spec)?;
    let info = state.inference.clone().ok_or_else(|| Error::Checkpoint {
        path: ckpt.epoch_dir.clone(),
        message: "written before label names and pixel statistics were stored with checkpoints: train it again".into(),
    })?;
    let model = Classifier::new(&spec, state.num_labels, &Device::flex());
    let model = checkpoint::load_model_at(&ckpt.epoch_dir, model)?;
    let tensors = torchvision::export(&model, &spec)?;
    let metadata = BTreeMap::from([
        ("architecture".to_string(), spec.architecture.name().to_string()),
        (
            "labels".to_string(),
            serde_json::to_string(&info.labels).expect("strings serialise"),
        ),
        ("image_size".to_string(), info.image_size.to_string()),
        ("mean".to_string(), info.mean.to_string()),
        ("std".to_string(), info.std.to_string()),
        ("format".to_string(), "pt".to_string()),
    ]);
    Ok(torchvision::safetensors_bytes(&tensors, &metadata)?)
}
