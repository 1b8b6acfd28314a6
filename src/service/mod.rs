//! The service layer between the engine (data, train, store) and its front ends (web, cli): what
//! the dashboard and the commands ask for, in their terms, with no HTTP and no Burn types in its
//! interface.
//!
//! - [`runs`]: submitting a training config as a stored run, and executing it while recording
//!   every event, epoch and checkpoint into the store.
//! - [`queue`]: the dashboard's job queue: one worker thread trains queued runs in order.
//! - [`datasets`]: registered data sets: checking and storing a label file + image folder under a
//!   name, their facts and caches.
//! - [`estimate`]: a run's duration before it starts, from its measured (and cached) training
//!   step, and the new-run form's machine-sized defaults.
//! - [`evaluation`]: a checkpoint's predictions on its own run's train / validation / test split.
//! - [`Error`]: the one error type of the layer; engine errors are carried inside it as they are.
//! - [`predict`]: predictions and Grad-CAM with a run's best checkpoint, and its validation images.

pub mod datasets;
mod error;
pub mod estimate;
pub mod evaluation;
pub mod predict;
pub mod queue;
pub mod runs;

pub use error::{Error, Result};
