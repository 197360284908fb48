//! Typed errors of the ports and the use cases.
//!
//! Adapters return [`StoreError`], [`EngineError`] or [`LogError`], each keeping
//! its cause. The use cases return [`AppError`], which says what kind of failure
//! it is (the caller's mistake, a missing thing, a conflict, or our
//! infrastructure). The HTTP edge (`http::error`) is the one place an `AppError`
//! becomes a response.

use crate::domain::{DomainError, ValidationError};

/// Boxed cause of an infrastructure failure.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Failures of a storage port.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Optimistic concurrency: the stream moved on since it was read.
    #[error("version conflict: expected {expected} events, found {actual}")]
    Conflict {
        /// Version the writer expected.
        expected: u64,
        /// Version found.
        actual: u64,
    },
    /// A unique value (an alias) is taken.
    #[error("{0} already exists")]
    Duplicate(String),
    /// The thing to change does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The storage itself failed.
    #[error("storage failure")]
    Backend(#[source] BoxError),
}

impl StoreError {
    /// Wraps a backend error.
    pub fn backend(e: impl Into<BoxError>) -> Self {
        Self::Backend(e.into())
    }
}

/// Failures of an execution engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Worth trying again later (capacity, throttling, a transient OS error).
    #[error("engine temporarily unable: {message}")]
    Retryable {
        /// What happened.
        message: String,
        /// Cause.
        #[source]
        source: Option<BoxError>,
    },
    /// Will fail the same way again; the message says what to fix.
    #[error("{message}")]
    Permanent {
        /// What to fix.
        message: String,
        /// Cause.
        #[source]
        source: Option<BoxError>,
    },
}

/// Failures reading logs.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The `last_seen` cursor is not one this source issued.
    #[error("{0}")]
    BadCursor(String),
    /// The log store failed.
    #[error("log storage failure")]
    Backend(#[source] BoxError),
}

/// Failures publishing run state changes.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The bus refused some entries.
    #[error("{failed} of {total} run state changes were not accepted: {reasons}")]
    Rejected {
        /// Entries refused.
        failed: usize,
        /// Entries sent.
        total: usize,
        /// The bus's reasons.
        reasons: String,
    },
    /// The call failed.
    #[error("publishing run state changes failed")]
    Backend(#[source] BoxError),
}

/// What a use case can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request is invalid; the message says what to fix.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with existing state.
    #[error("{0}")]
    Conflict(String),
    /// Storage failed.
    #[error("storage failure")]
    Store(#[source] StoreError),
    /// The engine failed.
    #[error("engine failure")]
    Engine(#[source] EngineError),
    /// The log store failed.
    #[error("log failure")]
    Logs(#[source] LogError),
    /// A domain refusal that the use case did not expect.
    #[error(transparent)]
    Domain(DomainError),
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Duplicate(what) => Self::Conflict(format!("{what} already exists")),
            StoreError::NotFound(what) => Self::NotFound(format!("{what} not found")),
            other => Self::Store(other),
        }
    }
}

impl From<DomainError> for AppError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Invalid(v) => Self::Invalid(v),
            DomainError::RunAlreadyExists { run_id } => {
                Self::Conflict(format!("run {run_id} already exists"))
            }
            other => Self::Domain(other),
        }
    }
}

impl From<LogError> for AppError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::BadCursor(msg) => Self::Invalid(ValidationError::new(msg)),
            other => Self::Logs(other),
        }
    }
}
