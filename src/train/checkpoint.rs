//! Checkpoints under `<ckpt_dir>/<run-id>/`: one `epoch-NNNN/` folder per saved epoch holding the
//! model record (`model.mpk`), the optimiser state (`optim.mpk`) and `state.json` (config, epoch,
//! metrics, schedule and early-stopping state), plus `best.json` and `last.json` naming the folder
//! of the best and the last epoch. Every file is written atomically and the pointers change only
//! after their folder is complete, so a crash leaves the previous checkpoint readable.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use super::config::TrainConfig;
use super::error::{Error, Result};
use super::optim::Schedule;
use crate::data::write_atomically;

/// Bumped when the layout changes incompatibly.
pub const FORMAT_VERSION: u32 = 1;

const MODEL_FILE: &str = "model.mpk";
const OPTIM_FILE: &str = "optim.mpk";
const STATE_FILE: &str = "state.json";

type ModelRecorder = NamedMpkBytesRecorder<FullPrecisionSettings>;

/// Which saved epoch to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Slot {
    /// The epoch with the best validation value of the checkpoint metric.
    Best,
    /// The most recent completed epoch (what a resume continues from).
    Last,
}

impl Slot {
    fn pointer_file(self) -> &'static str {
        match self {
            Slot::Best => "best.json",
            Slot::Last => "last.json",
        }
    }
}

/// Everything besides tensors needed to report on or continue a run after an epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    pub format: u32,
    pub run_id: String,
    pub config: TrainConfig,
    /// Completed epochs (1-based number of the epoch just finished).
    pub epoch: usize,
    pub train_metrics: serde_json::Value,
    pub val_metrics: serde_json::Value,
    pub schedule: Schedule,
    pub best_epoch: Option<usize>,
    pub best_metric: Option<f64>,
    /// Epochs since the early-stopping metric last improved, and its best value.
    pub early_stop_best: Option<f64>,
    pub epochs_without_improvement: usize,
    /// The loss's per-label positive weights, so a resume uses the same loss.
    pub pos_weight: Option<Vec<f32>>,
    pub num_labels: usize,
    /// How inputs were prepared and what the outputs mean, for inference on new images. Absent
    /// in checkpoints written before it was added (and when the caller did not know it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference: Option<InferenceInfo>,
}

/// What a model needs besides its weights to be used on new images: the label names in output
/// order, the square input size and the training set's pixel statistics on the 0..1 scale
/// (inputs are `(x/255 - mean) / std`). Validation-tuned thresholds are in `val_metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferenceInfo {
    pub labels: Vec<String>,
    pub image_size: u32,
    pub mean: f32,
    pub std: f32,
}

#[derive(Debug, Serialize, Deserialize)]
struct Pointer {
    epoch: usize,
    dir: String,
}

/// A run's checkpoint folder.
#[derive(Debug, Clone)]
pub struct RunCheckpoints {
    root: PathBuf,
}

impl RunCheckpoints {
    pub fn new(ckpt_dir: impl AsRef<Path>, run_id: &str) -> Self {
        RunCheckpoints {
            root: ckpt_dir.as_ref().join(run_id),
        }
    }

    /// `<ckpt_dir>/<run-id>`.
    pub fn path(&self) -> &Path {
        &self.root
    }

    fn epoch_dir_name(epoch: usize) -> String {
        format!("epoch-{epoch:04}")
    }

    /// Writes one epoch's folder; returns its path. Call [`RunCheckpoints::point`] afterwards.
    pub fn save_epoch<B: Backend, M: Module<B>>(
        &self,
        model: &M,
        optim_state: &[u8],
        state: &CheckpointState,
    ) -> Result<PathBuf> {
        let dir = self.root.join(Self::epoch_dir_name(state.epoch));
        let model_bytes =
            Recorder::<B>::record(&ModelRecorder::default(), model.clone().into_record(), ()).map_err(|e| {
                Error::Checkpoint {
                    path: dir.clone(),
                    message: format!("could not encode the model: {e}"),
                }
            })?;
        write_atomically(&dir.join(MODEL_FILE), &model_bytes)?;
        write_atomically(&dir.join(OPTIM_FILE), optim_state)?;
        let json = serde_json::to_vec_pretty(state).expect("checkpoint state serialises");
        write_atomically(&dir.join(STATE_FILE), &json)?;
        Ok(dir)
    }

    /// Makes `slot` name the saved `epoch`, then removes epoch folders no slot names.
    pub fn point(&self, slot: Slot, epoch: usize) -> Result<()> {
        let pointer = Pointer {
            epoch,
            dir: Self::epoch_dir_name(epoch),
        };
        let json = serde_json::to_vec(&pointer).expect("pointer serialises");
        write_atomically(&self.root.join(slot.pointer_file()), &json)?;
        self.remove_unreferenced()
    }

    fn remove_unreferenced(&self) -> Result<()> {
        let keep: Vec<String> = [Slot::Best, Slot::Last]
            .into_iter()
            .filter_map(|s| self.read_pointer(s).ok().flatten().map(|p| p.dir))
            .collect();
        let entries = std::fs::read_dir(&self.root).map_err(|e| Error::io(&self.root, e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("epoch-") && !keep.contains(&name) {
                // A folder we cannot delete only wastes space; the pointers are what count.
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(())
    }

    fn read_pointer(&self, slot: Slot) -> Result<Option<Pointer>> {
        let path = self.root.join(slot.pointer_file());
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| Error::Checkpoint {
                path,
                message: format!("unreadable pointer file: {e}"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// The folder `slot` names, if that slot was ever written.
    pub fn slot_dir(&self, slot: Slot) -> Result<Option<PathBuf>> {
        Ok(self.read_pointer(slot)?.map(|p| self.root.join(p.dir)))
    }

    /// The folder `slot` names; an error saying so when the slot was never written.
    pub fn require_slot(&self, slot: Slot) -> Result<PathBuf> {
        self.slot_dir(slot)?.ok_or_else(|| Error::Checkpoint {
            path: self.root.clone(),
            message: format!("no {slot:?} checkpoint here yet (no {})", slot.pointer_file()),
        })
    }

    pub fn read_state(&self, slot: Slot) -> Result<Option<CheckpointState>> {
        let Some(dir) = self.slot_dir(slot)? else {
            return Ok(None);
        };
        read_state_at(&dir).map(Some)
    }

    /// Loads the weights saved in `slot` into `model` (built with the same config).
    pub fn load_model<B: Backend, M: Module<B>>(&self, slot: Slot, model: M, device: &B::Device) -> Result<M> {
        load_model_at(&self.require_slot(slot)?, model, device)
    }

    pub fn read_optim_state(&self, slot: Slot) -> Result<Vec<u8>> {
        let path = self.require_slot(slot)?.join(OPTIM_FILE);
        std::fs::read(&path).map_err(|e| Error::io(&path, e))
    }
}

/// Reads `state.json` of one epoch folder.
pub fn read_state_at(epoch_dir: &Path) -> Result<CheckpointState> {
    let path = epoch_dir.join(STATE_FILE);
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let state: CheckpointState = serde_json::from_slice(&bytes).map_err(|e| Error::Checkpoint {
        path: path.clone(),
        message: format!("unreadable state: {e}"),
    })?;
    if state.format != FORMAT_VERSION {
        return Err(Error::Checkpoint {
            path,
            message: format!("written by format {}, this build reads {FORMAT_VERSION}", state.format),
        });
    }
    Ok(state)
}

/// Loads the weights of one epoch folder into `model` (built with the same config).
pub fn load_model_at<B: Backend, M: Module<B>>(epoch_dir: &Path, model: M, device: &B::Device) -> Result<M> {
    let path = epoch_dir.join(MODEL_FILE);
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let record = Recorder::<B>::load(&ModelRecorder::default(), bytes, device).map_err(|e| Error::Checkpoint {
        path,
        message: format!("the saved weights do not fit this model (was it built with the same config?): {e}"),
    })?;
    Ok(model.load_record(record))
}

/// Whether `dir` looks like one epoch folder (weights and state side by side).
pub fn is_epoch_dir(dir: &Path) -> bool {
    dir.join(MODEL_FILE).is_file() && dir.join(STATE_FILE).is_file()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::module::Param;
    use burn::tensor::{Tensor, TensorData};

    #[derive(Module, Debug)]
    struct Affine<B: Backend> {
        w: Param<Tensor<B, 1>>,
    }

    fn affine(values: &[f32]) -> Affine<Flex> {
        Affine {
            w: Param::from_tensor(Tensor::from_data(
                TensorData::new(values.to_vec(), [values.len()]),
                &Default::default(),
            )),
        }
    }

    fn state(epoch: usize) -> CheckpointState {
        let config = TrainConfig::default();
        CheckpointState {
            format: FORMAT_VERSION,
            run_id: "r".into(),
            schedule: Schedule::from_config(&config),
            config,
            epoch,
            train_metrics: serde_json::json!({"loss": 1.0}),
            val_metrics: serde_json::json!({"loss": 2.0}),
            best_epoch: Some(epoch),
            best_metric: Some(0.5),
            early_stop_best: None,
            epochs_without_improvement: 0,
            pos_weight: None,
            num_labels: 2,
            inference: None,
        }
    }

    #[test]
    fn save_point_and_load_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let ckpts = RunCheckpoints::new(tmp.path(), "run-1");
        assert_eq!(ckpts.read_state(Slot::Last).unwrap(), None);
        ckpts
            .save_epoch::<Flex, _>(&affine(&[1.0, 2.0]), b"optim", &state(1))
            .unwrap();
        ckpts.point(Slot::Last, 1).unwrap();
        ckpts.point(Slot::Best, 1).unwrap();
        ckpts
            .save_epoch::<Flex, _>(&affine(&[3.0, 4.0]), b"optim2", &state(2))
            .unwrap();
        ckpts.point(Slot::Last, 2).unwrap();

        let loaded = ckpts
            .load_model::<Flex, _>(Slot::Best, affine(&[0.0, 0.0]), &Default::default())
            .unwrap();
        assert_eq!(loaded.w.val().into_data().to_vec::<f32>().unwrap(), vec![1.0, 2.0]);
        let last = ckpts
            .load_model::<Flex, _>(Slot::Last, affine(&[0.0, 0.0]), &Default::default())
            .unwrap();
        assert_eq!(last.w.val().into_data().to_vec::<f32>().unwrap(), vec![3.0, 4.0]);
        assert_eq!(ckpts.read_optim_state(Slot::Last).unwrap(), b"optim2");
        assert_eq!(ckpts.read_state(Slot::Last).unwrap().unwrap(), state(2));

        // Epoch 3 becomes both best and last: epochs 1 and 2 are no longer referenced.
        ckpts
            .save_epoch::<Flex, _>(&affine(&[5.0, 6.0]), b"o3", &state(3))
            .unwrap();
        ckpts.point(Slot::Last, 3).unwrap();
        ckpts.point(Slot::Best, 3).unwrap();
        let mut dirs: Vec<String> = std::fs::read_dir(ckpts.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("epoch-"))
            .collect();
        dirs.sort();
        assert_eq!(dirs, vec!["epoch-0003"]);
    }

    #[test]
    fn loading_a_missing_slot_says_so() {
        let tmp = tempfile::tempdir().unwrap();
        let ckpts = RunCheckpoints::new(tmp.path(), "none");
        let err = ckpts
            .load_model::<Flex, _>(Slot::Best, affine(&[0.0]), &Default::default())
            .unwrap_err();
        assert!(err.to_string().contains("no Best checkpoint"), "{err}");
    }
}
