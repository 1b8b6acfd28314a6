//! Training engine: run configuration, the training loop on a worker thread, metrics, checkpoints, events.

pub mod backend;
pub mod checkpoint;
pub mod config;
mod error;
pub mod event;
pub mod gradcam;
pub mod heldout;
pub mod job;
pub mod loss;
pub mod metrics;
pub mod optim;
pub mod predict;
pub mod presets;
pub mod runner;
pub mod throughput;
pub mod weights;

pub use config::{FieldError, TrainConfig};
pub use error::{Error, Result};
pub use event::{EventSink, TrainEvent};
