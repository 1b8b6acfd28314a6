//! `cxr8 bench ...`: throughput measurements recorded in BENCHMARKS.md.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use clap::Subcommand;
use rayon::prelude::*;
use serde::Serialize;

use crate::data::images::{self, ImageIndex, SquareResizer};
use crate::model::{Architecture, ModelSpec, NormKind};
use crate::train::backend::{self, BackendKind, DeviceChoice};
use crate::train::bench::{TrainBench, TrainBenchConfig};

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
    #[arg(long, value_enum, default_value_t = crate::web::bench::Trainer::Real)]
    pub trainer: crate::web::bench::Trainer,
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
        BenchCommand::Cache(args) => bench_cache(args),
        BenchCommand::Train(args) => bench_train(args),
        BenchCommand::Web(args) => bench_web(args),
        BenchCommand::Metadata(args) => bench_metadata(args),
        BenchCommand::Augment(args) => {
            anyhow::ensure!(
                args.size >= 8 && args.batch >= 1 && args.batches >= 1,
                "--size must be at least 8 and --batch, --batches at least 1"
            );
            println!(
                "{}",
                crate::train::loader::bench_augment(args.size, args.batch, args.batches, args.workers)
            );
            Ok(())
        }
    }
}

#[derive(Debug, Serialize)]
struct Side {
    workers: usize,
    seconds_best: f64,
    images_per_sec: f64,
}

#[derive(Debug, Serialize)]
struct CacheBench {
    images: usize,
    size: u32,
    repeat: usize,
    ours: Side,
    /// PIL's JSON as printed by benches/cache_reference.py.
    pil: Option<serde_json::Value>,
    /// Why PIL could not be measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pil_error: Option<String>,
    ratio: Option<f64>,
}

fn bench_cache(args: CacheBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.repeat >= 1, "--repeat must be at least 1");
    let index = ImageIndex::scan(&args.images).context("scanning the benchmark images")?;
    anyhow::ensure!(!index.is_empty(), "no PNG/JPEG files in {}", args.images.display());
    let files: Vec<PathBuf> = index
        .names()
        .iter()
        .map(|n| index.get(n).expect("listed").to_path_buf())
        .collect();
    let workers = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .build()
        .context("starting decoder threads")?;
    let side = args.size as usize * args.size as usize;
    let pass = || -> anyhow::Result<()> {
        pool.install(|| {
            files
                .par_iter()
                .map_init(
                    || (SquareResizer::new(), vec![0u8; side]),
                    |(resizer, out), file| resizer.resize_into(&images::load_gray(file)?, args.size, out),
                )
                .collect::<Result<Vec<()>, _>>()
        })?;
        Ok(())
    };
    pass().context("decoding the benchmark images")?;
    let mut best = f64::INFINITY;
    for _ in 0..args.repeat {
        let start = Instant::now();
        pass()?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    let ours = Side {
        workers,
        seconds_best: best,
        images_per_sec: files.len() as f64 / best,
    };

    let pil = run_pil(&args.images, args.size, args.repeat, workers);
    let (pil, pil_error) = match pil {
        Ok(value) => (Some(value), None),
        Err(why) => (None, Some(why)),
    };
    let ratio = pil
        .as_ref()
        .and_then(|p| p["images_per_sec"].as_f64())
        .map(|theirs| ours.images_per_sec / theirs);
    let result = CacheBench {
        images: files.len(),
        size: args.size,
        repeat: args.repeat,
        ours,
        pil,
        pil_error,
        ratio,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
        return Ok(());
    }
    println!(
        "decode + gray + Lanczos resize to {}², {} images from {}, best of {} passes",
        result.size,
        result.images,
        args.images.display(),
        result.repeat
    );
    println!(
        "cxr8 (Rust):  {:>7.1} images/s  ({} threads)",
        result.ours.images_per_sec, result.ours.workers
    );
    match (&result.pil, &result.pil_error) {
        (Some(pil), _) => println!(
            "Python PIL:   {:>7.1} images/s  ({} processes, Pillow {})",
            pil["images_per_sec"].as_f64().unwrap_or(f64::NAN),
            pil["processes"],
            pil["pil_version"].as_str().unwrap_or("?")
        ),
        (None, why) => println!("Python PIL:   not measured: {}", why.as_deref().unwrap_or("unknown")),
    }
    if let Some(ratio) = result.ratio {
        println!("ratio:        {ratio:.2}× PIL's throughput");
    }
    Ok(())
}

#[derive(Debug, Serialize)]
struct TrainBenchReport {
    device: String,
    threads: usize,
    width: f32,
    cxr8: TrainBench,
    /// PyTorch's JSON as printed by benches/train_reference.py.
    #[serde(skip_serializing_if = "Option::is_none")]
    pytorch: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pytorch_error: Option<String>,
    /// cxr8 / PyTorch training images/s.
    #[serde(skip_serializing_if = "Option::is_none")]
    train_ratio: Option<f64>,
    /// cxr8 / PyTorch inference images/s.
    #[serde(skip_serializing_if = "Option::is_none")]
    infer_ratio: Option<f64>,
}

fn bench_train(args: TrainBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.width > 0.0 && args.width.is_finite(),
        "--width must be a positive number, e.g. 1.0 or 0.25"
    );
    if let Some(threads) = args.threads {
        backend::set_cpu_threads(threads).context("setting --threads")?;
    }
    let threads = backend::cpu_threads();
    if let (true, Some(python)) = (args.reference, &args.python) {
        // Before the benchmark, so a wrong --python does not cost its minutes.
        check_python_module(python, "torch").map_err(anyhow::Error::msg)?;
    }
    let resolved = backend::resolve(args.device).context("choosing the device")?;
    eprintln!("{}", resolved.message);
    let config = TrainBenchConfig {
        spec: ModelSpec {
            architecture: args.model,
            norm: args.norm,
            width: args.width,
            dropout: 0.0,
        },
        size: args.size,
        batch: args.batch,
        steps: args.steps,
        warmup: args.warmup,
        seed: 42,
    };
    let cxr8 = crate::train::bench::bench_train(&config, &resolved.kind.train_device());
    let device = match &resolved.kind {
        BackendKind::Cpu => "cpu".to_string(),
        BackendKind::Cuda(info) => format!("cuda ({})", info.name),
    };
    let cxr8 = cxr8.map_err(anyhow::Error::msg)?;
    let (pytorch, pytorch_error) = if args.reference {
        match run_torch(&args, threads, resolved.is_cuda()) {
            Ok(value) => (Some(value), None),
            Err(why) => (None, Some(why)),
        }
    } else {
        (None, None)
    };
    let ratio = |key: &str, ours: f64| pytorch.as_ref().and_then(|p| p[key].as_f64()).map(|t| ours / t);
    let report = TrainBenchReport {
        train_ratio: ratio("train_images_per_s", cxr8.train_images_per_s),
        infer_ratio: ratio("infer_images_per_s", cxr8.infer_images_per_s),
        device,
        threads,
        width: args.width,
        cxr8,
        pytorch,
        pytorch_error,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let c = &report.cxr8;
    println!(
        "{} ×{} at {}², batch {}, {} timed steps after {} warm-up, {} on {} threads, {:.1} M params",
        c.model,
        report.width,
        c.size,
        c.batch,
        c.steps,
        c.warmup,
        report.device,
        report.threads,
        c.params as f64 / 1e6
    );
    let mib = |bytes: Option<u64>| bytes.map_or("?".to_string(), |b| format!("{:.0}", b as f64 / (1u64 << 20) as f64));
    println!(
        "cxr8 (Burn):  train {:>7.1} images/s ({:>7.1} ms/step)   inference {:>7.1} images/s   peak RSS {} MiB",
        c.train_images_per_s,
        c.train_ms_per_step,
        c.infer_images_per_s,
        mib(c.peak_rss_bytes)
    );
    match (&report.pytorch, &report.pytorch_error) {
        (Some(p), _) => println!(
            "PyTorch {}: train {:>7.1} images/s ({:>7.1} ms/step)   inference {:>7.1} images/s   peak RSS {} MiB",
            p["torch_version"].as_str().unwrap_or("?"),
            p["train_images_per_s"].as_f64().unwrap_or(f64::NAN),
            p["train_ms_per_step"].as_f64().unwrap_or(f64::NAN),
            p["infer_images_per_s"].as_f64().unwrap_or(f64::NAN),
            mib(p["peak_rss_bytes"].as_u64())
        ),
        (None, Some(why)) => println!("PyTorch: not measured: {why}"),
        (None, None) => {}
    }
    if let (Some(train), Some(infer)) = (report.train_ratio, report.infer_ratio) {
        println!("ratio:        train {train:.2}×, inference {infer:.2}× PyTorch's images/s");
    }
    Ok(())
}

/// Runs benches/train_reference.py with the same model, shapes and device, with `--python` or in
/// benches/.venv, installing torch there on first use (see [`ensure_venv_package`]). Failures
/// become a message for the output.
fn run_torch(args: &TrainBenchArgs, threads: usize, cuda: bool) -> Result<serde_json::Value, String> {
    let benches = benches_dir();
    let script = benches.join("train_reference.py");
    if !script.is_file() {
        return Err(format!("{} not found", script.display()));
    }
    let python = match &args.python {
        Some(python) => python.clone(),
        None => ensure_venv_package(&benches, "torch", TORCH_INSTALL)?,
    };
    let out = Command::new(&python)
        .arg(&script)
        .args(["--model", args.model.name()])
        .args(["--size", &args.size.to_string(), "--batch", &args.batch.to_string()])
        .args(["--steps", &args.steps.to_string(), "--warmup", &args.warmup.to_string()])
        .args(["--width", &args.width.to_string(), "--threads", &threads.to_string()])
        .args(["--norm", norm_name(args.norm)])
        .args(["--device", if cuda { "cuda" } else { "cpu" }])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("unexpected output from {}: {e}", script.display()))
}

fn norm_name(norm: NormKind) -> &'static str {
    match norm {
        NormKind::Batch => "batch",
        NormKind::Group => "group",
        NormKind::Layer => "layer",
        NormKind::Instance => "instance",
    }
}

/// Whether `python` (a `--python` interpreter, used as it is) has `module`; the error names the
/// interpreter and says why not. Finds the module without importing it (torch takes seconds).
fn check_python_module(python: &Path, module: &str) -> Result<(), String> {
    let code = format!("import importlib.util, sys; sys.exit(importlib.util.find_spec('{module}') is None)");
    let out = Command::new(python)
        .args(["-c", &code])
        .output()
        .map_err(|e| format!("--python {}: cannot run it ({e})", python.display()))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let why = match stderr.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(line) => format!("checking failed: {}", line.trim()),
        None => format!("`import {module}` would fail: it is not installed there"),
    };
    Err(format!(
        "--python {}: {why}; give a Python that has {module}, or leave out --python (and \
         CXR8_PYTHON) to use benches/.venv",
        python.display()
    ))
}

/// pip arguments that install torch from PyPI. Its Linux x86-64 wheels all need the nvidia-* CUDA
/// packages to import (even on the CPU; `--no-deps` fails at `import torch`), so this is the
/// plain install: ~5 GB in the venv, once (see BENCHMARKS.md).
const TORCH_INSTALL: &[&[&str]] = &[&["install", "--quiet", "torch"]];

/// The venv's python, with `module` importable, creating benches/.venv and running each pip
/// argument list of `installs` when it is not.
fn ensure_venv_package(benches: &Path, module: &str, installs: &[&[&str]]) -> Result<PathBuf, String> {
    let venv = benches.join(".venv");
    let python = venv.join("bin/python");
    let importable = |python: &Path| {
        Command::new(python)
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if importable(&python) {
        return Ok(python);
    }
    eprintln!("setting up {} with {module} (once)...", venv.display());
    let step = |program: &Path, step_args: &[&str]| -> Result<(), String> {
        let out = Command::new(program)
            .args(step_args)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`{} {}` failed: {}",
                program.display(),
                step_args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    if !python.is_file() {
        step(Path::new("python3"), &["-m", "venv", &venv.to_string_lossy()])?;
    }
    for install in installs {
        step(&venv.join("bin/pip"), install)?;
    }
    if importable(&python) {
        Ok(python)
    } else {
        Err(format!("{module} installed but `import {module}` still fails"))
    }
}

/// The benches/ folder: in the current directory when run from the crate root, else the source tree's.
fn benches_dir() -> PathBuf {
    let here = Path::new("benches");
    if here.join("cache_reference.py").is_file() {
        here.to_path_buf()
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("benches")
    }
}

/// Runs benches/cache_reference.py in benches/.venv, creating the venv and installing Pillow
/// there on first use. Any failure becomes a message for the output, not an error.
fn run_pil(images: &Path, size: u32, repeat: usize, processes: usize) -> Result<serde_json::Value, String> {
    let benches = benches_dir();
    let script = benches.join("cache_reference.py");
    if !script.is_file() {
        return Err(format!("{} not found", script.display()));
    }
    let venv = benches.join(".venv");
    let python = venv.join("bin/python");
    let has_pil = |python: &Path| {
        Command::new(python)
            .args(["-c", "import PIL"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !has_pil(&python) {
        eprintln!("setting up {} with Pillow (once)...", venv.display());
        let step = |program: &Path, step_args: &[&str]| -> Result<(), String> {
            let out = Command::new(program)
                .args(step_args)
                .output()
                .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "`{} {}` failed: {}",
                    program.display(),
                    step_args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        };
        let venv_str = venv.to_string_lossy();
        step(Path::new("python3"), &["-m", "venv", &venv_str])?;
        step(&venv.join("bin/pip"), &["install", "--quiet", "pillow"])?;
        if !has_pil(&python) {
            return Err("Pillow installed but `import PIL` still fails".into());
        }
    }
    let out = Command::new(&python)
        .arg(&script)
        .arg("--images")
        .arg(images)
        .args(["--size", &size.to_string(), "--repeat", &repeat.to_string()])
        .args(["--processes", &processes.to_string()])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("unexpected output from {}: {e}", script.display()))
}

fn bench_web(args: WebBenchArgs) -> anyhow::Result<()> {
    let config = crate::web::bench::WebBenchConfig {
        runs: args.runs,
        list_epochs: args.list_epochs,
        epochs: args.epochs,
        compare: args.compare,
        sse_clients: args.sse_clients,
        iterations: args.iterations,
        sse_epochs: args.sse_epochs,
        trainer: args.trainer,
        demo_images: args.demo_images,
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let report = runtime.block_on(crate::web::bench::run(config))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

fn bench_metadata(args: MetadataBenchArgs) -> anyhow::Result<()> {
    use crate::data::bench_meta;
    anyhow::ensure!(args.repeat >= 1, "--repeat must be at least 1");
    let mut labels: Option<bench_meta::LabelTimings> = None;
    for _ in 0..args.repeat {
        let t = bench_meta::time_label_file(&args.labels)
            .with_context(|| format!("timing {} (give another file with --labels)", args.labels.display()))?;
        if labels.as_ref().is_none_or(|best| t.total_s < best.total_s) {
            labels = Some(t);
        }
    }
    let labels = labels.expect("at least one repetition");
    let cache = if args.images == 0 {
        None
    } else {
        let dir = args
            .work_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join(format!("cxr8-bench-metadata-{}", std::process::id())));
        anyhow::ensure!(
            !dir.exists() || dir.read_dir().map(|mut d| d.next().is_none()).unwrap_or(false),
            "{} is not empty; give an empty or new --work-dir",
            dir.display()
        );
        let result = bench_meta::time_synthetic_cache(&dir, args.images, args.png_side, args.cache_size);
        if !args.keep {
            let _ = std::fs::remove_dir_all(&dir);
        }
        Some(result.context("building the synthetic cache")?)
    };
    let end = bench_meta::Memory::now();
    if args.json {
        println!(
            "{}",
            serde_json::json!({"labels": labels, "cache": cache, "process_hwm_kib": end.hwm_kib})
        );
        return Ok(());
    }
    println!(
        "labels {}: {} rows, {} patients; best of {}: load {:.3} s, stats {:.3} s, split {:.3} s, total {:.3} s \
         (train/val/test {}/{}/{}, patient-disjoint)",
        labels.source.display(),
        labels.rows,
        labels.patients,
        args.repeat,
        labels.load_s,
        labels.stats_s,
        labels.split_s,
        labels.total_s,
        labels.train,
        labels.val,
        labels.test
    );
    if let Some(c) = cache {
        let mib = |kib: u64| kib as f64 / 1024.0;
        println!(
            "cache: {} synthetic {}px PNGs -> {}px in {:.1} s = {:.0} images/s (generated in {:.1} s, indexed in {:.2} s), \
             cache file {:.1} MiB",
            c.images,
            c.png_side,
            c.cache_size,
            c.build_s,
            c.images_per_s,
            c.generate_s,
            c.index_s,
            c.cache_bytes as f64 / (1024.0 * 1024.0)
        );
        println!(
            "memory before build: RSS {:.1} MiB (anon {:.1}); peak during build: RSS {:.1} MiB, anon {:.1} MiB, \
             file-backed {:.1} MiB; process VmHWM {:.1} MiB",
            mib(c.before.rss_kib),
            mib(c.before.anon_kib),
            mib(c.peak.rss_kib),
            mib(c.peak.anon_kib),
            mib(c.peak.file_kib),
            mib(end.hwm_kib)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_that_cannot_run_or_import_is_named_in_the_error() {
        let missing = Path::new("/nonexistent/cxr8-test/python3");
        let why = check_python_module(missing, "torch").unwrap_err();
        assert!(
            why.contains("--python /nonexistent/cxr8-test/python3") && why.contains("cannot run"),
            "{why}"
        );

        // Only where a python3 is installed; the module is one no interpreter has.
        if Command::new("python3")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            check_python_module(Path::new("python3"), "sys").unwrap();
            let why = check_python_module(Path::new("python3"), "cxr8_no_such_module").unwrap_err();
            assert!(
                why.contains("--python python3: `import cxr8_no_such_module` would fail"),
                "{why}"
            );
        }
    }
}
