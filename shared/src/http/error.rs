//! The one edge where errors become HTTP responses.
//!
//! Every error answers `{"error": "<message>"}`: a 400 for an invalid request, a
//! 403 for a refusal, a 404 for something missing, a 409 for a conflict, a 503
//! for a dependency unavailable for now, and a 500 for our own failures, whose
//! cause is logged here (once) and never sent to the client. The words are
//! chosen here, from the typed [`AppError`]: Flotilla's messages for missing
//! things, and for conflicts the request to make instead.
//! A 400 also lists its problems one by one under `problems`, each starting
//! with the field it is about, so a form can show each beside its field.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::error;

use crate::domain::ValidationError;
use crate::error::{AppError, Conflict, Contended, Dependency, Missing};

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    problems: Vec<String>,
}

impl ApiError {
    /// An answer of `status` saying `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            problems: Vec::new(),
        }
    }

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

    /// The problems listed, one per field.
    pub fn problems(&self) -> &[String] {
        &self.problems
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

/// Flotilla's wording of a missing thing.
fn missing_words(missing: &Missing) -> String {
    match missing {
        Missing::Definition(id) => format!("Definition with ID {id} not found"),
        Missing::DefinitionAlias(alias) => format!("Definition with alias {alias} not found"),
        Missing::Run(id) => format!("Run with id {id} not found"),
        Missing::Cluster(name) => format!("Cluster with ID {name} not found"),
        Missing::Template(id) => format!("Template with ID {id} not found"),
        Missing::Schedule(id) => format!("Schedule with ID {id} not found"),
        Missing::TemplateName(name) => format!("template {name} not found"),
        Missing::TemplateVersion { name, version } => format!(
            "template {name} version {} not found",
            version.map_or_else(|| "latest".to_owned(), |v| v.to_string())
        ),
    }
}

/// A refusal: whose the thing is, and who may act on it.
fn refusal_words(refusal: &crate::error::Refusal) -> String {
    use crate::error::Act;
    let crate::error::Refusal { caller, owner, act } = refusal;
    match act {
        Act::StopRun(run_id) => format!(
            "run {run_id} belongs to {owner}: only {owner} or an admin may stop it (you are {caller})"
        ),
        Act::ChangeDefinition(id) => format!(
            "definition {id} was created by {owner}: only {owner} or an admin may change or delete it (you are {caller})"
        ),
        Act::ChangeSchedule(id) => format!(
            "schedule {id} belongs to {owner}: only {owner} or an admin may change, pause or delete it (you are {caller})"
        ),
        Act::LaunchAs => format!(
            "you are {caller} and may launch runs only as yourself, not as {owner}: set the owner to {caller} or leave it out"
        ),
    }
}

/// A conflict, and what the client can do about it.
fn conflict_words(conflict: &Conflict) -> String {
    let busy = |what: String| format!("{what} is being changed by many writers at once; try again");
    match conflict {
        Conflict::AliasTaken(alias) => format!(
            "definition with alias [{alias}] already exists: choose another alias, or update that definition"
        ),
        Conflict::ClusterExists(name) => {
            format!("cluster {name} already exists: update it with PUT /api/v6/clusters/{name}")
        }
        Conflict::RunExists(run_id) => format!("run {run_id} already exists"),
        Conflict::IdempotenceKeyBusy(key) => {
            format!("another run with idempotence_key \"{key}\" is being created; try again")
        }
        Conflict::Contended(Contended::Run(run_id)) => busy(format!("run {run_id}")),
        Conflict::Contended(Contended::Clusters) => busy("the cluster registry".to_owned()),
        Conflict::Contended(Contended::Template(name)) => busy(format!("template {name}")),
        Conflict::Contended(Contended::Schedule(id)) => busy(format!("schedule {id}")),
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        let (status, message) = match &e {
            AppError::Invalid(v) => return Self::from(v.clone()),
            AppError::NotFound(missing) => (StatusCode::NOT_FOUND, missing_words(missing)),
            AppError::Conflict(c) => (StatusCode::CONFLICT, conflict_words(c)),
            AppError::Forbidden(reason) => (StatusCode::FORBIDDEN, reason.clone()),
            AppError::NotOwner(refusal) => (StatusCode::FORBIDDEN, refusal_words(refusal)),
            AppError::TooLarge(what) => (StatusCode::PAYLOAD_TOO_LARGE, what.clone()),
            AppError::Unavailable { what, .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                match what {
                    Dependency::Engine => "the execution engine failed; try again, and see the server log if it persists".to_owned(),
                    other => format!("{other} is unavailable; try again, and see the server log if it persists"),
                },
            ),
            AppError::Internal { .. } => (
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
