//! cxr8: train, watch and compare chest X-ray classifiers (NIH ChestX-ray14) from a local dashboard.

/// `cxr8 bench`: throughput against PyTorch / PIL references, kept apart from the product.
pub mod bench;
/// Command-line interface: clap types and dispatch to the library.
pub mod cli;
/// Label files, images, splits, caches and the synthetic demo data set.
pub mod data;
/// The data-folder lock: one `cxr8 serve` per data folder, no `cxr8 train` beside it.
pub mod lock;
/// Burn model definitions (CNN families) and their configs.
pub mod model;
/// The service layer between the engine and the web / CLI front ends: runs, queue, data sets, predictions.
pub mod service;
/// Run store: SQLite (WAL) holding runs, per-epoch metrics and events.
pub mod store;
/// Training engine: configs, loop, metrics, checkpoints, events.
pub mod train;
/// Dashboard: axum app with run list, run and compare pages, SVG charts, SSE and the JSON API.
pub mod web;
