//! `AppError`: every way a request can fail, with its HTTP status. Clients get a JSON body
//! `{"error": …, "fields": […]}`; internal failures are logged once and answered with a generic line.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::web::charts;
use crate::{service, store};

/// One invalid field of a submitted form or JSON body: the engine's own type, answered as it is.
pub use crate::train::FieldError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 404: no such run, page or chart.
    #[error("{0}")]
    NotFound(String),
    /// 400: the request itself is malformed (unreadable JSON, a bad query value).
    #[error("{0}")]
    BadRequest(String),
    /// 422: well-formed but invalid input, with a message per field.
    #[error("the submitted values are invalid")]
    Invalid(Vec<FieldError>),
    /// 422: one field is wrong; its message is the answer's headline (the Predict form's uploads).
    #[error("{}", .0.message)]
    InvalidField(FieldError),
    /// 413: the request or the image in it is over the size limit.
    #[error("{0}")]
    TooLarge(String),
    /// 409: the run is in a state that does not allow this (e.g. deleting a running run).
    #[error("{0}")]
    Conflict(String),
    /// 500: the run store failed.
    #[error(transparent)]
    Store(store::Error),
    /// 507: the disk under the run store is full, so nothing was stored; the message says where
    /// and what to do.
    #[error("{0}")]
    DiskFull(String),
    /// 500: a chart could not be drawn.
    #[error(transparent)]
    Chart(#[from] charts::Error),
    /// 500: anything else that is our fault.
    #[error("{0}")]
    Internal(String),
}

impl From<store::Error> for AppError {
    fn from(e: store::Error) -> AppError {
        match e {
            store::Error::UnknownRun(id) => AppError::unknown_run(&id),
            e @ store::Error::DiskFull { .. } => AppError::DiskFull(e.to_string()),
            other => AppError::Store(other),
        }
    }
}

impl From<service::Error> for AppError {
    fn from(e: service::Error) -> AppError {
        match e {
            service::Error::UnknownRun(id) => AppError::unknown_run(&id),
            service::Error::NotFound(message) => AppError::NotFound(message),
            service::Error::Conflict(message) => AppError::Conflict(message),
            service::Error::Invalid { field, message } => AppError::InvalidField(FieldError::new(field, message)),
            service::Error::TooLarge(message) => AppError::TooLarge(message),
            service::Error::Store(e) => e.into(),
            service::Error::Data(e) => AppError::Internal(e.to_string()),
            service::Error::Train(e) => AppError::Internal(e.to_string()),
            service::Error::Internal(message) => AppError::Internal(message),
        }
    }
}

impl AppError {
    pub fn unknown_run(id: &str) -> AppError {
        AppError::NotFound(format!("no run with id '{id}'"))
    }

    /// A refused submission: invalid fields (422), or the store could not take the run, which
    /// reaches us as its one `store` field; a full disk there is a 507 saying so.
    pub fn rejected(fields: Vec<FieldError>) -> AppError {
        match fields.as_slice() {
            [only] if only.field == "store" && only.message.starts_with(store::DISK_FULL) => {
                AppError::DiskFull(only.message.clone())
            }
            _ => AppError::Invalid(fields),
        }
    }

    /// Whether the client gets only a generic line (the details are ours, logged): server
    /// failures, except a full disk, which the user can act on.
    pub fn is_internal(&self) -> bool {
        self.status().is_server_error() && !matches!(self, AppError::DiskFull(_))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Invalid(_) | AppError::InvalidField(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::DiskFull(_) => StatusCode::INSUFFICIENT_STORAGE,
            AppError::Store(_) | AppError::Chart(_) | AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: String,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    fields: &'a [FieldError],
}

impl AppError {
    /// The line shown to the user. Details of internal failures (file paths, SQL errors) go to
    /// the log instead, once, here.
    pub fn user_message(&self) -> String {
        if self.is_internal() {
            tracing::error!(error = %self, "request failed");
            "internal error; see the server log".to_string()
        } else {
            if self.status().is_server_error() {
                tracing::warn!(error = %self, "request refused");
            }
            self.to_string()
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let error = self.user_message();
        let fields = match &self {
            AppError::Invalid(fields) => fields.as_slice(),
            AppError::InvalidField(field) => std::slice::from_ref(field),
            _ => &[],
        };
        (status, Json(ErrorBody { error, fields })).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn disk_full() -> store::Error {
        store::Error::DiskFull {
            dir: PathBuf::from("/srv/cxr8/data"),
            source: None,
        }
    }

    #[test]
    fn a_full_disk_is_507_with_its_message_not_an_internal_error() {
        let error = AppError::from(disk_full());
        assert_eq!(error.status(), StatusCode::INSUFFICIENT_STORAGE);
        assert!(!error.is_internal());
        let message = error.to_string();
        assert!(
            message.starts_with(store::DISK_FULL) && message.contains("/srv/cxr8/data"),
            "{message}"
        );
        let other = AppError::from(store::Error::UnknownDataset("x".into()));
        assert!(other.is_internal(), "other store failures stay generic");
    }

    #[test]
    fn a_submission_the_store_could_not_take_for_lack_of_space_is_507() {
        let refused = AppError::rejected(vec![FieldError::new("store", disk_full().to_string())]);
        assert_eq!(refused.status(), StatusCode::INSUFFICIENT_STORAGE);
        let invalid = AppError::rejected(vec![FieldError::new("epochs", "must be at least 1")]);
        assert_eq!(invalid.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let broken = AppError::rejected(vec![FieldError::new("store", "run store x: disk I/O error")]);
        assert_eq!(broken.status(), StatusCode::UNPROCESSABLE_ENTITY, "as before");
    }
}
