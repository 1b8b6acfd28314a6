//! The service layer's one error type. Each variant is a kind of answer a front end gives (the web
//! layer maps them to 404/409/413/422/500, the CLI prints them); engine errors are carried as they
//! are, so their messages (file, line, what to do) reach the user unchanged.

use crate::{data, store, train};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no run with id '{0}'")]
    UnknownRun(String),
    /// No such data set, upload, checkpoint or validation image.
    #[error("{0}")]
    NotFound(String),
    /// The thing exists but its state does not allow this (cancelling a finished run, removing
    /// the built-in data set).
    #[error("{0}")]
    Conflict(String),
    /// One input field is missing or wrong (`field` names it).
    #[error("{message}")]
    Invalid { field: &'static str, message: String },
    /// The request or the image in it is over the size limit.
    #[error("{0}")]
    TooLarge(String),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Data(#[from] data::Error),
    #[error(transparent)]
    Train(#[from] train::Error),
    /// Our fault and nothing else names it (a worker thread that panicked): for the log.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Error {
        Error::Invalid {
            field,
            message: message.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
