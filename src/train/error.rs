//! The training engine's error type: each variant says what went wrong and what to try.

use std::path::PathBuf;

use super::config::FieldError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The run configuration has impossible values.
    #[error("invalid run configuration: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Config(Vec<FieldError>),
    /// A checkpoint that could not be written or read back.
    #[error("checkpoint {}: {message}", path.display())]
    Checkpoint { path: PathBuf, message: String },
    /// A resume that cannot continue the run it names.
    #[error("cannot resume: {0}")]
    Resume(String),
    /// The data failed (missing image, unreadable cache, a split with no batches...): the data
    /// layer's own error, which names the file and what to do.
    #[error("reading training data: {0}")]
    Data(crate::data::Error),
    /// A label name the model does not predict.
    #[error("unknown label '{name}'; this model predicts: {}", labels.join(", "))]
    UnknownLabel { name: String, labels: Vec<String> },
    #[error("label index {index} out of range: the model has {labels} labels")]
    LabelIndex { index: usize, labels: usize },
    /// A batch whose shape does not match what it claims.
    #[error("bad batch: {0}")]
    Batch(String),
    /// The loss became NaN or infinite.
    #[error("loss became {value} at epoch {epoch}, batch {batch}; the run diverged — lower the learning rate (e.g. divide it by 10), or set --grad-clip 1.0")]
    NonFinite { epoch: usize, batch: usize, value: f32 },
    /// PyTorch / torchvision weights that cannot be read, fitted or written.
    #[error(transparent)]
    Weights(#[from] crate::model::torchvision::Error),
    /// A weight import that needs more from the user.
    #[error("{0}")]
    WeightsUsage(String),
    /// The chosen device cannot be used.
    #[error(transparent)]
    Backend(#[from] super::backend::BackendError),
    /// The GPU could not allocate what a training step needs.
    #[error("the GPU ran out of memory training at batch size {batch_size} ({image_size} px images): {detail}; lower the batch size (e.g. to {}), the image size, or use --precision bf16", (batch_size / 2).max(1))]
    OutOfMemory {
        batch_size: usize,
        image_size: u32,
        detail: String,
    },
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// A file the engine could not read or write stays an I/O error of the engine (a checkpoint on a
/// full disk is reported as a checkpoint failure, not as bad data); the rest is the data's fault.
impl From<crate::data::Error> for Error {
    fn from(e: crate::data::Error) -> Self {
        match e {
            crate::data::Error::Io { path, source } => Error::Io { path, source },
            other => Error::Data(other),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
