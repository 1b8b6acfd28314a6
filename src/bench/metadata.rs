//! Metadata and cache work at full NIH scale, measured for `cxr8 bench metadata`: parsing the
//! 112,120-row label file, its statistics and a patient-disjoint split (timed), and building the
//! decode cache of a synthetic data set of as many small PNGs while sampling the process's memory,
//! to show the build streams images through a file-backed map instead of holding them in RAM.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use serde::Serialize;

use anyhow::Context;

use super::MetadataBenchArgs;
use crate::data::cache::{self, BuildOptions};
use crate::data::demo::{encode_png, NIH_HEADER};
use crate::data::images::ImageIndex;
use crate::data::labels::NIH_FINDINGS;
use crate::data::split::{self, SplitOptions};
use crate::data::{stats, Error, LabelTable, Result};

/// How often the memory sampler reads `/proc/self/status` during a cache build.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);
/// Images per patient of the synthetic set (NIH averages 3.6).
const IMAGES_PER_PATIENT: usize = 4;

/// Timings of the label-file work, each step on its own (seconds).
#[derive(Debug, Clone, Serialize)]
pub struct LabelTimings {
    pub source: PathBuf,
    pub rows: usize,
    pub patients: usize,
    /// Read (and gunzip) plus parse.
    pub load_s: f64,
    pub stats_s: f64,
    /// Default patient split (70/10/20, seed 42), checked patient-disjoint afterwards (untimed).
    pub split_s: f64,
    pub total_s: f64,
    pub train: usize,
    pub val: usize,
    pub test: usize,
}

/// Parses, summarises and splits `label_file`, timing each step.
pub fn time_label_file(label_file: &Path) -> Result<LabelTimings> {
    let started = Instant::now();
    let table = LabelTable::load(label_file)?;
    let load_s = started.elapsed().as_secs_f64();

    let step = Instant::now();
    let summary = stats::compute(&table);
    let stats_s = step.elapsed().as_secs_f64();

    let step = Instant::now();
    let parts = split::split(&table, &SplitOptions::default())?;
    let split_s = step.elapsed().as_secs_f64();
    let total_s = started.elapsed().as_secs_f64();

    check_patient_disjoint(&table, &parts)?;
    Ok(LabelTimings {
        source: label_file.to_path_buf(),
        rows: table.len(),
        patients: summary.patients,
        load_s,
        stats_s,
        split_s,
        total_s,
        train: parts.train.len(),
        val: parts.val.len(),
        test: parts.test.len(),
    })
}

/// A split that shares a patient between parts would make the timing meaningless (and the
/// split wrong), so the benchmark refuses to report it.
fn check_patient_disjoint(table: &LabelTable, parts: &split::Split) -> Result<()> {
    let patients =
        |rows: &[usize]| -> HashSet<&str> { rows.iter().map(|&r| table.records[r].patient.as_str()).collect() };
    let (train, val, test) = (patients(&parts.train), patients(&parts.val), patients(&parts.test));
    if !train.is_disjoint(&val) || !train.is_disjoint(&test) || !val.is_disjoint(&test) {
        return Err(Error::Invalid("the split shares patients between parts".into()));
    }
    Ok(())
}

/// Memory of this process as `/proc/self/status` reports it, in KiB.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Memory {
    /// Resident now.
    pub rss_kib: u64,
    /// Resident anonymous memory (heap, stacks): what a build holding images in RAM would grow.
    pub anon_kib: u64,
    /// Resident file-backed pages (the memory-mapped cache file); the kernel may drop them.
    pub file_kib: u64,
    /// Peak resident size of the process so far (`VmHWM`).
    pub hwm_kib: u64,
}

impl Memory {
    /// Reads `/proc/self/status`; zeros where it is not available (not Linux).
    pub fn now() -> Memory {
        let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| -> u64 {
            text.lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        Memory {
            rss_kib: field("VmRSS:"),
            anon_kib: field("RssAnon:"),
            file_kib: field("RssFile:"),
            hwm_kib: field("VmHWM:"),
        }
    }
}

/// Samples memory on a thread until dropped; keeps the peak of each figure.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Memory>>,
}

impl Sampler {
    fn start() -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = Memory::default();
            loop {
                let m = Memory::now();
                peak.rss_kib = peak.rss_kib.max(m.rss_kib);
                peak.anon_kib = peak.anon_kib.max(m.anon_kib);
                peak.file_kib = peak.file_kib.max(m.file_kib);
                peak.hwm_kib = peak.hwm_kib.max(m.hwm_kib);
                if flag.load(Ordering::Relaxed) {
                    return peak;
                }
                std::thread::sleep(SAMPLE_EVERY);
            }
        });
        Sampler {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Memory {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or_default()
    }
}

/// What building the cache of a synthetic set did.
#[derive(Debug, Clone, Serialize)]
pub struct CacheTimings {
    pub images: usize,
    /// Side of the generated PNGs and of the cached images, px.
    pub png_side: u32,
    pub cache_size: u32,
    pub generate_s: f64,
    /// Label file parse and folder scan.
    pub index_s: f64,
    pub build_s: f64,
    pub images_per_s: f64,
    pub cache_bytes: u64,
    /// Before the build (after generating, parsing and scanning).
    pub before: Memory,
    /// Peaks sampled during the build.
    pub peak: Memory,
}

/// Writes `count` small gray PNGs (`png_side`²) and an NIH-format label file for them into `dir`,
/// then builds their cache at `cache_size` in `dir/cache`, sampling memory while it runs.
pub fn time_synthetic_cache(dir: &Path, count: usize, png_side: u32, cache_size: u32) -> Result<CacheTimings> {
    if count == 0 || png_side == 0 || cache_size == 0 {
        return Err(Error::Invalid(
            "images, PNG side and cache size must be at least 1".into(),
        ));
    }
    let started = Instant::now();
    let images_dir = dir.join("images");
    std::fs::create_dir_all(&images_dir).map_err(|e| Error::io(&images_dir, e))?;
    let label_file = write_synthetic(dir, &images_dir, count, png_side)?;
    let generate_s = started.elapsed().as_secs_f64();

    let step = Instant::now();
    let table = LabelTable::load(&label_file)?;
    let index = ImageIndex::scan(&images_dir)?;
    let index_s = step.elapsed().as_secs_f64();

    let before = Memory::now();
    let sampler = Sampler::start();
    let step = Instant::now();
    let options = BuildOptions {
        force: true,
        ..BuildOptions::default()
    };
    let built = cache::build(&table, &index, cache_size, dir.join("cache"), &options);
    let build_s = step.elapsed().as_secs_f64();
    let peak = sampler.finish();
    let (cache, report) = built?;
    let cache_bytes = std::fs::metadata(cache.path()).map(|m| m.len()).unwrap_or(0);
    Ok(CacheTimings {
        images: report.cached,
        png_side,
        cache_size,
        generate_s,
        index_s,
        build_s,
        images_per_s: report.cached as f64 / build_s.max(1e-9),
        cache_bytes,
        before,
        peak,
    })
}

/// The synthetic PNGs (a gradient plus a per-image offset, so files differ) and their label
/// file; returns the label file's path. Files are written in parallel, none kept in memory.
fn write_synthetic(dir: &Path, images_dir: &Path, count: usize, side: u32) -> Result<PathBuf> {
    let name = |i: usize| format!("{:08}_{:03}.png", i / IMAGES_PER_PATIENT + 1, i % IMAGES_PER_PATIENT);
    (0..count).into_par_iter().try_for_each(|i| -> Result<()> {
        let pixels: Vec<u8> = (0..side * side)
            .map(|p| ((p % side + p / side) as usize + i).wrapping_mul(7) as u8)
            .collect();
        let png = encode_png(&pixels, side).map_err(|e| Error::Invalid(format!("encoding a PNG: {e}")))?;
        let path = images_dir.join(name(i));
        std::fs::write(&path, png).map_err(|e| Error::io(&path, e))
    })?;
    let label_file = dir.join("Data_Entry_synthetic.csv");
    let file = std::fs::File::create(&label_file).map_err(|e| Error::io(&label_file, e))?;
    let mut out = std::io::BufWriter::new(file);
    let write = |out: &mut std::io::BufWriter<std::fs::File>, line: String| {
        out.write_all(line.as_bytes()).map_err(|e| Error::io(&label_file, e))
    };
    write(&mut out, format!("{NIH_HEADER}\n"))?;
    for i in 0..count {
        // One finding in three, cycling through the 14, so stats and splits have labels to count.
        let finding = if i % 3 == 0 {
            NIH_FINDINGS[(i / 3) % NIH_FINDINGS.len()]
        } else {
            "No Finding"
        };
        let line = format!(
            "{},{finding},{},{},{},{},PA,{side},{side},0.143,0.143\n",
            name(i),
            i % IMAGES_PER_PATIENT,
            i / IMAGES_PER_PATIENT + 1,
            20 + i % 60,
            if i % 2 == 0 { "M" } else { "F" }
        );
        write(&mut out, line)?;
    }
    out.flush().map_err(|e| Error::io(&label_file, e))?;
    Ok(label_file)
}

pub(super) fn bench_metadata(args: MetadataBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.repeat >= 1, "--repeat must be at least 1");
    let mut labels: Option<LabelTimings> = None;
    for _ in 0..args.repeat {
        let t = time_label_file(&args.labels)
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
        let result = time_synthetic_cache(&dir, args.images, args.png_side, args.cache_size);
        if !args.keep {
            let _ = std::fs::remove_dir_all(&dir);
        }
        Some(result.context("building the synthetic cache")?)
    };
    let end = Memory::now();
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
    fn a_small_synthetic_set_is_generated_cached_and_measured() {
        let dir = tempfile::tempdir().unwrap();
        let timings = time_synthetic_cache(dir.path(), 50, 16, 8).unwrap();
        assert_eq!(timings.images, 50, "every generated image is cached");
        assert!(timings.cache_bytes >= 192 + 50 * 64, "header and 50 images of 8x8");
        let table = LabelTable::load(dir.path().join("Data_Entry_synthetic.csv")).unwrap();
        assert_eq!(table.len(), 50);
        assert_eq!(
            stats::compute(&table).patients,
            13,
            "four images per patient, rounded up"
        );
        if cfg!(target_os = "linux") {
            assert!(timings.peak.rss_kib > 0 && timings.peak.hwm_kib >= timings.peak.rss_kib);
        }
    }

    #[test]
    fn the_label_timings_report_a_patient_disjoint_split() {
        let dir = tempfile::tempdir().unwrap();
        let timings = time_synthetic_cache(dir.path(), 40, 8, 8).unwrap();
        assert_eq!(timings.images, 40);
        let labels = time_label_file(&dir.path().join("Data_Entry_synthetic.csv")).unwrap();
        assert_eq!(labels.rows, 40);
        assert_eq!(labels.patients, 10);
        assert_eq!(labels.train + labels.val + labels.test, 40);
    }
}
