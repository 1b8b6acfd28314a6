//! Inference from a saved checkpoint: finding it (run id, run folder or epoch folder), rebuilding
//! the model with the training labels, input size and pixel statistics, and per-label
//! probabilities for new images, without autodiff. Grad-CAM lives in [`super::gradcam`].

use std::path::{Path, PathBuf};

use burn::prelude::*;
use image::GrayImage;

use super::backend::{self, BackendKind, DeviceChoice};
use super::checkpoint::{self, CheckpointState, InferenceInfo, RunCheckpoints, Slot};
use super::config::OutputActivation;
use super::error::{Error, Result};
use super::gradcam::{self, GradCamSearch, HeatMap};
use super::loss::activate;
use crate::data::images::{self, SquareResizer};
use crate::model::Classifier;

/// Threshold used for labels whose checkpoint has no validation-tuned one.
const FALLBACK_THRESHOLD: f32 = 0.5;

/// Images per forward pass when predicting many at once.
const BATCH: usize = 16;

/// One epoch folder of a run, found from what the user typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRef {
    /// The epoch folder holding `model.bpk` and `state.json`.
    pub epoch_dir: PathBuf,
}

impl CheckpointRef {
    /// Resolves `spec`: an epoch folder, a run folder (then `slot` picks the epoch), or a run id
    /// looked up under `ckpt_dir`.
    pub fn locate(spec: &str, ckpt_dir: &Path, slot: Slot) -> Result<Self> {
        let as_path = Path::new(spec);
        if as_path.is_dir() && checkpoint::is_epoch_dir(as_path) {
            return Ok(CheckpointRef {
                epoch_dir: as_path.to_path_buf(),
            });
        }
        let run_dir = if as_path.is_dir() {
            as_path.to_path_buf()
        } else if is_run_id(spec) && ckpt_dir.join(spec).is_dir() {
            ckpt_dir.join(spec)
        } else {
            let known = run_ids(ckpt_dir);
            let hint = if known.is_empty() {
                format!("there are no runs under {}", ckpt_dir.display())
            } else {
                format!("runs under {}: {}", ckpt_dir.display(), known.join(", "))
            };
            return Err(Error::Checkpoint {
                path: ckpt_dir.join(spec),
                message: format!(
                    "no checkpoint '{spec}': not a folder and not a run id ({hint}); pass a run id, a run \
                     folder or an epoch folder, and --ckpt-dir if the runs are elsewhere"
                ),
            });
        };
        let parent = run_dir.parent().unwrap_or(Path::new("."));
        let name = run_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let epoch_dir = RunCheckpoints::new(parent, &name).require_slot(slot)?;
        Ok(CheckpointRef { epoch_dir })
    }
}

fn is_run_id(spec: &str) -> bool {
    !spec.is_empty() && !spec.contains(['/', '\\']) && spec != "." && spec != ".."
}

/// Run folders under `ckpt_dir`, sorted, for error messages.
fn run_ids(ckpt_dir: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(ckpt_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    ids
}

/// A trained model ready for new images.
#[derive(Debug)]
pub struct Predictor {
    model: Classifier,
    device: Device,
    info: InferenceInfo,
    thresholds: Vec<f32>,
    activation: OutputActivation,
    state: CheckpointState,
    head: gradcam::Head,
}

impl Predictor {
    /// Loads the weights and everything needed to prepare inputs like training did.
    pub fn load(ckpt: &CheckpointRef, device: &Device) -> Result<Self> {
        let state = checkpoint::read_state_at(&ckpt.epoch_dir)?;
        let info = state.inference.clone().ok_or_else(|| Error::Checkpoint {
            path: ckpt.epoch_dir.clone(),
            message: "this checkpoint was written before label names and pixel statistics were stored with it, \
                      so its inputs cannot be prepared like training's; train the run again"
                .into(),
        })?;
        if info.labels.len() != state.num_labels {
            return Err(Error::Checkpoint {
                path: ckpt.epoch_dir.clone(),
                message: format!("{} label names for {} outputs", info.labels.len(), state.num_labels),
            });
        }
        let model = Classifier::new(&state.config.model_spec(), state.num_labels, device);
        let model = checkpoint::load_model_at(&ckpt.epoch_dir, model)?;
        let thresholds = tuned_thresholds(&state, &info.labels);
        let head = gradcam::Head::from_model(&model).ok_or_else(|| Error::Checkpoint {
            path: ckpt.epoch_dir.clone(),
            message: "the model has no output layer named `head`".into(),
        })?;
        Ok(Predictor {
            model,
            device: device.clone(),
            activation: state.config.activation(),
            info,
            thresholds,
            state,
            head,
        })
    }

    /// Label names in output order.
    pub fn labels(&self) -> &[String] {
        &self.info.labels
    }

    /// Per-label decision thresholds tuned on validation (max F1); 0.5 where none was tuned.
    pub fn thresholds(&self) -> &[f32] {
        &self.thresholds
    }

    /// Side of the square input the model was trained on.
    pub fn image_size(&self) -> u32 {
        self.info.image_size
    }

    /// The checkpoint's state (run id, epoch, config, metrics).
    pub fn state(&self) -> &CheckpointState {
        &self.state
    }

    /// Index of a label by name (case-insensitive); the error lists the valid names.
    pub fn label_index(&self, name: &str) -> Result<usize> {
        self.info
            .labels
            .iter()
            .position(|l| l.eq_ignore_ascii_case(name))
            .ok_or_else(|| Error::UnknownLabel {
                name: name.to_string(),
                labels: self.info.labels.clone(),
            })
    }

    /// The image at the model's input size, exactly as the cache would hold it.
    pub fn model_pixels(&self, image: &GrayImage) -> Result<GrayImage> {
        let size = self.info.image_size;
        if image.dimensions() == (size, size) {
            return Ok(image.clone());
        }
        Ok(SquareResizer::new().resize(image, size)?)
    }

    /// `[n, 1, S, S]` input from images already at the model size, normalised like the loader.
    fn input(&self, images: &[&[u8]]) -> Tensor<4> {
        let size = self.info.image_size as usize;
        let (mean, std) = (self.info.mean, self.info.std);
        let values: Vec<f32> = images
            .iter()
            .flat_map(|pixels| pixels.iter().map(move |&p| (p as f32 / 255.0 - mean) / std))
            .collect();
        Tensor::from_data(TensorData::new(values, [images.len(), 1, size, size]), &self.device)
    }

    /// Probabilities `[n × labels]`, row-major, for images already at the model size.
    pub fn probabilities(&self, images: &[&[u8]]) -> Vec<f32> {
        let mut out = Vec::with_capacity(images.len() * self.info.labels.len());
        for chunk in images.chunks(BATCH) {
            let logits = self.model.forward(self.input(chunk));
            out.extend(activate(logits, self.activation).into_data().iter::<f32>());
        }
        out
    }

    /// Probability per label (in output order) for one image of any size.
    pub fn predict(&self, image: &GrayImage) -> Result<Vec<(String, f32)>> {
        let pixels = self.model_pixels(image)?;
        let probs = self.probabilities(&[pixels.as_raw()]);
        Ok(self.info.labels.iter().cloned().zip(probs).collect())
    }

    /// [`Self::predict`] on an image file (PNG or JPEG).
    pub fn predict_path(&self, path: &Path) -> Result<Vec<(String, f32)>> {
        self.predict(&images::load_gray(path)?)
    }

    /// Grad-CAM heat map of `label_index` for one image, at the model's input size.
    pub fn gradcam(&self, image: &GrayImage, label_index: usize) -> Result<HeatMap> {
        let mut search = self.gradcam_search(image, &[label_index])?;
        Ok(search.computed.remove(0).1)
    }

    /// Grad-CAMs of `order`'s labels in turn (most probable first for the default map), up to
    /// and including the first non-empty one, at the model's input size. The backbone runs once;
    /// each further label costs only the head's backward pass.
    pub fn gradcam_search(&self, image: &GrayImage, order: &[usize]) -> Result<GradCamSearch> {
        let labels = self.info.labels.len();
        if order.is_empty() {
            return Err(Error::Config(vec![super::FieldError {
                field: "label".into(),
                message: "no label given to compute a Grad-CAM for".into(),
            }]));
        }
        if let Some(&index) = order.iter().find(|&&i| i >= labels) {
            return Err(Error::LabelIndex { index, labels });
        }
        let pixels = self.model_pixels(image)?;
        let (_, features) = self.model.forward_with_features(self.input(&[pixels.as_raw()]));
        let size = self.info.image_size as usize;
        GradCamSearch::run(order, |label| {
            Ok(gradcam::grad_cam(&self.head, features.clone(), label, size, size))
        })
    }
}

/// Label indices, most probable first (ties keep output order).
pub fn probability_order(probabilities: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]));
    order
}

/// A [`Predictor`] on whichever backend was chosen at run time.
pub trait Inference {
    fn labels(&self) -> &[String];
    fn thresholds(&self) -> &[f32];
    fn image_size(&self) -> u32;
    fn state(&self) -> &CheckpointState;
    fn label_index(&self, name: &str) -> Result<usize>;
    fn predict(&self, image: &GrayImage) -> Result<Vec<(String, f32)>>;
    fn probabilities(&self, images: &[&[u8]]) -> Vec<f32>;
    fn gradcam_search(&self, image: &GrayImage, order: &[usize]) -> Result<GradCamSearch>;
}

impl Inference for Predictor {
    fn labels(&self) -> &[String] {
        Predictor::labels(self)
    }
    fn thresholds(&self) -> &[f32] {
        Predictor::thresholds(self)
    }
    fn image_size(&self) -> u32 {
        Predictor::image_size(self)
    }
    fn state(&self) -> &CheckpointState {
        Predictor::state(self)
    }
    fn label_index(&self, name: &str) -> Result<usize> {
        Predictor::label_index(self, name)
    }
    fn predict(&self, image: &GrayImage) -> Result<Vec<(String, f32)>> {
        Predictor::predict(self, image)
    }
    fn probabilities(&self, images: &[&[u8]]) -> Vec<f32> {
        Predictor::probabilities(self, images)
    }
    fn gradcam_search(&self, image: &GrayImage, order: &[usize]) -> Result<GradCamSearch> {
        Predictor::gradcam_search(self, image, order)
    }
}

/// Loads `ckpt` on the backend `choice` resolves to (the CPU unless CUDA is asked for or found);
/// returns it with a line saying which backend runs it.
pub fn load_on(ckpt: &CheckpointRef, choice: DeviceChoice) -> Result<(Box<dyn Inference>, String)> {
    let resolved = backend::resolve(choice).map_err(|e| {
        Error::Config(vec![super::FieldError {
            field: "device".into(),
            message: e.to_string(),
        }])
    })?;
    let predictor = Predictor::load(ckpt, &resolved.kind.device())?;
    let name = match resolved.kind {
        BackendKind::Cpu => "cpu".to_string(),
        BackendKind::Cuda(info) => format!("cuda:0 ({})", info.name),
    };
    Ok((Box::new(predictor), name))
}

/// Thresholds tuned on the validation split of the checkpoint's epoch, by label name.
fn tuned_thresholds(state: &CheckpointState, labels: &[String]) -> Vec<f32> {
    let per_label = state.val_metrics.get("per_label").and_then(|v| v.as_array());
    labels
        .iter()
        .map(|label| {
            per_label
                .into_iter()
                .flatten()
                .find(|m| m.get("label").and_then(|l| l.as_str()) == Some(label))
                .and_then(|m| m.get("threshold")?.as_f64())
                .map_or(FALLBACK_THRESHOLD, |t| t as f32)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_run_ids_list_the_known_ones() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("run-a")).unwrap();
        let err = CheckpointRef::locate("nope", tmp.path(), Slot::Best)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no checkpoint 'nope'") && err.contains("run-a"), "{err}");
        // A run folder without pointers says which slot is missing.
        let err = CheckpointRef::locate("run-a", tmp.path(), Slot::Best)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no Best checkpoint"), "{err}");
    }

    #[test]
    fn thresholds_come_from_validation_metrics_by_name() {
        let config = crate::train::TrainConfig::default();
        let state = CheckpointState {
            format: checkpoint::FORMAT_VERSION,
            run_id: "r".into(),
            schedule: crate::train::optim::Schedule::from_config(&config),
            config,
            epoch: 1,
            train_metrics: serde_json::json!({}),
            val_metrics: serde_json::json!({"per_label": [
                {"label": "B", "threshold": 0.25}, {"label": "A", "threshold": 0.75}
            ]}),
            best_epoch: None,
            best_metric: None,
            early_stop_best: None,
            epochs_without_improvement: 0,
            pos_weight: None,
            num_labels: 3,
            inference: None,
            clock: None,
        };
        let labels: Vec<String> = ["A", "B", "C"].iter().map(|s| s.to_string()).collect();
        assert_eq!(tuned_thresholds(&state, &labels), vec![0.75, 0.25, 0.5]);
    }
}
