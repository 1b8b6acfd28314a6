//! `cxr8 bench web`: how fast the dashboard renders and streams over a big store. Builds a
//! temporary store (many runs with per-label epoch rows), times pages and charts through
//! [`super::app`] in-process and over a loopback socket, times epoch-committed → SSE-received,
//! and compares training throughput with and without many SSE clients connected.
//!
//! The training is either real (`--trainer real`: a narrow simple CNN at 64 px on the CPU, on a
//! small synthetic demo set, through [`crate::service::runs::execute`] as the dashboard's worker runs it)
//! or a stand-in (`--trainer stand-in`): a CPU-bound loop that records through the real
//! [`crate::service::runs::Recorder`] one event per batch, far more often than real training does.

mod live;
mod store;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use axum::body::Body;
use axum::http::Request;
use axum::Router;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::ServiceExt;

use super::WebBenchArgs;
use crate::store::Store;
use crate::train::job::JobPaths;
use crate::web::AppState;

use live::{real_throughput, real_training_config, sse_latency, stand_in_throughput};
use store::{build_store, NoJobs, TempDir};

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
    // On the step axis the loss, accuracy and lr charts also read the run's ~2,000 step points.
    let step_charts: Vec<String> = run_charts.iter().map(|c| format!("{c}?x=step")).collect();
    let compare_step_charts: Vec<String> = ["train_loss", "loss"]
        .iter()
        .map(|c| format!("/compare/charts/{c}.svg?runs={ids}&x=step"))
        .collect();
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
        ("run page's 4 charts on the step axis".into(), step_charts),
        (
            "compare: training and validation loss on the step axis".into(),
            compare_step_charts,
        ),
        ("GET /api/runs (first 100)".into(), vec!["/api/runs".into()]),
        ("GET /api/runs?limit=1000".into(), vec!["/api/runs?limit=1000".into()]),
        // OFFSET walks the index up to the page: the last page is the slowest.
        (
            "GET /api/runs, last 100".into(),
            vec![format!("/api/runs?offset={}", total_runs.saturating_sub(100))],
        ),
    ]
}

fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

pub(super) fn median(mut values: Vec<f64>) -> f64 {
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
    let most = crate::web::MAX_COMPARED;
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
    let app = crate::web::app(state.clone());
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

pub(super) fn bench_web(args: WebBenchArgs) -> anyhow::Result<()> {
    let config = WebBenchConfig {
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
    let report = runtime.block_on(run(config))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p95() {
        let ms = |v: &[u64]| v.iter().map(|&m| Duration::from_millis(m)).collect::<Vec<_>>();
        let t = timing("x", ms(&[5, 1, 3, 2, 4]));
        assert_eq!((t.median_ms, t.p95_ms, t.samples), (3.0, 5.0, 5));
        let t = timing("x", ms(&(1..=100).collect::<Vec<_>>()));
        assert_eq!((t.median_ms, t.p95_ms), (50.5, 95.0));
    }
}
