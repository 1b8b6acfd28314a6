//! How long a run will take before it starts, and the new-run form's machine-sized defaults.
//!
//! An estimate times the run's own training step (forward, loss, backward, optimiser) and
//! inference batch for its model, image size, batch and precision on the backend it would train
//! on ([`crate::train::throughput`]: one warm-up, then a few timed steps, capped in time), and
//! scales the per-image costs by the chosen data set's split sizes and the epochs. The timing is
//! cached in the store under the machine (CPU model and threads, or GPU name), backend, model and
//! shapes, so each configuration is measured once per machine, across restarts.
//!
//! While a run is queued or training, an uncached configuration is not measured: the run would
//! slow down and the figure would read low. The estimate then says it is deferred; cached
//! figures are still served.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Result;
use crate::data::cache;
use crate::data::demo::{self, DemoConfig};
use crate::store::Store;
use crate::train::backend::{self, BackendKind, DeviceChoice};
use crate::train::job::{self, JobPaths};
use crate::train::presets;
use crate::train::throughput::{self, StepTimingConfig};
use crate::train::{FieldError, TrainConfig};

/// Above this many seconds the form asks "start anyway?" before queueing a run.
pub const CONFIRM_ABOVE_SECONDS: f64 = 3600.0;

/// Images per second per CPU thread that building the image cache decodes and resizes: 1024²
/// NIH PNGs, `cxr8 dataset cache` at 157 images/s on 2 threads (BENCHMARKS.md "Cache").
const CACHE_IMAGES_PER_SECOND_PER_THREAD: f64 = 78.0;
/// The source size that rate was measured at; decoding time grows with the pixels.
const CACHE_RATE_PIXELS: f64 = 1024.0 * 1024.0;
/// Small images do not build faster than this per thread (files, resizing and hashing remain).
const CACHE_MAX_IMAGES_PER_SECOND_PER_THREAD: f64 = 1000.0;

/// The CPU backend's per-image cost hardly depends on the batch beyond a few images (simple-cnn
/// at 64 px: the same images/s at batch 8 and 32, BENCHMARKS.md "CPU defaults"), so a CPU probe
/// uses at most this batch, and half of it above [`CPU_SMALL_PROBE_ABOVE_PX`]: a 224-px
/// resnet-18 step of 8 took 8 s on two busy cores. GPUs are timed at the run's batch, which
/// decides how busy the device is.
const CPU_PROBE_BATCH: usize = 8;
const CPU_SMALL_PROBE_ABOVE_PX: u32 = 128;
/// Untimed steps before timing: allocation and (on CUDA) kernel autotuning.
const PROBE_WARMUP: usize = 1;
/// Timed training steps and inference batches at most: many for fast steps, whose few
/// milliseconds each are at the mercy of the scheduler, bounded by the time cap for slow ones.
const PROBE_STEPS: usize = 20;
/// Each timed phase stops after this, having timed at least one step.
const PROBE_TIME_CAP: Duration = Duration::from_secs(3);
/// Part of the cache key: a new cxr8 may train faster, so its timings are its own.
const KEY_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What one probe measures: a run's step at its model, image size, batch and precision.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub config: TrainConfig,
    /// The batch timed (the run's, or [`CPU_PROBE_BATCH`] on the CPU).
    pub batch: usize,
    pub backend: BackendKind,
}

/// A measured step, as cached: milliseconds per training step and per inference batch of `batch`
/// images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepCost {
    pub batch: usize,
    pub train_ms_per_step: f64,
    pub infer_ms_per_batch: f64,
    /// How many steps and batches were timed (after the warm-up).
    pub timed_steps: usize,
    pub timed_batches: usize,
}

impl StepCost {
    fn train_seconds_per_image(&self) -> f64 {
        self.train_ms_per_step / 1e3 / self.batch.max(1) as f64
    }

    fn infer_seconds_per_image(&self) -> f64 {
        self.infer_ms_per_batch / 1e3 / self.batch.max(1) as f64
    }
}

/// Times a probe. The product's is [`BurnSteps`]; tests give fixed costs.
pub trait Measure: Send + Sync {
    fn measure(&self, probe: &Probe) -> Result<StepCost, String>;
}

/// Times the probe on Burn, on the probe's backend.
pub struct BurnSteps;

impl Measure for BurnSteps {
    fn measure(&self, probe: &Probe) -> Result<StepCost, String> {
        let config = StepTimingConfig {
            spec: probe.config.model_spec(),
            size: probe.config.image_size as usize,
            batch: probe.batch,
            steps: PROBE_STEPS,
            warmup: PROBE_WARMUP,
            seed: probe.config.seed,
            precision: probe.config.precision,
            time_cap: Some(PROBE_TIME_CAP),
        };
        let device = probe.backend.train_device();
        // A GPU out of memory is a Burn panic; it is this configuration's answer, not a crash.
        let timing = catch_unwind(AssertUnwindSafe(|| throughput::measure_steps(&config, &device)))
            .map_err(|panic| backend::panic_message(panic.as_ref()))?
            .map_err(|e| e.to_string())?;
        Ok(StepCost {
            batch: timing.batch,
            train_ms_per_step: timing.train_ms_per_step,
            infer_ms_per_batch: timing.infer_ms_per_batch,
            timed_steps: timing.steps,
            timed_batches: timing.infer_batches,
        })
    }
}

/// Images in each part of the run's split (after `max_images`), and the images the cache would
/// have to decode first when it is not built yet.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SplitImages {
    pub train: usize,
    pub val: usize,
    pub test: usize,
    /// 0 when the cache at this image size is built.
    pub to_cache: usize,
    /// Pixels of a source image (the first listed one found), which decides how fast the cache
    /// builds; NIH's 1024² when unknown.
    pub source_pixels: f64,
}

/// Where the time goes, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Parts {
    /// Decoding and resizing the images once, when the cache is not built.
    pub data_cache: f64,
    /// Training steps over every epoch.
    pub training: f64,
    /// The validation pass of every epoch.
    pub validation: f64,
    /// Scoring the best checkpoint on the test split at the end.
    pub test: f64,
}

impl Parts {
    pub fn total(&self) -> f64 {
        self.data_cache + self.training + self.validation + self.test
    }
}

/// Images per second per thread the cache builds from sources of `pixels` each.
fn cache_rate_per_thread(pixels: f64) -> f64 {
    let scaled = CACHE_IMAGES_PER_SECOND_PER_THREAD * CACHE_RATE_PIXELS / pixels.max(1.0);
    scaled.min(CACHE_MAX_IMAGES_PER_SECOND_PER_THREAD)
}

/// The parts of a run of `epochs` over `images`, from a measured step cost.
pub fn parts(cost: &StepCost, images: &SplitImages, epochs: usize, threads: usize) -> Parts {
    let epochs = epochs as f64;
    Parts {
        data_cache: images.to_cache as f64 / (cache_rate_per_thread(images.source_pixels) * threads.max(1) as f64),
        training: epochs * images.train as f64 * cost.train_seconds_per_image(),
        validation: epochs * images.val as f64 * cost.infer_seconds_per_image(),
        test: images.test as f64 * cost.infer_seconds_per_image(),
    }
}

/// How an estimate came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Basis {
    /// Measured for this request.
    Measured,
    /// From an earlier measurement of the same configuration on this machine.
    Cached,
    /// Not measured: a run is queued or training, and measuring beside it would slow it.
    Deferred,
    /// Cannot be estimated: the reason is in `note` (a wrong data set, CUDA asked for and absent).
    Unavailable,
}

/// A run's estimated duration, as the form, the API and the run page show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub basis: Basis,
    /// Everything together; `None` unless measured or cached.
    pub total_seconds: Option<f64>,
    pub parts: Option<Parts>,
    /// Whether starting needs a confirmation (over [`CONFIRM_ABOVE_SECONDS`]).
    pub needs_confirmation: bool,
    pub images: Option<SplitImages>,
    pub epochs: usize,
    /// The timed step.
    pub step: Option<StepCost>,
    /// The backend and machine it was timed on, in words.
    pub device: String,
    /// When the step was timed (UTC).
    pub measured_at: Option<String>,
    /// What the figure includes and leaves out, or why there is none.
    pub note: String,
}

impl Estimate {
    fn without_figure(basis: Basis, epochs: usize, device: String, note: String) -> Estimate {
        Estimate {
            basis,
            total_seconds: None,
            parts: None,
            needs_confirmation: false,
            images: None,
            epochs,
            step: None,
            device,
            measured_at: None,
            note,
        }
    }
}

/// This machine as estimates and defaults see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// The usable GPU's name, or `None`.
    pub gpu: Option<String>,
    /// Why no GPU is used (the CUDA check's answer), when there is none.
    pub no_gpu_reason: Option<String>,
    /// The CPU's model name.
    pub cpu: String,
    pub threads: usize,
}

impl Machine {
    /// Asks once per process (the CUDA check loads libraries).
    pub fn get() -> &'static Machine {
        static MACHINE: OnceLock<Machine> = OnceLock::new();
        MACHINE.get_or_init(|| {
            let resolved = backend::resolve(DeviceChoice::Auto).ok();
            let (gpu, no_gpu_reason) = match resolved.map(|r| r.kind) {
                Some(BackendKind::Cuda(info)) => (Some(info.name), None),
                _ => (None, backend::detect_cuda().err().map(|e| e.to_string())),
            };
            Machine {
                gpu,
                no_gpu_reason,
                cpu: cpu_model_name(),
                threads: backend::cpu_threads(),
            }
        })
    }

    /// The backend a run with this device choice trains on, or why it cannot.
    fn backend(&self, choice: DeviceChoice) -> Result<BackendKind, String> {
        match (choice, &self.gpu) {
            (DeviceChoice::Cpu, _) | (DeviceChoice::Auto, None) => Ok(BackendKind::Cpu),
            (DeviceChoice::Auto | DeviceChoice::Cuda, Some(_)) => backend::resolve(DeviceChoice::Cuda)
                .map(|r| r.kind)
                .map_err(|e| e.to_string()),
            (DeviceChoice::Cuda, None) => Err(format!(
                "the run asks for CUDA, which this machine cannot use ({}); choose device auto or cpu",
                self.no_gpu_reason.as_deref().unwrap_or("no GPU")
            )),
        }
    }

    fn describe(&self, backend: &BackendKind) -> String {
        match backend {
            BackendKind::Cpu => format!("CPU: {} ({} threads)", self.cpu, self.threads),
            BackendKind::Cuda(info) => format!("CUDA: {}", info.name),
        }
    }
}

/// The model name /proc/cpuinfo gives (Linux), or "unknown CPU".
fn cpu_model_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, name)| name.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string())
}

/// The new-run form's starting configuration on this machine, and one line saying which and why.
pub fn form_defaults(machine: &Machine) -> (TrainConfig, String) {
    match &machine.gpu {
        Some(gpu) => (
            TrainConfig::default(),
            format!("A GPU is usable ({gpu}), so the form starts with the full defaults."),
        ),
        None => {
            let config = presets::cpu_sized();
            let line = format!(
                "No usable GPU ({}), so the form starts with a CPU-sized run ({} ×{} at {} px, {} epochs: \
                 minutes on the demo set, where resnet-18 at 224 px takes hours); any setting can be changed.",
                machine.no_gpu_reason.as_deref().unwrap_or("none found"),
                config.architecture,
                config.width,
                config.image_size,
                config.epochs,
            );
            (config, line)
        }
    }
}

/// The cache key of a probe: machine, backend, cxr8 version, model, width, norm, size, batch,
/// precision. Dropout and the optimiser are left out: they barely change a step's time.
pub fn cache_key(machine: &Machine, probe: &Probe) -> String {
    let device = match &probe.backend {
        BackendKind::Cpu => format!("cpu:{}:{}t", machine.cpu, machine.threads),
        BackendKind::Cuda(info) => format!("cuda:{}", info.name),
    };
    let c = &probe.config;
    format!(
        "{device}|cxr8 {KEY_VERSION}|{}|w{}|{}|{}px|b{}|{}",
        c.architecture,
        c.width,
        serde_json::to_value(c.norm)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
        c.image_size,
        probe.batch,
        c.precision
    )
}

/// The images each part of the run's split holds and whether its cache still has to be built.
/// Never generates the demo set: until it exists (the dashboard makes it when it starts), its
/// parts are its planned size times the split fractions.
pub fn split_images(config: &TrainConfig, paths: &JobPaths) -> crate::train::Result<SplitImages> {
    if config.labels.is_none() && demo::check_complete(&paths.demo_dir()).is_none() {
        return Ok(planned_demo_split(config, DemoConfig::default().images));
    }
    let (table, split) = job::load_split(config, paths)?;
    let share = |n: usize| job::max_images_share(config, &split, n).map_or(n, |cap| cap.min(n));
    let built = cache::path_for(paths.cache_dir(), &table, config.image_size).is_file();
    let (_, images_dir) = job::dataset_paths(config, paths)?;
    // The header of one image is enough: a data set's images share a size.
    let source_pixels = table
        .records
        .iter()
        .take(16)
        .find_map(|r| image::image_dimensions(images_dir.join(&r.image)).ok())
        .map_or(CACHE_RATE_PIXELS, |(w, h)| w as f64 * h as f64);
    Ok(SplitImages {
        train: share(split.train.len()),
        val: share(split.val.len()),
        test: share(split.test.len()),
        to_cache: if built { 0 } else { table.records.len() },
        source_pixels,
    })
}

/// The demo set's parts before it is generated: `images` split by the run's fractions (the
/// patient split lands near them), each capped by its share of `max_images`.
fn planned_demo_split(config: &TrainConfig, images: usize) -> SplitImages {
    let part = |fraction: f32| (images as f64 * fraction as f64).round() as usize;
    let (val, test) = (part(config.val_fraction), part(config.test_fraction));
    let train = images.saturating_sub(val + test);
    let share = |n: usize| match config.max_images {
        Some(cap) => ((cap as f64 * n as f64 / images.max(1) as f64).ceil() as usize).min(n),
        None => n,
    };
    SplitImages {
        train: share(train),
        val: share(val),
        test: share(test),
        to_cache: images,
        source_pixels: (DemoConfig::default().size as f64).powi(2),
    }
}

/// Estimates runs' durations, measuring each configuration once per machine.
pub struct Estimator {
    store: Arc<Store>,
    paths: JobPaths,
    measure: Arc<dyn Measure>,
    /// Whether a run is queued or training (measuring then would slow it and read low).
    busy: Box<dyn Fn() -> bool + Send + Sync>,
    /// One measurement at a time: two at once would each read half the machine.
    measuring: Mutex<()>,
    measurements: AtomicUsize,
}

impl Estimator {
    pub fn new(
        store: Arc<Store>,
        paths: JobPaths,
        measure: Arc<dyn Measure>,
        busy: Box<dyn Fn() -> bool + Send + Sync>,
    ) -> Estimator {
        Estimator {
            store,
            paths,
            measure,
            busy,
            measuring: Mutex::new(()),
            measurements: AtomicUsize::new(0),
        }
    }

    /// Timing real training steps on this machine's backend; `busy` says whether a run is queued
    /// or training.
    pub fn on_this_machine(store: Arc<Store>, paths: JobPaths, busy: Box<dyn Fn() -> bool + Send + Sync>) -> Estimator {
        Estimator::new(store, paths, Arc::new(BurnSteps), busy)
    }

    /// How many probes this estimator has timed (cached answers do not count).
    pub fn measurements(&self) -> usize {
        self.measurements.load(Ordering::Relaxed)
    }

    /// The run's estimated duration, measuring its step when no timing is cached and nothing is
    /// training. Blocking: call it off the async runtime. `config` must be valid (its data set
    /// resolved); a problem with its data becomes an `Unavailable` estimate saying what is wrong.
    pub fn estimate(&self, config: &TrainConfig) -> Result<Estimate> {
        self.estimate_with(config, true)
    }

    /// As [`estimate`](Self::estimate), but never measures: a configuration not timed yet gets a
    /// `Deferred` estimate. For answers that must be quick (the API's submit, the form's first
    /// view).
    pub fn cached(&self, config: &TrainConfig) -> Result<Estimate> {
        self.estimate_with(config, false)
    }

    fn estimate_with(&self, config: &TrainConfig, may_measure: bool) -> Result<Estimate> {
        let machine = Machine::get();
        let unavailable =
            |device: String, note: String| Estimate::without_figure(Basis::Unavailable, config.epochs, device, note);
        let backend = match machine.backend(config.device) {
            Ok(backend) => backend,
            Err(why) => return Ok(unavailable(String::new(), why)),
        };
        let device = machine.describe(&backend);
        let images = match split_images(config, &self.paths) {
            Ok(images) => images,
            Err(e) => return Ok(unavailable(device, format!("the data set cannot be read: {e}"))),
        };
        let batch = match backend {
            BackendKind::Cpu if config.image_size > CPU_SMALL_PROBE_ABOVE_PX => {
                config.batch_size.min(CPU_PROBE_BATCH / 2)
            }
            BackendKind::Cpu => config.batch_size.min(CPU_PROBE_BATCH),
            BackendKind::Cuda(_) => config.batch_size,
        }
        .max(1);
        let probe = Probe {
            config: config.clone(),
            batch,
            backend,
        };
        let key = cache_key(machine, &probe);
        let (cost, measured_at, basis) = match self.cached_cost(&key)? {
            Some((cost, at)) => (cost, at, Basis::Cached),
            None if !may_measure => {
                let note = "not measured yet: it is measured when the estimate is asked for with the form";
                return Ok(Estimate::without_figure(
                    Basis::Deferred,
                    config.epochs,
                    device,
                    note.into(),
                ));
            }
            None if (self.busy)() => {
                let note = "a run is queued or training on this machine: timing this configuration now would \
                            slow it and read low, so it is timed once the queue is empty";
                return Ok(Estimate::without_figure(
                    Basis::Deferred,
                    config.epochs,
                    device,
                    note.into(),
                ));
            }
            None => {
                let _one_at_a_time = self.measuring.lock().unwrap_or_else(|p| p.into_inner());
                // Another request may have timed it while this one waited.
                match self.cached_cost(&key)? {
                    Some((cost, at)) => (cost, at, Basis::Cached),
                    None => match self.measure.measure(&probe) {
                        Ok(cost) => {
                            self.measurements.fetch_add(1, Ordering::Relaxed);
                            let value = serde_json::to_value(&cost).expect("costs serialise");
                            let at = self.store.put_step_timing(&key, &value)?;
                            (cost, at, Basis::Measured)
                        }
                        Err(why) => return Ok(unavailable(device, format!("the step could not be timed: {why}"))),
                    },
                }
            }
        };
        let parts = parts(&cost, &images, config.epochs, machine.threads);
        let total = parts.total();
        Ok(Estimate {
            basis,
            total_seconds: Some(total),
            parts: Some(parts),
            needs_confirmation: total > CONFIRM_ABOVE_SECONDS,
            images: Some(images),
            epochs: config.epochs,
            note: note_for(config, &images, &cost, probe.batch),
            step: Some(cost),
            device,
            measured_at: Some(measured_at),
        })
    }

    fn cached_cost(&self, key: &str) -> Result<Option<(StepCost, String)>> {
        let Some(stored) = self.store.step_timing(key)? else {
            return Ok(None);
        };
        // A row this version cannot read is measured again.
        Ok(serde_json::from_value(stored.timing)
            .ok()
            .map(|cost| (cost, stored.measured_at)))
    }

    /// The estimate of a config as the form and the API post it (JSON): resolved and validated as
    /// a submission is, so a bad field gets the same message here as on submitting. `measure`:
    /// whether an untimed configuration may be timed now (see [`cached`](Self::cached)).
    pub fn estimate_posted(&self, posted: &serde_json::Value, measure: bool) -> Result<Estimate, Vec<FieldError>> {
        let mut config = TrainConfig::from_json(&posted.to_string())?;
        super::runs::resolve_dataset(&self.store, &mut config).map_err(|e| vec![e])?;
        config.validate()?;
        self.estimate_with(&config, measure).map_err(|e| {
            vec![FieldError {
                field: "store".into(),
                message: e.to_string(),
            }]
        })
    }
}

/// What the figure includes and what it leaves out, in a sentence or two.
fn note_for(config: &TrainConfig, images: &SplitImages, cost: &StepCost, probe_batch: usize) -> String {
    let mut note = format!(
        "{} epochs of {} training and {} validation images, then {} test images, timed from {} training step{} \
         and {} inference batch{} of {} at {} px",
        config.epochs,
        images.train,
        images.val,
        images.test,
        cost.timed_steps,
        if cost.timed_steps == 1 { "" } else { "s" },
        cost.timed_batches,
        if cost.timed_batches == 1 { "" } else { "es" },
        probe_batch,
        config.image_size,
    );
    if images.to_cache > 0 {
        note.push_str(&format!(
            "; includes building the image cache ({} images, not built yet)",
            images.to_cache
        ));
    }
    note.push_str(". Loading batches, metrics and checkpoints add a little");
    if config.early_stopping.is_some() {
        note.push_str("; early stopping may end it sooner");
    }
    note.push('.');
    note
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Architecture;
    use crate::train::backend::{CudaInfo, Precision};

    fn cost() -> StepCost {
        StepCost {
            batch: 8,
            train_ms_per_step: 800.0,
            infer_ms_per_batch: 200.0,
            timed_steps: 3,
            timed_batches: 3,
        }
    }

    #[test]
    fn parts_scale_per_image_costs_by_split_sizes_and_epochs() {
        let images = SplitImages {
            train: 1000,
            val: 200,
            test: 300,
            to_cache: 0,
            source_pixels: CACHE_RATE_PIXELS,
        };
        let p = parts(&cost(), &images, 5, 2);
        // 0.1 s per training image, 0.025 s per inference image.
        assert!((p.training - 5.0 * 1000.0 * 0.1).abs() < 1e-9, "{p:?}");
        assert!((p.validation - 5.0 * 200.0 * 0.025).abs() < 1e-9, "{p:?}");
        assert!((p.test - 300.0 * 0.025).abs() < 1e-9, "{p:?}");
        assert_eq!(p.data_cache, 0.0);
        assert!((p.total() - (500.0 + 25.0 + 7.5)).abs() < 1e-9);
    }

    #[test]
    fn the_demo_split_is_planned_from_its_fractions_before_it_exists() {
        let config = TrainConfig {
            val_fraction: 0.1,
            test_fraction: 0.2,
            ..TrainConfig::default()
        };
        let planned = planned_demo_split(&config, 3000);
        assert_eq!(
            (planned.train, planned.val, planned.test, planned.to_cache),
            (2100, 300, 600, 3000)
        );
        let capped = planned_demo_split(
            &TrainConfig {
                max_images: Some(300),
                ..config
            },
            3000,
        );
        assert_eq!((capped.train, capped.val, capped.test), (210, 30, 60));
    }

    #[test]
    fn an_unbuilt_cache_adds_its_decoding_time_by_thread_count() {
        let nih = SplitImages {
            train: 0,
            val: 0,
            test: 0,
            to_cache: 1560,
            source_pixels: 1024.0 * 1024.0,
        };
        let two = parts(&cost(), &nih, 1, 2).data_cache;
        let four = parts(&cost(), &nih, 1, 4).data_cache;
        assert!((two - 1560.0 / (2.0 * CACHE_IMAGES_PER_SECOND_PER_THREAD)).abs() < 1e-9);
        assert!((two - 2.0 * four).abs() < 1e-9, "twice the threads, half the time");
        // Quarter-size sources decode four times as fast; tiny ones no faster than the ceiling.
        let half_side = SplitImages {
            source_pixels: 512.0 * 512.0,
            ..nih
        };
        assert!((parts(&cost(), &half_side, 1, 2).data_cache - two / 4.0).abs() < 1e-9);
        let tiny = SplitImages {
            source_pixels: 64.0 * 64.0,
            ..nih
        };
        let floor = 1560.0 / (2.0 * CACHE_MAX_IMAGES_PER_SECOND_PER_THREAD);
        assert!((parts(&cost(), &tiny, 1, 2).data_cache - floor).abs() < 1e-9);
    }

    fn machine() -> Machine {
        Machine {
            gpu: None,
            no_gpu_reason: Some("no driver".into()),
            cpu: "AMD EPYC".into(),
            threads: 2,
        }
    }

    #[test]
    fn the_cache_key_separates_what_changes_a_steps_time() {
        let probe = Probe {
            config: TrainConfig::default(),
            batch: 8,
            backend: BackendKind::Cpu,
        };
        let key = cache_key(&machine(), &probe);
        assert!(key.starts_with("cpu:AMD EPYC:2t|"), "{key}");
        let mut variants = Vec::new();
        let mut changed = |edit: &dyn Fn(&mut Probe)| {
            let mut p = probe.clone();
            edit(&mut p);
            variants.push(cache_key(&machine(), &p));
        };
        changed(&|p| p.config.architecture = Architecture::DenseNet121);
        changed(&|p| p.config.width = 0.5);
        changed(&|p| p.config.image_size = 128);
        changed(&|p| p.batch = 4);
        changed(&|p| p.config.precision = Precision::Bf16);
        changed(&|p| p.config.norm = crate::model::NormKind::Group);
        changed(&|p| {
            p.backend = BackendKind::Cuda(CudaInfo {
                device_count: 1,
                name: "NVIDIA H100".into(),
                total_memory: 0,
            })
        });
        for variant in &variants {
            assert_ne!(variant, &key);
        }
        let mut more_threads = machine();
        more_threads.threads = 16;
        assert_ne!(
            cache_key(&more_threads, &probe),
            key,
            "the thread count is part of the machine"
        );
        // Settings that do not change a step's time share the timing.
        let mut same = probe.clone();
        same.config.epochs = 99;
        same.config.lr = 0.5;
        same.config.dropout = 0.3;
        assert_eq!(cache_key(&machine(), &same), key);
    }

    #[test]
    fn without_a_gpu_the_form_starts_cpu_sized_and_says_why() {
        let (config, line) = form_defaults(&machine());
        assert_eq!(config, presets::cpu_sized());
        assert!(
            line.contains("No usable GPU (no driver)") && line.contains("64 px"),
            "{line}"
        );
        let gpu = Machine {
            gpu: Some("NVIDIA H100".into()),
            no_gpu_reason: None,
            ..machine()
        };
        let (config, line) = form_defaults(&gpu);
        assert_eq!(config, TrainConfig::default());
        assert!(line.contains("NVIDIA H100"), "{line}");
    }

    #[test]
    fn cuda_without_a_gpu_is_explained_and_cpu_is_always_available() {
        let m = machine();
        let why = m.backend(DeviceChoice::Cuda).unwrap_err();
        assert!(why.contains("no driver") && why.contains("auto or cpu"), "{why}");
        assert_eq!(m.backend(DeviceChoice::Cpu).unwrap(), BackendKind::Cpu);
        assert_eq!(m.backend(DeviceChoice::Auto).unwrap(), BackendKind::Cpu);
    }

    /// Counts calls and answers a fixed cost.
    struct Fixed(AtomicUsize);

    impl Measure for Fixed {
        fn measure(&self, _: &Probe) -> Result<StepCost, String> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Ok(cost())
        }
    }

    fn estimator(measure: Arc<Fixed>, busy: bool) -> (Estimator, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let paths = JobPaths {
            data_dir: dir.path().join("data"),
            ckpt_dir: dir.path().join("ckpts"),
        };
        let store = Arc::new(Store::open_in_memory().unwrap());
        (Estimator::new(store, paths, measure, Box::new(move || busy)), dir)
    }

    #[test]
    fn a_configuration_is_measured_once_then_served_from_the_store() {
        let fixed = Arc::new(Fixed(AtomicUsize::new(0)));
        let (estimator, _dir) = estimator(fixed.clone(), false);
        let config = TrainConfig {
            epochs: 20,
            ..presets::cpu_sized()
        };
        let cold = estimator.cached(&config).unwrap();
        assert_eq!((cold.basis, cold.total_seconds), (Basis::Deferred, None));
        let first = estimator.estimate(&config).unwrap();
        assert_eq!(first.basis, Basis::Measured, "{}", first.note);
        let again = estimator.estimate(&config).unwrap();
        assert_eq!(again.basis, Basis::Cached);
        assert_eq!(again.total_seconds, first.total_seconds);
        assert_eq!((fixed.0.load(Ordering::Relaxed), estimator.measurements()), (1, 1));
        let images = first.images.unwrap();
        assert!(
            images.train > images.val && images.val > 0 && images.test > 0,
            "{images:?}"
        );
        assert!(images.to_cache > 0, "a fresh data folder has no cache");
        assert!(first.note.contains("image cache"), "{}", first.note);
        // 20 epochs of 2,100 training images at 0.1 s each: more than an hour.
        assert!(first.needs_confirmation);
        let mut short = config.clone();
        short.epochs = 1;
        short.max_images = Some(100);
        let short = estimator.estimate(&short).unwrap();
        assert_eq!(short.basis, Basis::Cached, "epochs and image counts share the timing");
        assert!(!short.needs_confirmation, "{:?}", short.total_seconds);
    }

    #[test]
    fn nothing_is_measured_beside_a_training_run() {
        let fixed = Arc::new(Fixed(AtomicUsize::new(0)));
        let (estimator, _dir) = estimator(fixed.clone(), true);
        let estimate = estimator.estimate(&presets::cpu_sized()).unwrap();
        assert_eq!(estimate.basis, Basis::Deferred);
        assert!(estimate.note.contains("queued or training"), "{}", estimate.note);
        assert_eq!(fixed.0.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn an_unreadable_label_file_is_an_unavailable_estimate_that_says_why() {
        let fixed = Arc::new(Fixed(AtomicUsize::new(0)));
        let (estimator, dir) = estimator(fixed, false);
        let config = TrainConfig {
            labels: Some(dir.path().join("missing.csv")),
            ..presets::cpu_sized()
        };
        let estimate = estimator.estimate(&config).unwrap();
        assert_eq!(estimate.basis, Basis::Unavailable);
        assert!(estimate.note.contains("missing.csv"), "{}", estimate.note);
    }
}
