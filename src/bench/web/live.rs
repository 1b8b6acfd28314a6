//! Live measurements: epoch-committed → SSE-received latency, and training throughput (real or a
//! stand-in loop) with many SSE clients connected.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::service::runs::Recorder;
use crate::store::{NewRun, RunStatus};
use crate::train::job::JobPaths;
use crate::train::runner::CancelHandle;
use crate::train::{EventSink, TrainConfig, TrainEvent};
use crate::web::AppState;

use super::median;
use super::store::{train_metrics, val_metrics};

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
    let listener: crate::service::runs::Listener = Box::new(move |_event, row| {
        let _ = events.send(row.clone());
    });
    let recorder = Recorder::new(state.store.clone(), &id, &config, Some(listener));
    Ok((id, recorder))
}

/// Epoch committed (the recorder's call starts) → the `epoch` event read by a socket client.
pub(super) async fn sse_latency(state: &Arc<AppState>, port: u16, epochs: usize) -> anyhow::Result<Vec<Duration>> {
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
                step: None,
                wall_seconds: None,
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
                step: None,
                wall_seconds: None,
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
pub(super) async fn stand_in_throughput(state: &Arc<AppState>, port: u16, clients: usize) -> anyhow::Result<f64> {
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
pub(super) fn real_training_config(paths: &JobPaths, demo_images: usize) -> anyhow::Result<TrainConfig> {
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
pub(super) async fn real_throughput(
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
    let listener: crate::service::runs::Listener = Box::new({
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
            crate::service::runs::execute(
                store,
                &id,
                &config,
                &paths,
                false,
                &CancelHandle::new(),
                crate::service::runs::Watchers {
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
