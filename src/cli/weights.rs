//! `cxr8 import` (PyTorch / torchvision weights → a checkpoint folder) and `cxr8 export`
//! (a checkpoint → safetensors in torchvision's layout).

use std::path::PathBuf;

use anyhow::Context;

use crate::model::Architecture;
use crate::train::checkpoint::Slot;
use crate::train::predict::CheckpointRef;
use crate::train::weights::{self, ImportRequest};

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// A PyTorch state_dict in torchvision's key layout: `torch.save` file (.pth/.pt) or
    /// .safetensors; f32, f16 or bf16.
    #[arg(long, value_name = "FILE")]
    pub weights: PathBuf,
    /// The architecture the weights are for (width 1.0, batch norm).
    #[arg(long, value_enum)]
    pub model: Architecture,
    /// Side of the square input the model will see, pixels.
    #[arg(long)]
    pub image_size: u32,
    /// The checkpoint folder to write (then `--checkpoint DIR` everywhere).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Input normalisation: (gray/255 − mean) / std. Default: ImageNet's averaged over RGB
    /// (0.449, 0.226), what a torchvision ImageNet model expects of a gray image.
    #[arg(long)]
    pub mean: Option<f32>,
    #[arg(long)]
    pub std: Option<f32>,
    /// Output names in order (comma separated). Default: one per output of the file's head,
    /// named `output 0`, …. A head whose size differs is re-initialised.
    #[arg(long, value_delimiter = ',')]
    pub labels: Vec<String>,
    /// Folder of the run store (as `cxr8 serve --data-dir`): the import is listed there as a
    /// finished run, so the dashboard's predict page and Grad-CAM can use it.
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Do not list the import in the run store.
    #[arg(long)]
    pub no_register: bool,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The run: its id (under --ckpt-dir), its folder, or one epoch folder.
    #[arg(long, value_name = "RUN_ID|PATH")]
    pub checkpoint: String,
    #[arg(long, default_value = "ckpts", value_name = "DIR")]
    pub ckpt_dir: PathBuf,
    /// Export the last epoch instead of the best one.
    #[arg(long)]
    pub last: bool,
    /// The safetensors file to write.
    #[arg(long, value_name = "FILE.safetensors")]
    pub out: PathBuf,
}

pub fn import(args: ImportArgs) -> anyhow::Result<()> {
    let (imagenet_mean, imagenet_std) = weights::imagenet_gray();
    let std = args.std.unwrap_or(imagenet_std);
    if !(std.is_finite() && std > 0.0) {
        anyhow::bail!("--std must be a positive number, not {std}");
    }
    let request = ImportRequest {
        weights: args.weights,
        architecture: args.model,
        image_size: args.image_size,
        mean: args.mean.unwrap_or(imagenet_mean),
        std,
        labels: (!args.labels.is_empty()).then(|| args.labels.iter().map(|l| l.trim().to_string()).collect()),
        out: args.out,
    };
    let (dir, report, labels) =
        weights::import_checkpoint(&request).with_context(|| format!("importing {}", request.weights.display()))?;
    println!(
        "imported {} tensors of {} into {} ({} outputs: {})",
        report.tensors,
        request.architecture,
        dir.display(),
        labels.len(),
        labels.join(", ")
    );
    if report.stem_folded {
        println!("  the RGB stem was folded to one gray channel (summed over R, G, B)");
    }
    if let Some(note) = report.head_reason {
        println!("  classifier head re-initialised: {note}");
    }
    println!("use it with: --checkpoint {}", request.out.display());
    if !args.no_register {
        let store = crate::store::Store::open(&args.data_dir)
            .with_context(|| format!("opening the run store in {}", args.data_dir.display()))?;
        let run_dir = request.out.canonicalize().unwrap_or(request.out.clone());
        let config = crate::train::checkpoint::read_state_at(&dir)?.config;
        let source = request
            .weights
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let id = crate::service::runs::register_imported(&store, &config, &run_dir, &source)?;
        println!(
            "listed in {} as run {id} (the dashboard's runs and predict pages)",
            args.data_dir.display()
        );
    }
    Ok(())
}

pub fn export(args: ExportArgs) -> anyhow::Result<()> {
    let slot = if args.last { Slot::Last } else { Slot::Best };
    let ckpt = CheckpointRef::locate(&args.checkpoint, &args.ckpt_dir, slot)?;
    let bytes = weights::export_checkpoint(&ckpt).with_context(|| format!("exporting {}", args.checkpoint))?;
    std::fs::write(&args.out, &bytes).with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "wrote {} ({} bytes) from {}",
        args.out.display(),
        bytes.len(),
        ckpt.epoch_dir.display()
    );
    Ok(())
}
