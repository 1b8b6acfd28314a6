//! `cxr8 bench web`: how fast the dashboard renders and streams over a big store. Builds a
//! temporary store (many runs with per-label epoch rows), times pages and charts through
//! [`super::app`] in-process and over a loopback socket, times epoch-committed → SSE-received,
//! and compares training throughput with and without many SSE clients connected.
//!
//! The training is either real (`--trainer real`: a narrow simple CNN at 64 px on the CPU, on a
//! small synthetic demo set, through [`crate::runs::execute`] as the dashboard's worker runs it)
//! or a stand-in (`--trainer stand-in`): a CPU-bound loop that records through the real
//! [`crate::runs::Recorder`] one event per batch, far more often than real training does.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use axum::body::Body;
use axum::http::Request;
use axum::Router;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::ServiceExt;

use super::{AppState, FieldError, JobControl, JobError};
use crate::data::labels::NIH_FINDINGS;
use crate::runs::Recorder;
use crate::store::scalars::FinishedRun;
use crate::store::{NewRun, RunStatus, Store};
use crate::train::job::JobPaths;
use crate::train::runner::CancelHandle;
use crate::train::{EventSink, TrainConfig, TrainEvent};

/// What to build and how often to measure.
#[derive(Debug, Clone, Serialize)]
pub struct WebBenchConfig {
    /// Runs in the store (the runs page lists them all).
    pub runs: usize,
    /// Epochs of each ordinary run.
    pub list_epochs: usize,
    /// Epochs of the runs whose run and compare pages are timed.
    pub epochs: usize,
    /// Runs on the compare page.
    pub compare: usize,
    /// SSE clients connected during the throughput comparison.
    pub sse_clients: usize,
    /// Timed repetitions of each page.
    pub iterations: usize,
    /// Epochs whose commit → SSE latency is timed.
    pub sse_epochs: usize,
    /// What trains while the SSE clients read.
    pub trainer: Trainer,
    /// Images in the demo set the real trainer's runs use (split as usual; one epoch each).
    pub demo_images: usize,
}

/// The training measured with and without SSE clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Trainer {
    /// A real simple-cnn run at 64 px on the CPU (images/s).
    Real,
    /// A CPU loop recording an event per "batch" (batches/s), ~230 events/s.
    StandIn,
}

/// Median and 95th percentile of one timed thing, milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    pub what: String,
    pub median_ms: f64,
    pub p95_ms: f64,
    pub samples: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct WebBenchReport {
    pub config: WebBenchConfig,
    /// `release` or `dev` (opt-level 1 for our crate).
    pub profile: &'static str,
    /// 1-minute load average when the measurements started.
    pub load_average: Option<f64>,
    pub store_bytes: u64,
    pub build_seconds: f64,
    pub in_process: Vec<Timing>,
    pub loopback: Vec<Timing>,
    pub sse_latency: Timing,
    /// What `training_idle` and `training_with_clients` count (`images/s` or `batches/s`).
    pub training_unit: &'static str,
    /// Training throughput, idle and with `sse_clients` connected (medians of 3 alternating runs).
    pub training_idle: f64,
    pub training_with_clients: f64,
    pub slowdown_pct: f64,
}

/// Accepts nothing: the bench only reads.
struct NoJobs;

impl JobControl for NoJobs {
    fn submit(&self, _config: Value) -> Result<String, Vec<FieldError>> {
        Err(vec![FieldError::new("", "the benchmark server does not train")])
    }
    fn cancel(&self, id: &str) -> Result<(), JobError> {
        Err(JobError::UnknownRun(id.into()))
    }
    fn resume(&self, id: &str) -> Result<(), JobError> {
        Err(JobError::UnknownRun(id.into()))
    }
    fn queue(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Removes the temporary store folder however the bench ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn val_metrics(run: usize, epoch: usize, epochs: usize) -> Value {
    let progress = epoch as f64 / epochs.max(1) as f64;
    // The 14 NIH findings, for realistic per-label rows.
    let per_label: Vec<Value> = NIH_FINDINGS
        .iter()
        .enumerate()
        .map(|(i, label)| {
            let auroc = 0.55 + 0.3 * progress + 0.01 * ((run + i) % 7) as f64;
            json!({"label": label, "auroc": auroc, "ap": auroc - 0.3, "f1": auroc - 0.25,
                   "tp": 40 + i, "fp": 12 + epoch % 9, "fn": 9 + i % 5, "tn": 900 + epoch, "support": 49 + i})
        })
        .collect();
    json!({
        "loss": 0.9 - 0.5 * progress, "accuracy": 0.6 + 0.3 * progress,
        "mean_auroc": 0.6 + 0.3 * progress, "per_label": per_label,
    })
}

fn train_metrics(epoch: usize, epochs: usize) -> Value {
    let progress = epoch as f64 / epochs.max(1) as f64;
    json!({"loss": 0.8 - 0.5 * progress, "accuracy": 0.62 + 0.3 * progress})
}

/// Builds the store: the long runs (run and compare pages) through the [`Recorder`], as training
/// does, the rest in bulk (the same rows and events, a hundred runs per transaction). Returns the
/// ids of the long runs.
fn build_store(store: &Arc<Store>, config: &WebBenchConfig) -> anyhow::Result<Vec<String>> {
    let train_config = TrainConfig::default();
    let config_json = serde_json::to_value(&train_config)?;
    let long_count = config.compare.max(1).min(config.runs);
    let bulk = (long_count..config.runs).map(|run| {
        let epochs = config.list_epochs;
        let rows: Vec<Value> = (1..=epochs)
            .map(|epoch| {
                crate::runs::flatten_epoch(
                    epoch,
                    &train_metrics(epoch, epochs),
                    &val_metrics(run, epoch, epochs),
                    1e-3 / epoch as f64,
                    30.0,
                )
            })
            .collect();
        let best = rows
            .iter()
            .enumerate()
            .fold(None, |best: Option<(u32, f64)>, (i, row)| {
                let value = row["val_mean_auroc"].as_f64().unwrap_or(f64::MIN);
                match best {
                    Some((_, b)) if b >= value => best,
                    _ => Some((i as u32 + 1, value)),
                }
            });
        FinishedRun {
            // Ours to choose, so they cannot collide; they sort after the recorded runs' ids.
            id: format!("bench-{run:05}"),
            name: format!("bench run {run}"),
            config: config_json.clone(),
            dataset: "demo".into(),
            model: "resnet-18".into(),
            image_size: 224,
            tags: vec!["bench".into()],
            epochs: rows,
            best: best.map(|(e, v)| (e, "val_mean_auroc".to_string(), v)),
        }
    });
    store.insert_finished_runs(bulk)?;
    let mut long_runs = Vec::new();
    for run in 0..long_count {
        let epochs = config.epochs;
        let name = format!("bench run {run}");
        let new = NewRun {
            name: &name,
            config: &config_json,
            dataset: "demo",
            model: "resnet-18",
            image_size: 224,
            epochs_planned: epochs as u32,
            tags: &["bench".to_string()],
        };
        let id = store
            .create_run(&new)
            .context("cannot create a run in the benchmark store")?;
        let mut recorder = Recorder::new(store.clone(), &id, &train_config, None);
        store.set_status(&id, RunStatus::Running, None)?;
        for epoch in 1..=epochs {
            recorder.emit(TrainEvent::Epoch {
                epoch,
                train: train_metrics(epoch, epochs),
                val: val_metrics(run, epoch, epochs),
                lr: 1e-3 / epoch as f64,
                seconds: 30.0,
            });
        }
        recorder.emit(TrainEvent::Finished {
            best_epoch: None,
            best_metric: None,
            stopped_early: false,
        });
        long_runs.push(id);
    }
    Ok(long_runs)
}

fn timing(what: impl Into<String>, mut samples: Vec<Duration>) -> Timing {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let n = samples.len();
    let median = if n == 0 {
        0.0
    } else if n % 2 == 1 {
        ms(samples[n / 2])
    } else {
        (ms(samples[n / 2 - 1]) + ms(samples[n / 2])) / 2.0
    };
    let p95 = samples
        .get((n * 95).div_ceil(100).saturating_sub(1))
        .copied()
        .map(ms)
        .unwrap_or(0.0);
    Timing {
        what: what.into(),
        median_ms: median,
        p95_ms: p95,
        samples: n,
    }
}

async fn get_in_process(app: &Router, uri: &str) -> anyhow::Result<()> {
    let request = Request::builder()
        .uri(uri)
        .header("host", "127.0.0.1")
        .body(Body::empty())?;
    let response = app.clone().oneshot(request).await?;
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
    if !status.is_success() {
        bail!("{uri} answered {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(())
}

async fn get_over_socket(port: u16, uri: &str) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    let request = format!("GET {uri} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    if !response.starts_with(b"HTTP/1.1 200") {
        let head = String::from_utf8_lossy(&response[..response.len().min(200)]).into_owned();
        bail!("{uri} over the socket answered: {head}");
    }
    Ok(())
}

/// Times a group of requests (a page and its charts) as one sample.
async fn time_group(
    iterations: usize,
    uris: &[String],
    fetch: impl AsyncFn(&str) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<Duration>> {
    for uri in uris {
        fetch(uri).await?; // warm-up: first render, caches
    }
    let mut samples = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let start = Instant::now();
        for uri in uris {
            fetch(uri).await?;
        }
        samples.push(start.elapsed());
    }
    Ok(samples)
}

/// The pages and groups timed: (name, addresses).
fn page_groups(long_runs: &[String], compare: usize, total_runs: usize) -> Vec<(String, Vec<String>)> {
    let run = &long_runs[0];
    let run_charts: Vec<String> = ["loss", "accuracy", "auroc", "lr"]
        .iter()
        .map(|c| format!("/runs/{run}/charts/{c}.svg"))
        .collect();
    let ids = long_runs[..compare.min(long_runs.len())].join(",");
    let compare_charts: Vec<String> = ["loss", "accuracy", "auroc"]
        .iter()
        .map(|c| format!("/compare/charts/{c}.svg?runs={ids}"))
        .collect();
    let mut run_with_charts = vec![format!("/runs/{run}")];
    run_with_charts.extend(run_charts.iter().cloned());
    let mut compare_with_charts = vec![format!("/compare?runs={ids}")];
    compare_with_charts.extend(compare_charts.iter().cloned());
    vec![
        ("runs page (/)".into(), vec!["/".into()]),
        // Sorting by a best-epoch number and searching touch every run, not just one page.
        (
            "runs page sorted by best AUROC".into(),
            vec!["/?sort=auroc&dir=desc".into()],
        ),
        ("runs page searched (q=run 99)".into(), vec!["/?q=run%2099".into()]),
        ("run page".into(), vec![format!("/runs/{run}")]),
        ("run page + 4 chart SVGs".into(), run_with_charts),
        ("compare page".into(), vec![format!("/compare?runs={ids}")]),
        ("compare page + 3 chart SVGs".into(), compare_with_charts),
        ("GET /api/runs (first 100)".into(), vec!["/api/runs".into()]),
        ("GET /api/runs?limit=1000".into(), vec!["/api/runs?limit=1000".into()]),
        // OFFSET walks the index up to the page: the last page is the slowest.
        (
            "GET /api/runs, last 100".into(),
            vec![format!("/api/runs?offset={}", total_runs.saturating_sub(100))],
        ),
    ]
}

/// Opens an event stream and returns it once the response head has arrived.
async fn open_stream(port: u16, run_id: &str) -> anyhow::Result<TcpStream> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    let request = format!("GET /runs/{run_id}/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            bail!("the event stream closed before its headers");
        }
        head.push(byte[0]);
    }
    if !head.starts_with(b"HTTP/1.1 200") {
        bail!("event stream refused: {}", String::from_utf8_lossy(&head));
    }
    Ok(stream)
}

/// A recorder for a fresh live run whose events also go to the app's broadcast (as the worker's).
fn live_recorder(state: &Arc<AppState>, name: &str) -> anyhow::Result<(String, Recorder)> {
    let config = TrainConfig::default();
    let id = state.store.create_run(&NewRun {
        name,
        config: &serde_json::to_value(&config)?,
        dataset: "demo",
        model: "resnet-18",
        image_size: 224,
        epochs_planned: 1000,
        tags: &[],
    })?;
    state.store.set_status(&id, RunStatus::Running, None)?;
    let events = state.events.clone();
    let listener: crate::runs::Listener = Box::new(move |_event, row| {
        let _ = events.send(row.clone());
    });
    let recorder = Recorder::new(state.store.clone(), &id, &config, Some(listener));
    Ok((id, recorder))
}

/// Epoch committed (the recorder's call starts) → the `epoch` event read by a socket client.
async fn sse_latency(state: &Arc<AppState>, port: u16, epochs: usize) -> anyhow::Result<Vec<Duration>> {
    let (id, recorder) = live_recorder(state, "bench sse latency")?;
    let mut stream = open_stream(port, &id).await?;
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let reader = tokio::spawn(async move {
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let n = match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let now = Instant::now();
            buffer.extend_from_slice(&chunk[..n]);
            // Each SSE event ends with a blank line; count the epoch events in complete ones.
            while let Some(end) = find(&buffer, b"\n\n") {
                let event: Vec<u8> = buffer.drain(..end + 2).collect();
                if find(&event, b"event: epoch").is_some() && seen_tx.send(now).is_err() {
                    return;
                }
            }
        }
    });
    let recorder = Arc::new(std::sync::Mutex::new(recorder));
    let mut samples = Vec::with_capacity(epochs);
    for epoch in 1..=epochs {
        let recorder = recorder.clone();
        let started = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let mut recorder = recorder.lock().unwrap_or_else(|p| p.into_inner());
            recorder.emit(TrainEvent::Epoch {
                epoch,
                train: train_metrics(epoch, epochs),
                val: val_metrics(0, epoch, epochs),
                lr: 1e-3,
                seconds: 1.0,
            });
            started
        })
        .await?;
        let received = tokio::time::timeout(Duration::from_secs(10), seen_rx.recv())
            .await
            .context("no epoch event within 10 s")?
            .context("the event stream closed")?;
        samples.push(received.saturating_duration_since(started));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    reader.abort();
    Ok(samples)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// CPU work standing in for one training step (about a few milliseconds; never optimised away).
fn training_step(seed: u64) -> f64 {
    let mut x = seed as f64 + 0.5;
    for i in 0..400_000 {
        x = (x * 1.000_001 + i as f64).sqrt() + 1.0;
    }
    x
}

/// Batches per second of the stand-in loop on its own thread, recording every batch and epoch.
fn stand_in_training(mut recorder: Recorder, batches: usize, per_epoch: usize) -> f64 {
    let start = Instant::now();
    let mut sink = 0.0;
    for batch in 1..=batches {
        sink += training_step(batch as u64);
        let epoch = (batch - 1) / per_epoch + 1;
        recorder.emit(TrainEvent::Batch {
            epoch,
            batch: (batch - 1) % per_epoch + 1,
            of: per_epoch,
            loss: 0.5,
            images_per_sec: 100.0,
            lr: 1e-3,
        });
        if batch % per_epoch == 0 {
            recorder.emit(TrainEvent::Epoch {
                epoch,
                train: train_metrics(epoch, 10),
                val: val_metrics(0, epoch, 10),
                lr: 1e-3,
                seconds: 1.0,
            });
        }
    }
    std::hint::black_box(sink);
    batches as f64 / start.elapsed().as_secs_f64()
}

/// `clients` SSE readers of run `id`, each reading (and dropping) everything it is sent.
async fn connect_readers(port: u16, id: &str, clients: usize) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut readers = Vec::with_capacity(clients);
    for _ in 0..clients {
        let mut stream = open_stream(port, id).await?;
        readers.push(tokio::spawn(async move {
            let mut chunk = [0u8; 8192];
            while matches!(stream.read(&mut chunk).await, Ok(n) if n > 0) {}
        }));
    }
    Ok(readers)
}

/// One stand-in measurement (batches/s) with `clients` SSE readers connected to the training run.
async fn stand_in_throughput(state: &Arc<AppState>, port: u16, clients: usize) -> anyhow::Result<f64> {
    let (id, recorder) = live_recorder(state, "bench throughput")?;
    let readers = connect_readers(port, &id, clients).await?;
    let rate = tokio::task::spawn_blocking(move || stand_in_training(recorder, 120, 40)).await?;
    for reader in readers {
        reader.abort();
    }
    Ok(rate)
}

/// The real trainer's setup: a small synthetic demo set at 64 px and the quick-demo preset for
/// one epoch on the CPU (a narrow simple CNN: seconds per epoch on 2 cores).
fn real_training_config(paths: &JobPaths, demo_images: usize) -> anyhow::Result<TrainConfig> {
    let demo = crate::data::demo::ensure_with(&crate::data::demo::DemoConfig {
        out: paths.demo_dir(),
        images: demo_images,
        size: 64,
        seed: 7,
    })?;
    let mut config = crate::train::presets::preset("quick-demo").context("the quick-demo preset exists")?;
    config.labels = Some(demo.label_file);
    config.images = Some(demo.out.join("images"));
    config.epochs = 1;
    // The preset warms up for one epoch, which a one-epoch run cannot do (validation refuses it).
    config.warmup_epochs = 0;
    config.device = crate::train::backend::DeviceChoice::Cpu;
    Ok(config)
}

/// One real training run (images/s over its training batches, as the trainer reports them: the
/// median of its per-batch rates) with `clients` SSE readers connected to it.
async fn real_throughput(
    state: &Arc<AppState>,
    port: u16,
    clients: usize,
    paths: &JobPaths,
    config: &TrainConfig,
) -> anyhow::Result<f64> {
    let id = state.store.create_run(&NewRun {
        name: "bench real training",
        config: &serde_json::to_value(config)?,
        dataset: "demo",
        model: "simple-cnn",
        image_size: config.image_size,
        epochs_planned: config.epochs as u32,
        tags: &[],
    })?;
    let readers = connect_readers(port, &id, clients).await?;
    let rates = Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener: crate::runs::Listener = Box::new({
        let (events, rates) = (state.events.clone(), rates.clone());
        move |event, row| {
            if let TrainEvent::Batch { images_per_sec, .. } = event {
                rates
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(*images_per_sec as f64);
            }
            let _ = events.send(row.clone());
        }
    });
    let outcome = {
        let (store, paths, config, id) = (state.store.clone(), paths.clone(), config.clone(), id.clone());
        tokio::task::spawn_blocking(move || {
            crate::runs::execute(
                store,
                &id,
                &config,
                &paths,
                false,
                &CancelHandle::new(),
                crate::runs::Watchers {
                    events: Some(listener),
                    data_progress: None,
                },
            )
        })
        .await?
    };
    for reader in readers {
        reader.abort();
    }
    outcome.with_context(|| format!("the benchmark's training run {id} failed"))?;
    let rates = std::mem::take(&mut *rates.lock().unwrap_or_else(|p| p.into_inner()));
    if rates.is_empty() {
        bail!("the training run reported no batches");
    }
    Ok(median(rates))
}

fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Runs every measurement; prints progress to stderr.
pub async fn run(config: WebBenchConfig) -> anyhow::Result<WebBenchReport> {
    if config.runs == 0 || config.compare == 0 || config.epochs == 0 || config.iterations == 0 {
        bail!("--runs, --compare, --epochs and --iterations must be at least 1");
    }
    if config.compare > config.runs {
        bail!("--compare ({}) cannot exceed --runs ({})", config.compare, config.runs);
    }
    let most = super::routes::compare::MAX_COMPARED;
    if config.compare > most {
        bail!(
            "--compare ({}) cannot exceed {most}, the most the compare page shows",
            config.compare
        );
    }
    if config.trainer == Trainer::Real && config.demo_images < 100 {
        bail!("--demo-images must be at least 100 (a few batches of the quick-demo preset after the split)");
    }
    // tmpfs when there is one: building tens of thousands of fsynced commits on a disk would take
    // minutes, and reads come from the page cache either way.
    let base = ["/dev/shm"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let dir = TempDir(base.join(format!("cxr8-bench-web-{}", std::process::id())));
    let store = Arc::new(Store::open(&dir.0)?);

    let load_average = load_average();
    eprintln!(
        "building a store of {} runs ({} with {} epochs)…",
        config.runs, config.compare, config.epochs
    );
    let started = Instant::now();
    let long_runs = {
        let (store, config) = (store.clone(), config.clone());
        tokio::task::spawn_blocking(move || build_store(&store, &config)).await??
    };
    let build_seconds = started.elapsed().as_secs_f64();
    let store_bytes = std::fs::read_dir(&dir.0)?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();

    let state = Arc::new(AppState::new(
        store,
        Arc::new(NoJobs),
        dir.0.clone(),
        dir.0.join("ckpts"),
    ));
    let app = super::app(state.clone());
    let groups = page_groups(&long_runs, config.compare, config.runs);

    eprintln!("timing pages in-process…");
    let mut in_process = Vec::new();
    for (name, uris) in &groups {
        let samples = time_group(config.iterations, uris, async |uri: &str| {
            get_in_process(&app, uri).await
        })
        .await?;
        in_process.push(timing(name.clone(), samples));
    }
    // The list keeps its rows until a run changes (training changes one about once an epoch):
    // the page right after a change reads them all again.
    let touched = &long_runs[0];
    let run = state.store.run(touched)?.context("the timed run is stored")?;
    let mut samples = Vec::with_capacity(config.iterations);
    for _ in 0..config.iterations {
        state.store.update_meta(touched, &run.name, &run.tags, &run.notes)?;
        let start = Instant::now();
        get_in_process(&app, "/").await?;
        samples.push(start.elapsed());
    }
    in_process.push(timing("runs page right after a run changed", samples));

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let port = listener.local_addr()?.port();
    let server = tokio::spawn({
        let app = app.clone();
        async move { axum::serve(listener, app).await }
    });
    eprintln!("timing pages over 127.0.0.1:{port}…");
    let mut loopback = Vec::new();
    for (name, uris) in &groups {
        let samples = time_group(config.iterations, uris, async |uri: &str| {
            get_over_socket(port, uri).await
        })
        .await?;
        loopback.push(timing(name.clone(), samples));
    }

    eprintln!("timing epoch → SSE latency over {} epochs…", config.sse_epochs);
    let sse_latency = timing(
        "epoch committed → SSE event received",
        sse_latency(&state, port, config.sse_epochs.max(1)).await?,
    );

    let (mut idle, mut busy) = (Vec::new(), Vec::new());
    let training_unit = match config.trainer {
        Trainer::StandIn => {
            eprintln!(
                "timing the training stand-in with 0 and {} SSE clients…",
                config.sse_clients
            );
            // Alternate, so drifting machine load hits both sides alike.
            for _ in 0..3 {
                idle.push(stand_in_throughput(&state, port, 0).await?);
                busy.push(stand_in_throughput(&state, port, config.sse_clients).await?);
            }
            "batches/s (stand-in loop)"
        }
        Trainer::Real => {
            let paths = JobPaths {
                data_dir: dir.0.clone(),
                ckpt_dir: dir.0.join("ckpts"),
            };
            eprintln!("making a small demo set and its cache…");
            let train_config = {
                let (paths, n) = (paths.clone(), config.demo_images);
                tokio::task::spawn_blocking(move || real_training_config(&paths, n)).await??
            };
            // An unmeasured first run builds the 64 px cache and warms the allocator.
            real_throughput(&state, port, 0, &paths, &train_config).await?;
            eprintln!(
                "timing real training (simple-cnn, 64 px, CPU) with 0 and {} SSE clients…",
                config.sse_clients
            );
            for _ in 0..3 {
                idle.push(real_throughput(&state, port, 0, &paths, &train_config).await?);
                busy.push(real_throughput(&state, port, config.sse_clients, &paths, &train_config).await?);
            }
            "images/s (simple-cnn, 64 px, CPU)"
        }
    };
    server.abort();
    let (idle, busy) = (median(idle), median(busy));
    Ok(WebBenchReport {
        profile: if cfg!(debug_assertions) { "dev" } else { "release" },
        load_average,
        store_bytes,
        build_seconds,
        in_process,
        loopback,
        sse_latency,
        training_unit,
        training_idle: idle,
        training_with_clients: busy,
        slowdown_pct: (1.0 - busy / idle) * 100.0,
        config,
    })
}

impl WebBenchReport {
    /// A Markdown table for BENCHMARKS.md.
    pub fn table(&self) -> String {
        let c = &self.config;
        let mut out = format!(
            "{} build, load average {} at start; store: {} runs ({} × {} epochs, the rest × {}), \
             14 labels per epoch, {:.1} MB, built in {:.0} s\n\n",
            self.profile,
            self.load_average
                .map(|l| format!("{l:.2}"))
                .unwrap_or_else(|| "unknown".into()),
            c.runs,
            c.compare,
            c.epochs,
            c.list_epochs,
            self.store_bytes as f64 / 1e6,
            self.build_seconds,
        );
        out.push_str("| measured | in-process median / p95 ms | loopback socket median / p95 ms |\n|---|---|---|\n");
        for (a, b) in self.in_process.iter().zip(&self.loopback) {
            out.push_str(&format!(
                "| {} | {:.1} / {:.1} | {:.1} / {:.1} |\n",
                a.what, a.median_ms, a.p95_ms, b.median_ms, b.p95_ms
            ));
        }
        // Timed in-process only.
        for a in self.in_process.iter().skip(self.loopback.len()) {
            out.push_str(&format!("| {} | {:.1} / {:.1} | |\n", a.what, a.median_ms, a.p95_ms));
        }
        out.push_str(&format!(
            "| {} ({} epochs) | | {:.1} / {:.1} |\n",
            self.sse_latency.what, self.sse_latency.samples, self.sse_latency.median_ms, self.sse_latency.p95_ms
        ));
        out.push_str(&format!(
            "| training, {}: idle → {} SSE clients | | {:.2} → {:.2} ({:+.1} % slowdown) |\n",
            self.training_unit, c.sse_clients, self.training_idle, self.training_with_clients, self.slowdown_pct
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::metrics;

    #[test]
    fn the_stores_best_numbers_match_reading_every_epoch() {
        // Both ways the bench stores runs (recorded like training, and in bulk) must leave the
        // same headline numbers on the run as its best epoch holds: the runs page shows those.
        let store = Arc::new(Store::open_in_memory().unwrap());
        let config = WebBenchConfig {
            runs: 5,
            list_epochs: 4,
            epochs: 7,
            compare: 2,
            sse_clients: 0,
            iterations: 1,
            sse_epochs: 1,
            trainer: Trainer::StandIn,
            demo_images: 0,
        };
        build_store(&store, &config).unwrap();
        let runs = store.runs().unwrap();
        assert_eq!(runs.len(), 5);
        for run in runs {
            let epochs = store.epochs(&run.id).unwrap();
            let best = metrics::best_epoch(&run, &epochs).unwrap();
            assert_eq!(Some(best.epoch), run.best_epoch, "run {}", run.name);
            let expected = (
                metrics::number(&best.metrics, "val_mean_auroc"),
                metrics::number(&best.metrics, "val_accuracy"),
            );
            assert!(expected.0.is_some() && expected.1.is_some());
            assert_eq!(
                (run.best_val_mean_auroc, run.best_val_accuracy),
                expected,
                "run {}",
                run.name
            );
        }
    }

    #[test]
    fn median_and_p95() {
        let ms = |v: &[u64]| v.iter().map(|&m| Duration::from_millis(m)).collect::<Vec<_>>();
        let t = timing("x", ms(&[5, 1, 3, 2, 4]));
        assert_eq!((t.median_ms, t.p95_ms, t.samples), (3.0, 5.0, 5));
        let t = timing("x", ms(&(1..=100).collect::<Vec<_>>()));
        assert_eq!((t.median_ms, t.p95_ms), (50.5, 95.0));
    }
}
