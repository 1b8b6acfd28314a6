//! The service layer between the engine (data, train, store) and its front ends (web, cli): what
//! the dashboard and the commands ask for, in their terms, with no HTTP and no Burn types in its
//! interface.
//!
//! - [`predict`]: predictions and Grad-CAM with a run's best checkpoint, and its validation images.

pub mod predict;
