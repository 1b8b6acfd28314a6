//! `AppError`: every way a request can fail, with its HTTP status. Clients get a JSON body
//! `{"error": …, "fields": […]}`; internal failures are logged once and answered with a generic line.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::store;
use crate::web::charts;

/// One invalid field of a submitted form or JSON body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// The field's name as submitted (dotted for nested values); empty for the body as a whole.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

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
    /// 409: the run is in a state that does not allow this (e.g. deleting a running run).
    #[error("{0}")]
    Conflict(String),
    /// 500: the run store failed.
    #[error(transparent)]
    Store(store::Error),
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
            other => AppError::Store(other),
        }
    }
}

impl AppError {
    pub fn unknown_run(id: &str) -> AppError {
        AppError::NotFound(format!("no run with id '{id}'"))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::Conflict(_) => StatusCode::CONFLICT,
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

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let error = if status.is_server_error() {
            // Details (file paths, SQL errors) go to the log, not to the browser.
            tracing::error!(error = %self, "request failed");
            "internal error; see the server log".to_string()
        } else {
            self.to_string()
        };
        let fields = match &self {
            AppError::Invalid(fields) => fields.as_slice(),
            _ => &[],
        };
        (status, Json(ErrorBody { error, fields })).into_response()
    }
}
