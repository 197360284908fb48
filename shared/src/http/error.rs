//! The one edge where errors become HTTP responses.
//!
//! Every error answers `{"error": "<message>"}`: a 400 for an invalid request, a
//! 404 for something missing, a 409 for a conflict, and a 5xx for our own
//! failures, whose cause is logged here (once) and never sent to the client.
//! A 400 also lists its problems one by one under `problems`, each starting
//! with the field it is about, so a form can show each beside its field.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::error;

use crate::domain::ValidationError;
use crate::error::AppError;

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    problems: Vec<String>,
}

impl ApiError {
    /// A 400 with a message that says what to fix.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            problems: Vec::new(),
        }
    }

    /// A 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
            problems: Vec::new(),
        }
    }

    /// A 405.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::METHOD_NOT_ALLOWED,
            message: message.into(),
            problems: Vec::new(),
        }
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message sent.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: e.to_string(),
            problems: e.problems,
        }
    }
}

fn cause_chain(e: &dyn std::error::Error) -> String {
    let mut chain = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    chain
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        let (status, message) = match &e {
            AppError::Invalid(v) => return Self::from(v.clone()),
            AppError::NotFound(m) => (StatusCode::NOT_FOUND, m.clone()),
            AppError::Conflict(m) => (StatusCode::CONFLICT, m.clone()),
            AppError::Engine(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the execution engine failed; try again, and see the server log if it persists"
                    .to_owned(),
            ),
            AppError::Store(_) | AppError::Logs(_) | AppError::Domain(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; see the server log".to_owned(),
            ),
        };
        if status.is_server_error() {
            error!(error.message = %e, error.cause_chain = %cause_chain(&e), "request failed");
        }
        Self {
            status,
            message,
            problems: Vec::new(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = if self.status == StatusCode::BAD_REQUEST {
            let problems = if self.problems.is_empty() {
                vec![self.message.clone()]
            } else {
                self.problems
            };
            json!({ "error": self.message, "problems": problems })
        } else {
            json!({ "error": self.message })
        };
        (self.status, Json(body)).into_response()
    }
}
