//! Training engine: run configuration, the training loop on a worker thread, metrics, checkpoints, events.

pub mod augment;
pub mod backend;
