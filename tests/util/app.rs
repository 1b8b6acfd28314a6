//! The dashboard in process for the web tests: `web::app` over a temporary store and folders,
//! called with `oneshot` (or served on a loopback port for event streams), and the one `Reply`
//! every request helper answers with. Each test file keeps its own data (runs, data sets, a
//! trained model) and its own job-control fake where it needs one; the plumbing lives here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::header::{self, AsHeaderName};
use axum::http::{request, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use cxr8::service::estimate::{Estimator, Measure, Probe, StepCost};
use cxr8::store::{EventRow, Store};
use cxr8::train::job::JobPaths;
use cxr8::web::{app, AppState, JobControl};
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tower::ServiceExt;

use super::NoJobs;

/// The dashboard's address as its own pages know it: requests "from the page" name it in `Host`
/// and `Origin`, as a browser on the dashboard does (the guard refuses cross-site writes).
pub const HOST: &str = "127.0.0.1:8080";
pub const ORIGIN: &str = "http://127.0.0.1:8080";

pub const FORM: &str = "application/x-www-form-urlencoded";
pub const JSON: &str = "application/json";

/// Replies are read whole up to this size (uploaded images and Grad-CAM overlays included).
const REPLY_LIMIT: usize = 64 << 20;

/// `web::app` with its state; every request helper builds a fresh router over the same state,
/// as each connection of the real server does.
pub struct TestApp {
    pub state: Arc<AppState>,
    /// Holds the data and checkpoint folders; `None` when they belong to the caller.
    dirs: Option<tempfile::TempDir>,
}

/// What a test sets before the app exists: its store and folders come first, so that a
/// job-control fake can be given the store and runs can be seeded.
pub struct TestAppBuilder {
    dirs: Option<tempfile::TempDir>,
    store: Arc<Store>,
    data_dir: PathBuf,
    ckpt_dir: PathBuf,
    jobs: Arc<dyn JobControl>,
    token: Option<String>,
    /// How the app times a run's step for its duration estimate; `None`: for real, on Burn.
    step_timing: Option<Arc<dyn Measure>>,
}

/// A step timing that takes no time to make: the cost given, every time.
pub struct FixedStep(pub StepCost);

impl FixedStep {
    /// One millisecond a step: every run is estimated well under an hour.
    pub fn quick() -> FixedStep {
        FixedStep(StepCost {
            batch: 8,
            train_ms_per_step: 1.0,
            infer_ms_per_batch: 1.0,
            timed_steps: 3,
            timed_batches: 3,
        })
    }
}

impl Measure for FixedStep {
    fn measure(&self, _: &Probe) -> Result<StepCost, String> {
        Ok(self.0.clone())
    }
}

/// An in-memory store, empty folders, and job control that accepts nothing.
impl Default for TestApp {
    fn default() -> TestApp {
        TestApp::in_memory().build()
    }
}

impl TestApp {
    pub fn new() -> TestApp {
        TestApp::default()
    }

    /// A store in memory; the data and checkpoint folders in a temporary folder.
    pub fn in_memory() -> TestAppBuilder {
        TestAppBuilder::in_temp_dir(|_| Store::open_in_memory().unwrap())
    }

    /// The store on disk in the data folder, as `cxr8 serve --data-dir` keeps it (for what
    /// reads the data folder: data sets, caches, uploads).
    pub fn on_disk() -> TestAppBuilder {
        TestAppBuilder::in_temp_dir(|data_dir| Store::open(data_dir).unwrap())
    }

    /// Over a store and folders the caller owns (shared by several apps, e.g. a trained run).
    pub fn over(store: Arc<Store>, data_dir: &Path, ckpt_dir: &Path) -> TestAppBuilder {
        TestAppBuilder {
            dirs: None,
            store,
            data_dir: data_dir.to_path_buf(),
            ckpt_dir: ckpt_dir.to_path_buf(),
            jobs: Arc::new(NoJobs),
            token: None,
            step_timing: Some(Arc::new(FixedStep::quick())),
        }
    }

    pub fn router(&self) -> Router {
        app(self.state.clone())
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.state.store
    }

    /// The temporary folder holding `data/` and `ckpts/` (room for a test's own files too).
    pub fn root(&self) -> &Path {
        self.dirs
            .as_ref()
            .expect("an app built over the caller's folders has no folder of its own")
            .path()
    }

    /// Sends the request as it is.
    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.router().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), REPLY_LIMIT)
            .await
            .unwrap()
            .to_vec();
        Reply { status, headers, body }
    }

    /// A request with exactly these headers and nothing added (for tests of the guard itself).
    pub async fn request(&self, method: Method, uri: &str, headers: &[(&str, &str)], body: impl Into<Body>) -> Reply {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request.body(body.into()).unwrap()).await
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.send_empty(Method::GET, uri).await
    }

    /// A request from the dashboard's page without a body (and so without a content type).
    pub async fn send_empty(&self, method: Method, uri: &str) -> Reply {
        self.send(from_page(method, uri).body(Body::empty()).unwrap()).await
    }

    /// A POST from the dashboard's page with this content type and body, its length declared as
    /// a browser declares it.
    pub async fn post(&self, uri: &str, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
        let body = body.into();
        let request = from_page(Method::POST, uri)
            .header(header::CONTENT_TYPE, content_type)
            .header(header::CONTENT_LENGTH, body.len())
            .body(Body::from(body))
            .unwrap();
        self.send(request).await
    }

    /// A form posted as a browser encodes it; pairs in order, names may repeat.
    pub async fn post_form(&self, uri: &str, pairs: &[(&str, &str)]) -> Reply {
        self.post(uri, FORM, encode_form(pairs)).await
    }

    pub async fn post_json(&self, uri: &str, body: &Value) -> Reply {
        self.post(uri, JSON, body.to_string()).await
    }

    /// Stores an event without broadcasting it (as if written while no one listened).
    pub fn store_event(&self, run: &str, kind: &str, payload: Value) -> EventRow {
        let seq = self.store().append_event(run, kind, &payload).unwrap();
        EventRow {
            seq,
            run_id: run.to_string(),
            kind: kind.into(),
            payload,
            at: cxr8::store::now(),
        }
    }

    /// Stores and broadcasts an event, as the training worker does; returns its seq.
    pub fn emit(&self, run: &str, kind: &str, payload: Value) -> i64 {
        let row = self.store_event(run, kind, payload);
        let seq = row.seq;
        self.state.events.send(row).unwrap();
        seq
    }

    /// Serves the app on a free loopback port (event streams need a real connection).
    pub async fn serve(&self) -> LoopbackServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let router = self.router();
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        LoopbackServer { address, task }
    }
}

impl TestAppBuilder {
    fn in_temp_dir(open: impl FnOnce(&Path) -> Store) -> TestAppBuilder {
        let dirs = tempfile::tempdir().unwrap();
        let data_dir = dirs.path().join("data");
        let ckpt_dir = dirs.path().join("ckpts");
        // Where the trainer would have made it; deleting a run removes its folder in here.
        std::fs::create_dir_all(&ckpt_dir).unwrap();
        TestAppBuilder {
            store: Arc::new(open(&data_dir)),
            dirs: Some(dirs),
            data_dir,
            ckpt_dir,
            jobs: Arc::new(NoJobs),
            token: None,
            step_timing: Some(Arc::new(FixedStep::quick())),
        }
    }

    /// The store the app will use: to seed runs and to give to a job-control fake.
    pub fn store(&self) -> Arc<Store> {
        self.store.clone()
    }

    /// The temporary folder that holds `data/` and `ckpts/`.
    pub fn root(&self) -> &Path {
        self.dirs.as_ref().expect("the caller owns these folders").path()
    }

    pub fn ckpt_dir(&self) -> &Path {
        &self.ckpt_dir
    }

    pub fn jobs(mut self, jobs: Arc<dyn JobControl>) -> TestAppBuilder {
        self.jobs = jobs;
        self
    }

    /// Requires this access token, as a server listening beyond loopback does.
    pub fn token(mut self, token: &str) -> TestAppBuilder {
        self.token = Some(token.to_string());
        self
    }

    /// Estimates time each run's step with this instead of the default one-millisecond step
    /// (which keeps form submissions quick and never asks for a confirmation).
    pub fn step_timing(mut self, measure: Arc<dyn Measure>) -> TestAppBuilder {
        self.step_timing = Some(measure);
        self
    }

    /// Estimates time real training steps on Burn, as the dashboard does.
    pub fn real_step_timing(mut self) -> TestAppBuilder {
        self.step_timing = None;
        self
    }

    pub fn build(self) -> TestApp {
        let mut state = AppState::new(
            self.store.clone(),
            self.jobs.clone(),
            self.data_dir.clone(),
            self.ckpt_dir.clone(),
        );
        state.token = self.token;
        if let Some(measure) = self.step_timing {
            let paths = JobPaths {
                data_dir: self.data_dir,
                ckpt_dir: self.ckpt_dir,
            };
            let jobs = self.jobs;
            let busy = Box::new(move || !jobs.queue().is_empty());
            state.estimates = Arc::new(Estimator::new(self.store, paths, measure, busy));
        }
        TestApp {
            state: Arc::new(state),
            dirs: self.dirs,
        }
    }
}

/// A request as the dashboard's own page sends it: loopback `Host` and the same `Origin`.
pub fn from_page(method: Method, uri: &str) -> request::Builder {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, HOST)
        .header(header::ORIGIN, ORIGIN)
}

/// The app on a loopback port; stopped when dropped, so a failing test leaves no task behind.
pub struct LoopbackServer {
    pub address: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LoopbackServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A whole response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as text; a body that is not UTF-8 fails the test.
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body)
            .unwrap_or_else(|e| panic!("{} with a body that is not UTF-8 ({e})", self.status))
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.short()))
    }

    pub fn header(&self, name: impl AsHeaderName) -> Option<&str> {
        self.headers.get(name).map(|v| {
            v.to_str()
                .unwrap_or_else(|e| panic!("a header that is not text ({e}): {v:?}"))
        })
    }

    /// `Content-Type`, empty when there is none.
    pub fn content_type(&self) -> &str {
        self.header(header::CONTENT_TYPE).unwrap_or("")
    }

    pub fn location(&self) -> Option<&str> {
        self.header(header::LOCATION)
    }

    /// The status and the start of the body, for failure messages (any body, even binary).
    pub fn short(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        format!("{} {}", self.status, text.chars().take(400).collect::<String>())
    }

    /// The body decoded as a PNG, after checking the reply is one.
    pub fn png(&self) -> image::DynamicImage {
        assert_eq!(self.status, StatusCode::OK, "{}", self.short());
        assert_eq!(self.content_type(), "image/png");
        image::load_from_memory_with_format(&self.body, image::ImageFormat::Png).unwrap()
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986), for query values, path
/// segments and form fields.
pub fn encode_component(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// An `application/x-www-form-urlencoded` body.
pub fn encode_form(pairs: &[(impl AsRef<str>, impl AsRef<str>)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| {
            format!(
                "{}={}",
                encode_component(name.as_ref()),
                encode_component(value.as_ref())
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// A `multipart/form-data` body, part by part.
#[derive(Default)]
pub struct Multipart {
    body: Vec<u8>,
}

impl Multipart {
    pub const BOUNDARY: &str = "cxr8-test-boundary-7f3a";

    pub fn new() -> Multipart {
        Multipart::default()
    }

    pub fn content_type() -> String {
        format!("multipart/form-data; boundary={}", Multipart::BOUNDARY)
    }

    /// A plain field; its value as raw bytes (so NUL and invalid UTF-8 can be sent).
    pub fn field(self, name: &str, value: &[u8]) -> Multipart {
        self.part(&format!("form-data; name=\"{name}\""), value)
    }

    /// A file field.
    pub fn file(self, name: &str, file_name: &str, content_type: &str, bytes: &[u8]) -> Multipart {
        let disposition =
            format!("form-data; name=\"{name}\"; filename=\"{file_name}\"\r\nContent-Type: {content_type}");
        self.part(&disposition, bytes)
    }

    fn part(mut self, disposition: &str, value: &[u8]) -> Multipart {
        let head = format!(
            "--{}\r\nContent-Disposition: {disposition}\r\n\r\n",
            Multipart::BOUNDARY
        );
        self.body.extend_from_slice(head.as_bytes());
        self.body.extend_from_slice(value);
        self.body.extend_from_slice(b"\r\n");
        self
    }

    /// The body with its closing boundary.
    pub fn finish(mut self) -> Vec<u8> {
        self.body
            .extend_from_slice(format!("--{}--\r\n", Multipart::BOUNDARY).as_bytes());
        self.body
    }
}

/// One event as a stream delivers it: (id, event name, data as JSON).
pub type StreamedEvent = (i64, String, Value);

/// Reads whole Server-Sent Event frames from a raw HTTP response until `count` events with an id
/// and data have arrived (the response head and comments are skipped).
pub async fn read_events(stream: &mut TcpStream, count: usize) -> Vec<StreamedEvent> {
    let mut text = String::new();
    let mut buffer = [0u8; 4096];
    loop {
        // Only whole frames: the last one may still be arriving.
        let complete = &text[..text.rfind("\n\n").map_or(0, |end| end + 2)];
        let events: Vec<StreamedEvent> = complete
            .split("\n\n")
            .filter(|frame| frame.contains("data:") && frame.contains("id:"))
            .map(|frame| {
                let field = |name: &str| {
                    frame
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .map(|v| v.trim().to_string())
                        .unwrap_or_default()
                };
                (
                    field("id:").parse().unwrap(),
                    field("event:"),
                    serde_json::from_str(&field("data:")).unwrap(),
                )
            })
            .collect();
        if events.len() >= count {
            return events;
        }
        // A guard against hanging forever when an event never comes, not a speed check.
        let n = tokio::time::timeout(std::time::Duration::from_secs(60), stream.read(&mut buffer))
            .await
            .unwrap_or_else(|_| panic!("no event for 60 s; received so far: {text}"))
            .unwrap();
        assert!(n > 0, "stream closed early after: {text}");
        text.push_str(&String::from_utf8_lossy(&buffer[..n]));
    }
}
