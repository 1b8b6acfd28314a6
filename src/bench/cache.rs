//! `cxr8 bench cache`: our decode + resize pipeline against Python PIL on the same files and cores.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use rayon::prelude::*;
use serde::Serialize;

use super::reference::{benches_dir, ensure_venv_package, run_script, script, ReferenceError};
use super::CacheBenchArgs;
use crate::data::images::{self, ImageIndex, SquareResizer};

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

pub(super) fn bench_cache(args: CacheBenchArgs) -> anyhow::Result<()> {
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
        Err(why) => (None, Some(why.to_string())),
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

/// Runs benches/cache_reference.py in benches/.venv, creating the venv and installing Pillow
/// there on first use. Any failure becomes a message for the output, not an error.
fn run_pil(images: &Path, size: u32, repeat: usize, processes: usize) -> Result<serde_json::Value, ReferenceError> {
    let benches = benches_dir();
    let script = script(&benches, "cache_reference.py")?;
    let python = ensure_venv_package(&benches, "PIL", &[&["install", "--quiet", "pillow"]])?;
    let mut args: Vec<OsString> = vec!["--images".into(), images.into()];
    for (flag, value) in [
        ("--size", size.to_string()),
        ("--repeat", repeat.to_string()),
        ("--processes", processes.to_string()),
    ] {
        args.extend([flag.into(), value.into()]);
    }
    run_script(&python, &script, args)
}
