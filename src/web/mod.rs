//! The dashboard: the axum router over the run store, with pages, SVG charts, live events (SSE)
//! and the JSON API. Writes (submit, cancel, resume) go through the [`JobControl`] trait, which the
//! training engine implements; this module never trains anything itself.

mod auth;
pub(crate) mod axes;
pub mod charts;
pub mod epochs;
pub mod error;
mod guard;
pub(crate) mod metrics;
mod routes;
mod sse;
mod templates;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::Router;
use tokio::sync::broadcast;
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use error::{AppError, FieldError};
/// The most runs one compare page takes.
pub use routes::compare::MAX_COMPARED;

use crate::service::estimate::Estimator;
use crate::service::{self, predict::Predictions};
use crate::store::{EventRow, Store};
use crate::train::job::JobPaths;

/// The write side of the dashboard, implemented over the training engine (and by a fake in tests).
/// Calls must return quickly: they queue or signal work, they do not wait for it.
pub trait JobControl: Send + Sync {
    /// Validates a training config (JSON, as posted) and queues a run; returns the new run's id,
    /// or every invalid field.
    fn submit(&self, config: serde_json::Value) -> Result<String, Vec<FieldError>>;
    /// Asks a queued or running run to stop.
    fn cancel(&self, id: &str) -> Result<(), service::Error>;
    /// Queues an interrupted or cancelled run to continue from its last checkpoint.
    fn resume(&self, id: &str) -> Result<(), service::Error>;
    /// Ids of the runs waiting or running, in the order they will train.
    fn queue(&self) -> Vec<String>;
}

/// How many live events a slow SSE client may fall behind before it is resynced from the store.
pub const LIVE_EVENT_BUFFER: usize = 1024;

/// Everything the handlers share.
pub struct AppState {
    pub store: Arc<Store>,
    /// Live events, already stored (their `seq` is the SSE id). Whoever appends an event to the
    /// store sends the returned row here; sending never blocks, and a send without subscribers
    /// is fine.
    pub events: broadcast::Sender<EventRow>,
    pub jobs: Arc<dyn JobControl>,
    /// Required on every request when set (a server listening beyond loopback).
    pub token: Option<String>,
    /// The store, demo data set and caches live here (as `cxr8 serve --data-dir`).
    pub data_dir: PathBuf,
    /// Checkpoints, one folder per run (as `cxr8 serve --ckpt-dir`).
    pub ckpt_dir: PathBuf,
    /// Predictions with runs' checkpoints (the Predict pages), with their model cache.
    pub predict: Arc<Predictions>,
    /// Parsed data set facts and cache builds of this process (see `/datasets`).
    pub datasets: crate::service::datasets::LiveDatasets,
    /// Scalar epoch rows of recently shown runs (pages and charts re-read them constantly).
    pub epoch_cache: epochs::EpochCache,
    /// Runs' durations before they start (the new-run form, `/api/estimate`).
    pub estimates: Arc<Estimator>,
}

impl AppState {
    pub fn new(store: Arc<Store>, jobs: Arc<dyn JobControl>, data_dir: PathBuf, ckpt_dir: PathBuf) -> AppState {
        let (events, _) = broadcast::channel(LIVE_EVENT_BUFFER);
        let paths = JobPaths {
            data_dir: data_dir.clone(),
            ckpt_dir: ckpt_dir.clone(),
        };
        // The queue lists the running run first: while it holds anything, the worker trains.
        let queue = jobs.clone();
        let busy = Box::new(move || !queue.queue().is_empty());
        AppState {
            estimates: Arc::new(Estimator::on_this_machine(store.clone(), paths, busy)),
            events,
            jobs,
            token: None,
            predict: Arc::new(Predictions::new(store.clone(), data_dir.clone(), ckpt_dir.clone())),
            store,
            data_dir,
            ckpt_dir,
            datasets: Default::default(),
            epoch_cache: Default::default(),
        }
    }
}

/// Largest accepted request body: configs are small JSON objects.
const BODY_LIMIT_BYTES: usize = 256 * 1024;
/// Predictions may load a model and run Grad-CAM on a large image on the CPU.
const PREDICT_TIMEOUT: Duration = Duration::from_secs(120);
/// Ordinary requests (pages, charts, API) finish well within this; event streams are exempt.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Only our own scripts, styles and images; no inline code, no framing, forms post back to us.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     frame-ancestors 'none'; form-action 'self'";

/// Builds the whole app; `main` only binds it to a socket, tests call it with `oneshot`.
pub fn app(state: Arc<AppState>) -> Router {
    // SVG and HTML compress well; SSE must not be buffered by a compressor.
    let compressible = SizeAbove::new(256)
        .and(NotForContentType::GRPC)
        .and(NotForContentType::SSE);
    let bounded = routes::router()
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT_BYTES))
        .layer(axum::middleware::map_response(explain_body_limit));
    // Image uploads get their own, larger body limit; the outermost layer turns the limit's bare
    // 413 into our message.
    let uploads = routes::predict::router()
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            PREDICT_TIMEOUT,
        ))
        .layer(RequestBodyLimitLayer::new(routes::predict::UPLOAD_LIMIT_BYTES))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            routes::predict::explain_body_limit,
        ));
    Router::new()
        .merge(bounded)
        .merge(uploads)
        .merge(sse::router())
        .fallback(|| async { AppError::NotFound("no such page".into()) })
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_token))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::check_host_and_origin,
        ))
        .with_state(state)
        .layer(CompressionLayer::new().compress_when(compressible))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .layer(TraceLayer::new_for_http())
}

/// The body-limit layer answers a bare plain-text 413; say what the limit is, in the app's error
/// format, so a pasted 1 MB note or config gets a reason instead of "length limit exceeded".
async fn explain_body_limit(response: axum::response::Response) -> axum::response::Response {
    use axum::response::IntoResponse;
    let ours = response.headers().get(header::CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.starts_with(b"application/json") || v.starts_with(b"text/html")
    });
    if response.status() != StatusCode::PAYLOAD_TOO_LARGE || ours {
        return response;
    }
    let message = format!(
        "the request is larger than {} KiB, more than any form or config needs: shorten the long field",
        BODY_LIMIT_BYTES / 1024
    );
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        axum::Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}
