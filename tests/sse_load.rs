//! The live event stream under abuse and load, over a real loopback server (`axum::serve` on
//! 127.0.0.1:0): 1,000 connect/disconnect cycles with no, stale, future or garbage
//! `Last-Event-ID`, plus clients that never read, must leave no subscriber behind, keep memory
//! flat and never hold up the sender (training); 100 clients reading while pages load must each
//! get every epoch exactly once. Waits are bounded guards, not speed checks.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cxr8::bench::Memory;
use cxr8::store::{EventRow, NewRun, RunStatus};
use cxr8::web::AppState;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::bad_input::Engine;
use crate::util::{LoopbackServer, TestApp};

/// No single wait in these tests should come near this; it only stops a hang.
const GUARD: Duration = Duration::from_secs(60);

struct Server {
    app: TestApp,
    address: std::net::SocketAddr,
    run: String,
    _serving: LoopbackServer,
}

impl Server {
    async fn start() -> Server {
        let setup = TestApp::on_disk();
        let store = setup.store();
        let run = store
            .create_run(&NewRun {
                name: "live",
                config: &json!({"model": "resnet-18"}),
                dataset: "demo",
                model: "resnet-18",
                image_size: 64,
                epochs_planned: 1000,
                tags: &[],
            })
            .unwrap();
        store.set_status(&run, RunStatus::Running, None).unwrap();
        let engine = Arc::new(Engine { store });
        let app = setup.jobs(engine).build();
        let serving = app.serve().await;
        Server {
            address: serving.address,
            app,
            run,
            _serving: serving,
        }
    }

    /// Stores an event and broadcasts it, as the training recorder does; returns its seq.
    fn emit(&self, epoch: u32) -> i64 {
        emit(&self.app.state, &self.run, epoch)
    }

    /// Opens the run's event stream; returns the socket after the response head, and the status.
    async fn open_stream(&self, last_event_id: Option<&str>) -> (TcpStream, u16, String) {
        let mut stream = TcpStream::connect(self.address).await.unwrap();
        let id_header = last_event_id
            .map(|id| format!("Last-Event-ID: {id}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET /runs/{}/events HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n{id_header}\r\n",
            self.run, self.address
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let n = tokio::time::timeout(GUARD, stream.read(&mut byte))
                .await
                .expect("a response head")
                .unwrap();
            assert!(n > 0, "closed before the head: {}", String::from_utf8_lossy(&head));
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let status = head[9..12].parse().unwrap();
        (stream, status, head)
    }

    fn subscribers(&self) -> usize {
        self.app.state.events.receiver_count()
    }

    /// Waits (bounded) until the subscriber count is `n`; a dropped connection is noticed when
    /// the server next writes to it.
    async fn wait_for_subscribers(&self, n: usize, what: &str) {
        let deadline = tokio::time::Instant::now() + GUARD;
        while self.subscribers() != n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: {} subscribers, expected {n}",
                self.subscribers()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn emit(state: &AppState, run: &str, epoch: u32) -> i64 {
    let payload = json!({"epoch": epoch});
    let seq = state.store.append_event(run, "epoch", &payload).unwrap();
    // No subscribers is fine: the send fails without blocking, the event is in the store.
    let _ = state.events.send(EventRow {
        seq,
        run_id: run.to_string(),
        kind: "epoch".into(),
        payload,
        at: cxr8::store::now(),
    });
    seq
}

/// A stand-in for training: emits events for the run until stopped, counting the ones sent.
struct Emitter {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<()>,
}

impl Emitter {
    fn start(state: Arc<AppState>, run: String, every: Duration) -> Emitter {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let (flag, count) = (stop.clone(), sent.clone());
        let thread = std::thread::spawn(move || {
            let mut epoch = 0;
            while !flag.load(Ordering::Relaxed) {
                epoch += 1;
                emit(&state, &run, epoch);
                count.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(every);
            }
        });
        Emitter { stop, sent, thread }
    }

    /// Stops it and returns how many events it sent; joining proves no send was stuck.
    fn finish(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the emitter never panics");
        self.sent.load(Ordering::Relaxed)
    }
}

/// Environment variable that makes the leak test run its body (in a process of its own, so
/// other tests' memory does not count).
const LEAK_CHILD: &str = "CXR8_SSE_LEAK_CHILD";

#[test]
fn sse_connect_disconnect_cycles_leak_nothing() {
    if std::env::var_os(LEAK_CHILD).is_some() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(leak_cycles());
        return;
    }
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sse_load::sse_connect_disconnect_cycles_leak_nothing",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(LEAK_CHILD, "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("{text}");
    assert!(output.status.success(), "the leak check failed:\n{text}");
    assert!(text.contains("1 passed"), "the leak check did not run:\n{text}");
}

/// Cycles per kind of `Last-Event-ID`: none, stale (0), future (10^9), garbage.
const CYCLES: usize = 1000;
/// Clients that subscribe and never read while the emitter overruns the channel.
const SILENT_CLIENTS: usize = 20;

async fn leak_cycles() {
    let server = Server::start().await;
    for epoch in 1..=3 {
        server.emit(epoch);
    }
    let baseline = server.subscribers();
    assert_eq!(baseline, 0);
    let emitter = Emitter::start(server.app.state.clone(), server.run.clone(), Duration::from_millis(5));

    let variants: [(Option<&str>, u16); 4] = [
        (None, 200),
        (Some("0"), 200),
        (Some("1000000000"), 200),
        (Some("not-a-number"), 400),
    ];
    // Warm-up: the runtime, allocator and SQLite caches settle before memory is measured.
    for i in 0..100 {
        let (id, _) = variants[i % variants.len()];
        drop(server.open_stream(id).await);
    }
    server.wait_for_subscribers(baseline, "after the warm-up").await;
    let start = Memory::now();

    let mut statuses = [0usize; 2];
    for i in 0..CYCLES {
        let (id, expected) = variants[i % variants.len()];
        let (mut stream, status, head) = server.open_stream(id).await;
        assert_eq!(status, expected, "cycle {i} ({id:?}): {head}");
        if status == 200 {
            statuses[0] += 1;
            // Disconnect mid-stream: after reading a little of it, or before reading anything.
            if i % 2 == 0 {
                let mut buffer = [0u8; 64];
                let _ = tokio::time::timeout(Duration::from_millis(5), stream.read(&mut buffer)).await;
            }
        } else {
            statuses[1] += 1;
        }
        drop(stream);
    }
    server.wait_for_subscribers(baseline, "after 1,000 cycles").await;
    let after_cycles = Memory::now();

    // Clients that never read a byte while far more events than the channel holds go out.
    let mut silent = Vec::new();
    for _ in 0..SILENT_CLIENTS {
        silent.push(server.open_stream(Some("0")).await.0);
    }
    server
        .wait_for_subscribers(SILENT_CLIENTS, "silent clients subscribed")
        .await;
    let before_flood = emitter.sent.load(Ordering::Relaxed);
    for epoch in 0..3 * cxr8::web::LIVE_EVENT_BUFFER as u32 {
        server.emit(100_000 + epoch);
    }
    assert_eq!(
        server.subscribers(),
        SILENT_CLIENTS,
        "slow clients are not dropped for being slow"
    );
    drop(silent);
    let sent = emitter.finish();
    assert!(sent > before_flood, "the emitter kept going while clients did not read");
    // The last events after the drop let the server notice the closed sockets.
    for epoch in 0..10 {
        server.emit(200_000 + epoch);
    }
    server
        .wait_for_subscribers(baseline, "after the silent clients left")
        .await;
    let end = Memory::now();

    let grown_kib = end.rss_kib.saturating_sub(start.rss_kib);
    eprintln!(
        "sse leak check: {CYCLES} cycles ({} streamed, {} refused with 400), {SILENT_CLIENTS} silent clients, \
         {sent} events from the emitter; RSS {} KiB after warm-up, {} KiB after the cycles, {} KiB at the end \
         (+{grown_kib} KiB); subscribers back to {baseline}",
        statuses[0], statuses[1], start.rss_kib, after_cycles.rss_kib, end.rss_kib
    );
    // Generous: a leak of one stream (its buffers, a receiver, a task) per cycle would pass
    // this only if each were under ~30 KiB, and the silent clients' backlog is bounded too.
    assert!(grown_kib < 32 * 1024, "RSS grew by {grown_kib} KiB");
    assert_eq!(statuses[1], CYCLES / 4, "every garbage id is refused");
}

/// Reads SSE frames from a raw HTTP/1.1 response (chunked), keeping `(id, event, data)` of each.
struct FrameReader {
    stream: TcpStream,
    pending: String,
    frame: (Option<i64>, String, Option<String>),
}

impl FrameReader {
    fn new(stream: TcpStream) -> FrameReader {
        FrameReader {
            stream,
            pending: String::new(),
            frame: (None, String::new(), None),
        }
    }

    async fn next(&mut self) -> (i64, String, String) {
        loop {
            while let Some(end) = self.pending.find('\n') {
                let line: String = self.pending.drain(..=end).collect();
                let line = line.trim_end_matches(['\n', '\r']);
                if let Some(id) = line.strip_prefix("id:") {
                    self.frame.0 = Some(id.trim().parse().unwrap());
                } else if let Some(event) = line.strip_prefix("event:") {
                    self.frame.1 = event.trim().to_string();
                } else if let Some(data) = line.strip_prefix("data:") {
                    self.frame.2 = Some(data.trim().to_string());
                } else if line.is_empty() {
                    if let (Some(id), Some(data)) = (self.frame.0, self.frame.2.take()) {
                        let event = std::mem::take(&mut self.frame.1);
                        self.frame.0 = None;
                        return (id, event, data);
                    }
                }
                // Anything else is a chunk size line or a keep-alive comment.
            }
            let mut buffer = [0u8; 8192];
            let n = tokio::time::timeout(GUARD, self.stream.read(&mut buffer))
                .await
                .expect("an event within the guard time")
                .unwrap();
            assert!(n > 0, "the stream closed early");
            self.pending.push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
    }
}

/// One GET over a fresh connection; returns the status.
async fn page_status(address: std::net::SocketAddr, path: &str) -> u16 {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(GUARD, stream.read_to_end(&mut response))
        .await
        .expect("a whole page")
        .unwrap();
    String::from_utf8_lossy(&response[..12.min(response.len())])[9..]
        .parse()
        .unwrap()
}

/// Concurrent SSE clients.
const CLIENTS: usize = 100;
/// Epochs the run commits while they watch.
const EPOCHS: u32 = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_clients_get_every_epoch_once_while_pages_load() {
    let server = Arc::new(Server::start().await);
    let mut readers = Vec::new();
    for _ in 0..CLIENTS {
        let (stream, status, head) = server.open_stream(None).await;
        assert_eq!(status, 200, "{head}");
        readers.push(FrameReader::new(stream));
    }
    server.wait_for_subscribers(CLIENTS, "all clients subscribed").await;
    let clients: Vec<_> = readers
        .into_iter()
        .map(|mut reader| {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while seen.len() < EPOCHS as usize {
                    let (id, event, data) = reader.next().await;
                    assert_eq!(event, "epoch");
                    let payload: serde_json::Value = serde_json::from_str(&data).unwrap();
                    seen.push((id, payload["epoch"].as_u64().unwrap() as u32));
                }
                seen
            })
        })
        .collect();

    // Page loads keep coming while the run trains.
    let stop = Arc::new(AtomicBool::new(false));
    let loader = {
        let (server, stop) = (server.clone(), stop.clone());
        tokio::spawn(async move {
            let run = server.run.clone();
            let pages = [
                "/".to_string(),
                format!("/runs/{run}"),
                format!("/runs/{run}/charts/loss.svg"),
                format!("/runs/{run}/charts/auroc.svg"),
                "/api/runs".to_string(),
                format!("/api/runs/{run}"),
            ];
            let mut loads = 0;
            while !stop.load(Ordering::Relaxed) || loads < pages.len() {
                let path = &pages[loads % pages.len()];
                assert_eq!(page_status(server.address, path).await, 200, "{path}");
                loads += 1;
            }
            loads
        })
    };

    // Training: commit an epoch (metrics, then its event) and broadcast it; never waits on a client.
    let trainer = {
        let server = server.clone();
        tokio::task::spawn_blocking(move || {
            let mut seqs = Vec::new();
            for epoch in 1..=EPOCHS {
                let metrics = json!({"train_loss": 1.0 / epoch as f64, "val_loss": 1.1 / epoch as f64,
                    "val_mean_auroc": 0.5 + epoch as f64 / 100.0, "lr": 0.001});
                server
                    .app
                    .store()
                    .record_epoch(&server.run, epoch, &metrics, None)
                    .unwrap();
                seqs.push(server.emit(epoch));
                std::thread::sleep(Duration::from_millis(20));
            }
            seqs
        })
    };
    let seqs = tokio::time::timeout(GUARD, trainer)
        .await
        .expect("training finished")
        .unwrap();
    let expected: Vec<(i64, u32)> = seqs.iter().copied().zip(1..=EPOCHS).collect();
    for (i, client) in clients.into_iter().enumerate() {
        let seen = tokio::time::timeout(GUARD, client).await.expect("client done").unwrap();
        assert_eq!(seen, expected, "client {i}: every epoch exactly once, in order");
    }
    stop.store(true, Ordering::Relaxed);
    let loads = loader.await.unwrap();
    eprintln!("sse load: {CLIENTS} clients each got all {EPOCHS} epochs once; {loads} page loads, all 200");
    assert_eq!(
        server.app.state.store.epochs(&server.run).unwrap().len(),
        EPOCHS as usize
    );
}
