//! `cxr8 bench train`: training and inference images/s of one model, optionally against the same
//! step in PyTorch (benches/train_reference.py).

use anyhow::Context;
use serde::Serialize;

use super::reference::{
    benches_dir, check_python_module, ensure_venv_package, run_script, script, ReferenceError, TORCH_INSTALL,
};
use super::TrainBenchArgs;
use crate::model::{ModelSpec, NormKind};
use crate::train::backend::{self, BackendKind, Precision};
use crate::train::throughput::{self, StepTiming, StepTimingConfig};

#[derive(Debug, Serialize)]
struct TrainBenchReport {
    device: String,
    threads: usize,
    width: f32,
    cxr8: StepTiming,
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

pub(super) fn bench_train(args: TrainBenchArgs) -> anyhow::Result<()> {
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
        check_python_module(python, "torch")?;
    }
    let resolved = backend::resolve(args.device).context("choosing the device")?;
    eprintln!("{}", resolved.message);
    let config = StepTimingConfig {
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
        precision: Precision::F32,
        time_cap: None,
    };
    let cxr8 = throughput::measure_steps(&config, &resolved.kind.train_device());
    let device = match &resolved.kind {
        BackendKind::Cpu => "cpu".to_string(),
        BackendKind::Cuda(info) => format!("cuda ({})", info.name),
    };
    let cxr8 = cxr8?;
    let (pytorch, pytorch_error) = if args.reference {
        match run_torch(&args, threads, resolved.is_cuda()) {
            Ok(value) => (Some(value), None),
            Err(why) => (None, Some(why.to_string())),
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
fn run_torch(args: &TrainBenchArgs, threads: usize, cuda: bool) -> Result<serde_json::Value, ReferenceError> {
    let benches = benches_dir();
    let script = script(&benches, "train_reference.py")?;
    let python = match &args.python {
        Some(python) => python.clone(),
        None => ensure_venv_package(&benches, "torch", TORCH_INSTALL)?,
    };
    let options = [
        ("--model", args.model.name().to_string()),
        ("--size", args.size.to_string()),
        ("--batch", args.batch.to_string()),
        ("--steps", args.steps.to_string()),
        ("--warmup", args.warmup.to_string()),
        ("--width", args.width.to_string()),
        ("--threads", threads.to_string()),
        ("--norm", norm_name(args.norm).to_string()),
        ("--device", if cuda { "cuda" } else { "cpu" }.to_string()),
    ];
    let args = options
        .into_iter()
        .flat_map(|(flag, value)| [flag.into(), value.into()])
        .collect();
    run_script(&python, &script, args)
}

fn norm_name(norm: NormKind) -> &'static str {
    match norm {
        NormKind::Batch => "batch",
        NormKind::Group => "group",
        NormKind::Layer => "layer",
        NormKind::Instance => "instance",
    }
}
