//! `cxr8 bench ...`: throughput measurements recorded in BENCHMARKS.md, each against a reference
//! measured in the same run where one exists. All benchmark code lives here, apart from the
//! product: `train` times Burn training steps (`train::throughput`), `augment` the loader,
//! `metadata` label files and the image cache, `cache` decoding against PIL, `web` the dashboard's
//! pages and live events, `gradcam` the Predict page's default Grad-CAM;
//! `reference` finds the Python that runs the PyTorch / PIL scripts under benches/.

mod augment;
mod cache;
mod gradcam;
mod metadata;
mod parity;
mod reference;
mod train;
mod web;

use std::path::PathBuf;

use clap::Subcommand;

use crate::model::{Architecture, NormKind};
use crate::train::backend::DeviceChoice;

pub use metadata::Memory;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Decode+resize images/s of our cache pipeline against Python PIL on the same files and cores.
    Cache(CacheBenchArgs),
    /// Training and inference images/s of one model on random inputs, optionally against PyTorch.
    Train(TrainBenchArgs),
    /// Batch building (augmentation + normalisation) images/s on synthetic images.
    Augment(AugmentBenchArgs),
    /// Dashboard render and SSE latency over a big temporary store (see BENCHMARKS.md "Dashboard").
    Web(WebBenchArgs),
    /// Full-NIH-scale metadata: label file stats and split timed, and a synthetic set's cache
    /// build with its peak memory (see RELIABILITY.md "Scale").
    Metadata(MetadataBenchArgs),
    /// Logit parity with torchvision for weight import and export, on the files
    /// benches/weights_parity.py makes (see BENCHMARKS.md "Weights").
    WeightsParity(parity::ParityArgs),
    /// Milliseconds for one image's probabilities, one Grad-CAM, and every label's Grad-CAM from
    /// one backbone pass (the default map's worst case) or from one pass each.
    Gradcam(GradCamBenchArgs),
}

#[derive(Debug, clap::Args)]
pub struct GradCamBenchArgs {
    #[arg(long, value_enum, default_value_t = Architecture::DenseNet121)]
    pub model: Architecture,
    /// Image side in px.
    #[arg(long, default_value_t = 224)]
    pub size: usize,
    /// Labels of the head (NIH has 14).
    #[arg(long, default_value_t = 14)]
    pub labels: usize,
    /// Timed repetitions; the best is reported (after one untimed run).
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
    pub device: DeviceChoice,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct MetadataBenchArgs {
    /// The label file to parse, summarise and split (NIH's full file by default).
    #[arg(long, default_value = "../shared/data/nih/Data_Entry_2017_v2020.csv.gz")]
    pub labels: PathBuf,
    /// Timed repetitions of the label-file work; the best is reported.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Synthetic images to generate and cache (0 skips the cache part). NIH has 112,120.
    #[arg(long, default_value_t = 112_120)]
    pub images: usize,
    /// Side of the generated PNGs, px.
    #[arg(long, default_value_t = 32)]
    pub png_side: u32,
    /// Side of the cached images, px.
    #[arg(long, default_value_t = 32)]
    pub cache_size: u32,
    /// Where the synthetic set goes (a new folder under the system temp folder by default);
    /// removed afterwards unless --keep.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    #[arg(long)]
    pub keep: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct WebBenchArgs {
    /// Runs in the temporary store.
    #[arg(long, default_value_t = 1000)]
    pub runs: usize,
    /// Epochs of the runs on the timed run and compare pages.
    #[arg(long, default_value_t = 200)]
    pub epochs: usize,
    /// Epochs of every other run.
    #[arg(long, default_value_t = 20)]
    pub list_epochs: usize,
    /// Runs on the compare page (the page takes at most 10).
    #[arg(long, default_value_t = 10)]
    pub compare: usize,
    /// SSE clients connected while training runs.
    #[arg(long, default_value_t = 100)]
    pub sse_clients: usize,
    /// What trains while they read: a real simple-cnn run on the CPU, or a CPU stand-in loop.
    #[arg(long, value_enum, default_value_t = web::Trainer::Real)]
    pub trainer: web::Trainer,
    /// Images in the synthetic demo set the real runs train on (one epoch at 64 px, split as usual).
    #[arg(long, default_value_t = 480)]
    pub demo_images: usize,
    /// Timed repetitions of each page.
    #[arg(long, default_value_t = 25)]
    pub iterations: usize,
    /// Epochs whose commit-to-SSE latency is timed.
    #[arg(long, default_value_t = 50)]
    pub sse_epochs: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct TrainBenchArgs {
    #[arg(long, value_enum, default_value_t = Architecture::ResNet18)]
    pub model: Architecture,
    /// Image side in px.
    #[arg(long, default_value_t = 128)]
    pub size: usize,
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Timed training steps, and as many timed inference batches.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Untimed steps before each timed part.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Channel width multiplier (1.0 = the published model).
    #[arg(long, default_value_t = 1.0)]
    pub width: f32,
    #[arg(long, value_enum, default_value_t = NormKind::Batch)]
    pub norm: NormKind,
    /// CPU threads for us and for PyTorch (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also run benches/train_reference.py (PyTorch, same device and threads) and print the ratio.
    #[arg(long)]
    pub reference: bool,
    /// Python for --reference, used as it is (it must import torch) instead of benches/.venv,
    /// which is otherwise created and filled from PyPI on first use.
    #[arg(long, env = "CXR8_PYTHON", value_name = "PATH")]
    pub python: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct AugmentBenchArgs {
    /// Image side in px.
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    #[arg(long, default_value_t = 50)]
    pub batches: usize,
    /// Loader worker threads (0 = the consumer's thread).
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
}

#[derive(Debug, clap::Args)]
pub struct CacheBenchArgs {
    /// Folder of PNG/JPEG files to decode and resize.
    #[arg(long, default_value = "../shared/data/nih/images_1024")]
    pub images: PathBuf,
    /// Output side in px.
    #[arg(long, default_value_t = 256)]
    pub size: u32,
    /// Timed passes per side; the best is reported (after one untimed warm-up pass).
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Threads for us and processes for PIL (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Cache(args) => cache::bench_cache(args),
        BenchCommand::Train(args) => train::bench_train(args),
        BenchCommand::Web(args) => web::bench_web(args),
        BenchCommand::Metadata(args) => metadata::bench_metadata(args),
        BenchCommand::WeightsParity(args) => parity::bench_parity(args),
        BenchCommand::Gradcam(args) => gradcam::bench_gradcam(args),
        BenchCommand::Augment(args) => {
            anyhow::ensure!(
                args.size >= 8 && args.batch >= 1 && args.batches >= 1,
                "--size must be at least 8 and --batch, --batches at least 1"
            );
            println!(
                "{}",
                augment::bench_augment(args.size, args.batch, args.batches, args.workers)
            );
            Ok(())
        }
    }
}
