//! Shared helpers for integration tests: the real NIH files, a job-control fake that accepts
//! nothing, the dashboard in process (`app`: one fixture and one reply type for every web test),
//! the server binary as a child process (killed on drop), a tiny demo data set, bounded waits,
//! and a small blocking HTTP/1.1 client with a Server-Sent Events reader (all loopback, so no
//! TLS).

#![allow(dead_code)]

mod app;

pub use app::{
    encode_component, encode_form, from_page, read_events, FixedStep, LoopbackServer, Multipart, Reply, TestApp, FORM,
    HOST, JSON,
};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The real NIH material shared with every developer and CI (`../shared/data/nih`). Tests that
/// need it fail loudly when it is missing rather than skipping.
pub fn nih_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/nih");
    assert!(
        dir.join("Data_Entry_2017_v2020.csv.gz").is_file(),
        "real NIH test data missing at {}: CI and developers must have ../shared/data/nih",
        dir.display()
    );
    dir
}

/// How long any single wait in the end-to-end tests may take before the test fails (a tiny run
/// takes seconds; this only stops a broken build from hanging CI).
pub const WAIT_LIMIT: Duration = Duration::from_secs(120);

/// A point in time after which a wait fails with a message saying what it waited for.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(Instant);

impl Deadline {
    pub fn after(limit: Duration) -> Self {
        Deadline(Instant::now() + limit)
    }

    pub fn default_limit() -> Self {
        Deadline::after(WAIT_LIMIT)
    }

    pub fn passed(&self) -> bool {
        Instant::now() >= self.0
    }

    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// Polls `check` every 100 ms until it gives a value; panics naming `what` when time runs out.
    pub fn wait_for<T>(&self, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        loop {
            if let Some(value) = check() {
                return value;
            }
            assert!(!self.passed(), "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Writes a small demo data set where `cxr8 serve --data-dir data_dir` looks for it, so the server
/// finds it complete and does not spend a minute generating the 3,000-image default.
pub fn tiny_demo(data_dir: &Path) {
    cxr8::data::demo::generate(&cxr8::data::demo::DemoConfig {
        out: data_dir.join("demo"),
        images: 240,
        size: 64,
        seed: 11,
    })
    .expect("generating a tiny demo data set");
}

/// `cxr8 serve` started by a test on a free loopback port. Dropping it kills the process, so a
/// failing assertion never leaves a server behind.
pub struct Server {
    child: Option<Child>,
    pub url: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts the real binary on `127.0.0.1:0` and waits until it prints its URL.
    pub fn start(data_dir: &Path, ckpt_dir: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cxr8"))
            .arg("serve")
            .args(["--host", "127.0.0.1", "--port", "0"])
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--ckpt-dir")
            .arg(ckpt_dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the cxr8 binary");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (url_tx, url_rx) = mpsc::channel();
        let sink = log.clone();
        // Keeps draining stderr for the server's whole life (a full pipe would block it), and
        // keeps the text for failure messages.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.split("cxr8 dashboard: ").nth(1) {
                    let _ = url_tx.send(url.trim().to_string());
                }
                let mut text = sink.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        let mut server = Server {
            child: Some(child),
            url: String::new(),
            log,
        };
        match url_rx.recv_timeout(WAIT_LIMIT) {
            Ok(url) => server.url = url,
            Err(_) => panic!(
                "cxr8 serve did not print its URL within {} s; its output:\n{}",
                WAIT_LIMIT.as_secs(),
                server.log()
            ),
        }
        server
    }

    /// What the server wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// Asks the server to shut down as Ctrl-C would, and waits for it to exit.
    pub fn stop(mut self) {
        let mut child = self.child.take().expect("server running");
        let interrupted = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        let deadline = Deadline::after(Duration::from_secs(30));
        if interrupted {
            while !deadline.passed() {
                if child.try_wait().expect("waiting for the server").is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "cxr8 serve did not stop on SIGINT within 30 s; its output:\n{}",
            self.log()
        );
    }

    /// SIGKILL, as a crash or power cut would end it: nothing gets to clean up.
    pub fn kill_hard(mut self) {
        let mut child = self.child.take().expect("server running");
        child.kill().expect("killing the server");
        child.wait().expect("reaping the server");
    }

    pub fn get(&self, path: &str) -> Response {
        request("GET", &format!("{}{path}", self.url), &[], None)
    }

    pub fn get_json(&self, path: &str) -> Value {
        let response = self.get(path);
        assert_eq!(response.status, 200, "GET {path}: {}", response.text());
        response.json()
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Response {
        request(
            "POST",
            &format!("{}{path}", self.url),
            &[("Content-Type", "application/json")],
            Some(body.to_string().as_bytes()),
        )
    }

    /// Submits a run through the JSON API and returns its id.
    pub fn submit(&self, config: &Value) -> String {
        let response = self.post_json("/api/runs", config);
        assert_eq!(response.status, 201, "POST /api/runs: {}", response.text());
        response.json()["id"].as_str().expect("an id in the answer").to_string()
    }

    /// Opens `/runs/{id}/events`, resuming after `last_event_id` when given.
    pub fn events(&self, run_id: &str, last_event_id: Option<i64>) -> SseStream {
        let id = last_event_id.map(|n| n.to_string());
        let headers: Vec<(&str, &str)> = id.iter().map(|id| ("Last-Event-ID", id.as_str())).collect();
        let response = open("GET", &format!("{}/runs/{run_id}/events", self.url), &headers, None);
        assert_eq!(response.status, 200, "GET /runs/{run_id}/events");
        SseStream {
            body: BufReader::new(response.body),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!("--- cxr8 serve output ---\n{}", self.log());
            }
        }
    }
}

/// A finished HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// One request on a fresh connection (`Connection: close`), read to the end.
pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Response {
    let mut response = open(method, url, headers, body);
    let mut bytes = Vec::new();
    response
        .body
        .read_to_end(&mut bytes)
        .unwrap_or_else(|e| panic!("{method} {url}: reading the body: {e}"));
    Response {
        status: response.status,
        headers: response.headers,
        body: bytes,
    }
}

/// A response whose body is still to be read (a stream).
pub struct OpenResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

/// Sends a request and reads the status line and headers. Reads block for at most 30 s each, so a
/// stalled server fails the test instead of hanging it (SSE keep-alives come every 15 s).
pub fn open(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> OpenResponse {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("only http:// URLs: {url}"));
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let stream = TcpStream::connect(authority).unwrap_or_else(|e| panic!("{method} {url}: cannot connect: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut writer = &stream;
    writer.write_all(head.as_bytes()).unwrap();
    if let Some(body) = body {
        writer.write_all(body).unwrap();
    }

    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("{method} {url}: no response: {e}"));
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{method} {url}: bad status line {line:?}"));
    let mut response_headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        if let Some((name, value)) = trimmed.split_once(':') {
            response_headers.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    let chunked = header(&response_headers, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let length = header(&response_headers, "content-length").and_then(|v| v.parse::<u64>().ok());
    let body = if method == "HEAD" || status == 204 || status == 304 {
        Body::Sized(reader.take(0))
    } else if chunked {
        Body::Chunked {
            reader,
            left: 0,
            done: false,
        }
    } else if let Some(length) = length {
        Body::Sized(reader.take(length))
    } else {
        Body::ToClose(reader)
    };
    OpenResponse {
        status,
        headers: response_headers,
        body,
    }
}

/// A response body: fixed length, chunked (streams), or until the server closes.
pub enum Body {
    Sized(std::io::Take<BufReader<TcpStream>>),
    Chunked {
        reader: BufReader<TcpStream>,
        left: usize,
        done: bool,
    },
    ToClose(BufReader<TcpStream>),
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Body::Sized(r) => r.read(buf),
            Body::ToClose(r) => r.read(buf),
            Body::Chunked { reader, left, done } => {
                if *done || buf.is_empty() {
                    return Ok(0);
                }
                if *left == 0 {
                    let mut size = String::new();
                    reader.read_line(&mut size)?;
                    let hex = size.trim().split(';').next().unwrap_or("");
                    *left = usize::from_str_radix(hex, 16).map_err(|_| {
                        std::io::Error::new(std::io::ErrorKind::InvalidData, format!("bad chunk size {size:?}"))
                    })?;
                    if *left == 0 {
                        *done = true;
                        return Ok(0);
                    }
                }
                let want = buf.len().min(*left);
                let n = reader.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                *left -= n;
                if *left == 0 {
                    let mut crlf = [0u8; 2];
                    reader.read_exact(&mut crlf)?;
                }
                Ok(n)
            }
        }
    }
}

/// One Server-Sent Event as sent: its id, event name and data.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub id: Option<i64>,
    pub event: String,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("event data is not JSON ({e}): {}", self.data))
    }

    pub fn seq(&self) -> i64 {
        self.id.unwrap_or_else(|| panic!("event without an id: {self:?}"))
    }
}

/// Reads an event stream event by event.
pub struct SseStream {
    body: BufReader<Body>,
}

impl SseStream {
    /// The next event (comments and keep-alives skipped), `None` at the end of the stream.
    /// Panics once `deadline` has passed (keep-alives alone never end a wait).
    pub fn next_event(&mut self, deadline: Deadline) -> Option<SseEvent> {
        let mut event = SseEvent {
            id: None,
            event: "message".into(),
            data: String::new(),
        };
        let mut has_data = false;
        let mut line = String::new();
        loop {
            assert!(!deadline.passed(), "timed out reading the event stream");
            line.clear();
            let n = self
                .body
                .read_line(&mut line)
                .unwrap_or_else(|e| panic!("reading the event stream: {e}"));
            if n == 0 {
                return None;
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if has_data {
                    return Some(event);
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => event.id = Some(value.parse().unwrap_or_else(|_| panic!("event id {value:?}"))),
                "event" => event.event = value.to_string(),
                "data" => {
                    if has_data {
                        event.data.push('\n');
                    }
                    event.data.push_str(value);
                    has_data = true;
                }
                _ => {}
            }
        }
    }

    /// Events up to and including the first `done`, failing after `deadline`.
    pub fn until_done(&mut self, deadline: Deadline) -> Vec<SseEvent> {
        self.until(deadline, "the run's done event", |e| e.event == "done")
    }

    /// Events up to and including the first one `stop` accepts.
    pub fn until(&mut self, deadline: Deadline, what: &str, stop: impl Fn(&SseEvent) -> bool) -> Vec<SseEvent> {
        let mut seen = Vec::new();
        loop {
            assert!(
                !deadline.passed(),
                "timed out waiting for {what}; events so far: {seen:#?}"
            );
            let event = self
                .next_event(deadline)
                .unwrap_or_else(|| panic!("the event stream ended before {what}; events: {seen:#?}"));
            let last = stop(&event);
            seen.push(event);
            if last {
                return seen;
            }
        }
    }
}

/// A dashboard write side that accepts nothing: for the web tests whose pages only read (compare,
/// data sets, predictions). Tests that submit runs have their own fakes, which record what they get.
pub struct NoJobs;

impl cxr8::web::JobControl for NoJobs {
    fn submit(&self, _config: Value) -> Result<String, Vec<cxr8::web::FieldError>> {
        Err(vec![cxr8::web::FieldError::new("", "this test submits no runs")])
    }
    fn cancel(&self, id: &str) -> Result<(), cxr8::service::Error> {
        Err(cxr8::service::Error::UnknownRun(id.into()))
    }
    fn resume(&self, id: &str) -> Result<(), cxr8::service::Error> {
        Err(cxr8::service::Error::UnknownRun(id.into()))
    }
    fn queue(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Labels of [`empty_map_checkpoint`], most probable first on any image.
pub const EMPTY_MAP_LABELS: [&str; 3] = ["Hernia", "Mass", "Effusion"];

/// A ResNet-18 checkpoint (64 px, random backbone) imported into run folder `dir/crafted` whose
/// head makes Grad-CAM empty, by construction, for its two most probable labels: `Hernia` reads
/// no channel (weights 0, bias +5: zero gradient, so a zero map), `Mass` reads every channel
/// negatively (bias +3: the backbone's last ReLU makes every activation ≥ 0, so Σ α·A ≤ 0 and
/// the ReLU leaves nothing); `Effusion` reads every channel positively (bias −6), so its map is
/// positive wherever the backbone is active. Returns (run folder, epoch folder).
pub fn empty_map_checkpoint(dir: &Path) -> (PathBuf, PathBuf) {
    use cxr8::model::{torchvision, Architecture, Classifier, ModelSpec};
    use cxr8::train::weights::{import_checkpoint, ImportRequest};
    let spec = ModelSpec {
        architecture: Architecture::ResNet18,
        ..ModelSpec::default()
    };
    let source = Classifier::new(
        &spec,
        EMPTY_MAP_LABELS.len(),
        &cxr8::train::backend::BackendKind::Cpu.device(),
    );
    let mut tensors = torchvision::export(&source, &spec).unwrap();
    let (shape, weight) = tensors.get_mut("fc.weight").unwrap();
    let inputs = shape[1];
    assert_eq!(shape[0], EMPTY_MAP_LABELS.len());
    for (i, w) in weight.iter_mut().enumerate() {
        *w = [0.0, -1e-3, 1e-3][i / inputs];
    }
    tensors.get_mut("fc.bias").unwrap().1 = vec![5.0, 3.0, -6.0];
    let weights = dir.join("crafted.safetensors");
    std::fs::write(
        &weights,
        torchvision::safetensors_bytes(&tensors, &Default::default()).unwrap(),
    )
    .unwrap();
    let out = dir.join("crafted");
    let (epoch_dir, report, _) = import_checkpoint(&ImportRequest {
        weights,
        architecture: Architecture::ResNet18,
        image_size: 64,
        mean: 0.5,
        std: 0.25,
        labels: Some(EMPTY_MAP_LABELS.map(String::from).to_vec()),
        out: out.clone(),
    })
    .unwrap();
    assert!(report.head_kept, "the crafted head must be the one used");
    (out, epoch_dir)
}
