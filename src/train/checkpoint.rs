//! Checkpoints under `<ckpt_dir>/<run-id>/`: one `epoch-NNNN/` folder per saved epoch holding the
//! model's weights (`model.bpk`, Burn's burnpack format), the optimiser state (`optim.bpk`) and `state.json` (config, epoch,
//! metrics, schedule and early-stopping state), plus `best.json` and `last.json` naming the folder
//! of the best and the last epoch. Every file is written atomically and the pointers change only
//! after their folder is complete, so a crash leaves the previous checkpoint readable. Each folder
//! also holds `epoch.json` (the epoch's event as the store records it, so a run killed between
//! writing the checkpoint and recording the epoch can record it on resume) and `files.json` (the
//! length and SHA-256 of the two tensor files, so a damaged or truncated one is refused by name
//! instead of being loaded).

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use serde::{Deserialize, Serialize};

use super::config::TrainConfig;
use super::error::{Error, Result};
use super::optim::Schedule;
use crate::data::write_atomically;

/// Bumped when the layout changes incompatibly. 1: Burn 0.21 MessagePack records (`model.mpk`);
/// 2: Burn 0.22 burnpack (`model.bpk`).
pub const FORMAT_VERSION: u32 = 2;
/// The last format written by cxr8 on Burn 0.21, whose weights Burn 0.22 cannot read.
const BURN_021_FORMAT: u32 = 1;

const MODEL_FILE: &str = "model.bpk";
const OPTIM_FILE: &str = "optim.bpk";
const STATE_FILE: &str = "state.json";
const EPOCH_RECORD_FILE: &str = "epoch.json";
const DIGESTS_FILE: &str = "files.json";

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
    /// The run's global step, images seen and training seconds at the end of this epoch, so a
    /// resume continues the step and wall-time axes. Absent in older checkpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<crate::train::runner::steps::RunClock>,
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

/// Length and SHA-256 of one tensor file, as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FileDigest {
    len: u64,
    sha256: String,
}

impl FileDigest {
    fn of(bytes: &[u8]) -> Self {
        use sha2::{Digest, Sha256};
        FileDigest {
            len: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(bytes)),
        }
    }
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
    /// `epoch_record` is stored beside it for [`RunCheckpoints::read_epoch_record`].
    pub fn save_epoch<M: Module>(
        &self,
        model: &M,
        optim_state: &[u8],
        state: &CheckpointState,
        epoch_record: Option<&serde_json::Value>,
    ) -> Result<PathBuf> {
        let dir = self.root.join(Self::epoch_dir_name(state.epoch));
        // A folder for this epoch can only exist unreferenced: left by a process killed while
        // writing it (possibly with temp files inside). Start it afresh.
        if dir.exists() && !self.referenced_dirs().contains(&Self::epoch_dir_name(state.epoch)) {
            let _ = std::fs::remove_dir_all(&dir);
        }
        let model_bytes = model
            .clone()
            .into_record()
            .into_bytes()
            .map(|bytes| bytes.to_vec())
            .map_err(|e| Error::Checkpoint {
                path: dir.clone(),
                message: format!("could not encode the model: {e}"),
            })?;
        write_atomically(&dir.join(MODEL_FILE), &model_bytes)?;
        write_atomically(&dir.join(OPTIM_FILE), optim_state)?;
        if let Some(record) = epoch_record {
            let json = serde_json::to_vec_pretty(record).expect("JSON values serialise");
            write_atomically(&dir.join(EPOCH_RECORD_FILE), &json)?;
        }
        let digests = std::collections::BTreeMap::from([
            (MODEL_FILE, FileDigest::of(&model_bytes)),
            (OPTIM_FILE, FileDigest::of(optim_state)),
        ]);
        write_atomically(
            &dir.join(DIGESTS_FILE),
            &serde_json::to_vec_pretty(&digests).expect("digests serialise"),
        )?;
        // Last: a folder with a state file is complete.
        let json = serde_json::to_vec_pretty(state).expect("checkpoint state serialises");
        write_atomically(&dir.join(STATE_FILE), &json)?;
        Ok(dir)
    }

    /// The epoch record saved with the checkpoint in `slot` (`None`: no such slot, or a
    /// checkpoint written before records were kept).
    pub fn read_epoch_record(&self, slot: Slot) -> Result<Option<serde_json::Value>> {
        let Some(dir) = self.slot_dir(slot)? else {
            return Ok(None);
        };
        let path = dir.join(EPOCH_RECORD_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| Error::Checkpoint {
                path,
                message: format!("unreadable epoch record: {e}"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
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

    /// Folder names the pointers name.
    fn referenced_dirs(&self) -> Vec<String> {
        [Slot::Best, Slot::Last]
            .into_iter()
            .filter_map(|s| self.read_pointer(s).ok().flatten().map(|p| p.dir))
            .collect()
    }

    fn remove_unreferenced(&self) -> Result<()> {
        let keep = self.referenced_dirs();
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
    pub fn load_model<M: Module>(&self, slot: Slot, model: M) -> Result<M> {
        load_model_at(&self.require_slot(slot)?, model)
    }

    pub fn read_optim_state(&self, slot: Slot) -> Result<Vec<u8>> {
        read_checked(&self.require_slot(slot)?, OPTIM_FILE)
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
    if state.format == BURN_021_FORMAT {
        return Err(Error::Checkpoint {
            path,
            message: "this checkpoint was written by an older cxr8 built on Burn 0.21, whose weight \
                      files this version (Burn 0.22) cannot read; train the run again (\"Clone\" on \
                      its run page starts a new run with the same settings)"
                .to_string(),
        });
    }
    if state.format != FORMAT_VERSION {
        return Err(Error::Checkpoint {
            path,
            message: format!("written by format {}, this build reads {FORMAT_VERSION}", state.format),
        });
    }
    Ok(state)
}

/// Loads the weights of one epoch folder into `model` (built with the same config).
pub fn load_model_at<M: Module>(epoch_dir: &Path, model: M) -> Result<M> {
    let path = epoch_dir.join(MODEL_FILE);
    let bytes = read_checked(epoch_dir, MODEL_FILE)?;
    let unfit = |e: burn::store::RecordError| Error::Checkpoint {
        path: path.clone(),
        message: format!("the saved weights do not fit this model (was it built with the same config?): {e}"),
    };
    // Weights come back in the format of the model they load into (a bf16 run's checkpoint loads
    // into an f32 model for prediction).
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes))
        .map_err(unfit)?
        .cast_to_module_dtype();
    model.try_load_record(record).map_err(unfit)
}

/// Reads a tensor file of an epoch folder and checks it against `files.json` when the folder has
/// one (older checkpoints do not), so a truncated or damaged file is refused with its name.
fn read_checked(epoch_dir: &Path, name: &str) -> Result<Vec<u8>> {
    let path = epoch_dir.join(name);
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let digests_path = epoch_dir.join(DIGESTS_FILE);
    let digests: std::collections::BTreeMap<String, FileDigest> = match std::fs::read(&digests_path) {
        Ok(text) => serde_json::from_slice(&text).map_err(|e| Error::Checkpoint {
            path: digests_path.clone(),
            message: format!("unreadable file list: {e}; this checkpoint is damaged, resume from an earlier one or start the run again"),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(bytes),
        Err(e) => return Err(Error::io(digests_path, e)),
    };
    if let Some(expected) = digests.get(name) {
        let found = FileDigest::of(&bytes);
        if found != *expected {
            let what = if found.len != expected.len {
                format!("{} bytes, {} were written", found.len, expected.len)
            } else {
                "its checksum does not match what was written".to_string()
            };
            return Err(Error::Checkpoint {
                path,
                message: format!(
                    "damaged or truncated ({what}); this checkpoint cannot be used: start the run again or use another checkpoint"
                ),
            });
        }
    }
    Ok(bytes)
}

/// Whether `dir` looks like one epoch folder (weights and state side by side).
pub fn is_epoch_dir(dir: &Path) -> bool {
    dir.join(MODEL_FILE).is_file() && dir.join(STATE_FILE).is_file()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::prelude::Device;
    use burn::tensor::{Tensor, TensorData};

    #[derive(Module, Debug)]
    struct Affine {
        w: Param<Tensor<1>>,
    }

    fn affine(values: &[f32]) -> Affine {
        Affine {
            w: Param::from_tensor(Tensor::from_data(
                TensorData::new(values.to_vec(), [values.len()]),
                &Device::flex(),
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
            clock: None,
        }
    }

    #[test]
    fn save_point_and_load_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let ckpts = RunCheckpoints::new(tmp.path(), "run-1");
        assert_eq!(ckpts.read_state(Slot::Last).unwrap(), None);
        ckpts
            .save_epoch(&affine(&[1.0, 2.0]), b"optim", &state(1), None)
            .unwrap();
        ckpts.point(Slot::Last, 1).unwrap();
        ckpts.point(Slot::Best, 1).unwrap();
        ckpts
            .save_epoch(&affine(&[3.0, 4.0]), b"optim2", &state(2), None)
            .unwrap();
        ckpts.point(Slot::Last, 2).unwrap();

        let loaded = ckpts.load_model(Slot::Best, affine(&[0.0, 0.0])).unwrap();
        assert_eq!(loaded.w.val().into_data().try_to_vec::<f32>().unwrap(), vec![1.0, 2.0]);
        let last = ckpts.load_model(Slot::Last, affine(&[0.0, 0.0])).unwrap();
        assert_eq!(last.w.val().into_data().try_to_vec::<f32>().unwrap(), vec![3.0, 4.0]);
        assert_eq!(ckpts.read_optim_state(Slot::Last).unwrap(), b"optim2");
        assert_eq!(ckpts.read_state(Slot::Last).unwrap().unwrap(), state(2));

        // Epoch 3 becomes both best and last: epochs 1 and 2 are no longer referenced.
        ckpts.save_epoch(&affine(&[5.0, 6.0]), b"o3", &state(3), None).unwrap();
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
    fn a_write_killed_midway_is_never_loaded() {
        let tmp = tempfile::tempdir().unwrap();
        let ckpts = RunCheckpoints::new(tmp.path(), "k");
        let record = serde_json::json!({"type": "epoch", "epoch": 1});
        ckpts
            .save_epoch(&affine(&[1.0, 2.0]), b"optim1", &state(1), Some(&record))
            .unwrap();
        ckpts.point(Slot::Last, 1).unwrap();
        // A kill while writing epoch 2 leaves a folder with a half-written temp file and no state.
        let half = ckpts.path().join("epoch-0002");
        std::fs::create_dir_all(&half).unwrap();
        std::fs::write(half.join(".model.bpk.tmp-4242"), b"\x93\xa5trunc").unwrap();
        // And a half-written pointer temp file beside the real one.
        std::fs::write(ckpts.path().join(".last.json.tmp-4242"), b"{\"epoch\": 2, \"di").unwrap();
        assert_eq!(ckpts.read_state(Slot::Last).unwrap().unwrap(), state(1));
        assert_eq!(ckpts.read_epoch_record(Slot::Last).unwrap(), Some(record));
        let model = ckpts.load_model(Slot::Last, affine(&[0.0, 0.0])).unwrap();
        assert_eq!(model.w.val().into_data().try_to_vec::<f32>().unwrap(), vec![1.0, 2.0]);

        // The resumed run writes epoch 2 again over the leftover folder: only complete files.
        ckpts
            .save_epoch(&affine(&[3.0, 4.0]), b"optim2", &state(2), None)
            .unwrap();
        assert!(!half.join(".model.bpk.tmp-4242").exists());
        ckpts.point(Slot::Last, 2).unwrap();
        assert_eq!(ckpts.read_optim_state(Slot::Last).unwrap(), b"optim2");
    }

    #[test]
    fn a_truncated_or_damaged_tensor_file_is_refused_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        let ckpts = RunCheckpoints::new(tmp.path(), "t");
        let dir = ckpts
            .save_epoch(&affine(&[1.0, 2.0, 3.0]), b"optimiser bytes", &state(1), None)
            .unwrap();
        ckpts.point(Slot::Last, 1).unwrap();
        let model_path = dir.join(MODEL_FILE);
        let good = std::fs::read(&model_path).unwrap();
        std::fs::write(&model_path, &good[..good.len() / 2]).unwrap();
        let err = ckpts.load_model(Slot::Last, affine(&[0.0; 3])).unwrap_err().to_string();
        assert!(
            err.contains("model.bpk")
                && err.contains("truncated")
                && err.contains(&format!("{} were written", good.len())),
            "{err}"
        );
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        std::fs::write(&model_path, &flipped).unwrap();
        let err = ckpts.load_model(Slot::Last, affine(&[0.0; 3])).unwrap_err().to_string();
        assert!(err.contains("checksum does not match"), "{err}");

        std::fs::write(dir.join(OPTIM_FILE), b"optimiser").unwrap();
        let err = ckpts.read_optim_state(Slot::Last).unwrap_err().to_string();
        assert!(
            err.contains("optim.bpk") && err.contains("damaged or truncated"),
            "{err}"
        );
    }

    #[test]
    fn a_burn_021_checkpoint_is_refused_with_what_to_do() {
        let tmp = tempfile::tempdir().unwrap();
        let ckpts = RunCheckpoints::new(tmp.path(), "old");
        let dir = ckpts.save_epoch(&affine(&[1.0]), b"optim", &state(1), None).unwrap();
        ckpts.point(Slot::Last, 1).unwrap();
        // What cxr8 on Burn 0.21 left: format 1 in state.json.
        let mut old = state(1);
        old.format = 1;
        std::fs::write(dir.join(STATE_FILE), serde_json::to_vec(&old).unwrap()).unwrap();
        let err = ckpts.read_state(Slot::Last).unwrap_err().to_string();
        assert!(
            err.contains("Burn 0.21") && err.contains("train the run again"),
            "{err}"
        );
    }

    #[test]
    fn loading_a_missing_slot_says_so() {
        let tmp = tempfile::tempdir().unwrap();
        let ckpts = RunCheckpoints::new(tmp.path(), "none");
        let err = ckpts.load_model(Slot::Best, affine(&[0.0])).unwrap_err();
        assert!(err.to_string().contains("no Best checkpoint"), "{err}");
    }
}
