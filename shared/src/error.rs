//! Typed errors of the ports and the use cases.
//!
//! Adapters return [`StoreError`], [`EngineError`] or [`LogError`], each keeping
//! its cause. The use cases return [`AppError`], which says what kind of failure
//! it is (the caller's mistake, a missing thing, a conflict, a refusal, a
//! dependency unavailable for now, or our own failure) and carries the facts
//! (which run, which alias), not sentences. The HTTP edge (`http::error`) is
//! the one place an `AppError` becomes a response and its words.

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
    /// The thing to store is larger than the store can hold.
    #[error("{what} is {bytes} bytes, more than the {limit} bytes the store holds in one item")]
    TooLarge {
        /// What was to be stored, e.g. "run local-1234".
        what: String,
        /// Its size.
        bytes: usize,
        /// The store's limit.
        limit: usize,
    },
    /// A list would read more rows than the store reads for one request.
    #[error("the list would read more than {limit} rows ({why:?})")]
    TooBroad {
        /// What makes it read so much.
        why: Breadth,
        /// The most rows the store reads for it.
        limit: u64,
    },
    /// Every slot of a cluster's cap is held.
    #[error("cluster {cluster} is at its cap: {held} of {cap} running")]
    AtCap {
        /// The cluster.
        cluster: String,
        /// Slots held.
        held: u64,
        /// Its cap.
        cap: u32,
    },
    /// The storage itself failed.
    #[error("storage failure")]
    Backend(#[source] BoxError),
}

/// What makes a list read more than a store reads for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Breadth {
    /// A sort no index serves, over more rows than may be sorted at once.
    Sort {
        /// The sort field.
        field: &'static str,
    },
    /// An offset deeper than cursors are walked for.
    Offset {
        /// The offset asked for.
        offset: u64,
    },
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
    /// The log is larger than one answer may carry; it can be read a page
    /// at a time.
    #[error("the log is larger than the {limit} bytes one answer may carry")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
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

/// What a use case can fail with: the kind of failure, with the facts an
/// edge needs to word it. Wording for a client (Flotilla's messages, routes to
/// call instead, the stack's parameters) belongs to the edges, `http::error`
/// and `lambda`; here are only the kinds.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request is invalid; each problem says what to fix.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(Missing),
    /// The request conflicts with the state it would change.
    #[error("{0}")]
    Conflict(Conflict),
    /// The caller may not do this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The caller may not act on what another user owns.
    #[error("{} may not act for {}", .0.caller, .0.owner)]
    NotOwner(Refusal),
    /// Something the request needs (the engine, say) is unavailable for now;
    /// the same request may succeed later.
    #[error("{what} is unavailable")]
    Unavailable {
        /// What is unavailable.
        what: Dependency,
        /// Cause.
        #[source]
        source: BoxError,
    },
    /// What was asked for is larger than an answer may carry; the message
    /// says how to ask for it instead.
    #[error("{0}")]
    TooLarge(String),
    /// Our own failure (storage, logs, a broken invariant).
    #[error("internal failure in {what}")]
    Internal {
        /// Where.
        what: Dependency,
        /// Cause.
        #[source]
        source: BoxError,
    },
}

/// What a [`AppError::NotFound`] names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Missing {
    /// A definition, by id.
    #[error("definition {0}")]
    Definition(String),
    /// A definition, by alias.
    #[error("definition with alias {0}")]
    DefinitionAlias(String),
    /// A run.
    #[error("run {0}")]
    Run(String),
    /// A cluster.
    #[error("cluster {0}")]
    Cluster(String),
    /// A template version, by id.
    #[error("template {0}")]
    Template(String),
    /// A template name with no version at all.
    #[error("template {0}")]
    TemplateName(String),
    /// A schedule, by id.
    #[error("schedule {0}")]
    Schedule(String),
    /// A template by name, at a version (the latest when `None`).
    #[error("template {name} version {}", version.map_or_else(|| "latest".to_owned(), |v| v.to_string()))]
    TemplateVersion {
        /// Name.
        name: String,
        /// Version asked for.
        version: Option<u32>,
    },
}

/// Who was refused what, and whose it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The caller's name.
    pub caller: String,
    /// The owner of what they asked to act on.
    pub owner: String,
    /// What they asked.
    pub act: Act,
}

/// An act only an owner or an admin may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Act {
    /// Stop this run.
    StopRun(String),
    /// Update or delete this definition.
    ChangeDefinition(String),
    /// Launch a run owned by someone else.
    LaunchAs,
    /// Change, pause or delete this schedule.
    ChangeSchedule(String),
}

/// What a [`AppError::Conflict`] is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    /// Another definition has this alias.
    #[error("alias {0} is taken")]
    AliasTaken(String),
    /// The cluster is registered already.
    #[error("cluster {0} exists")]
    ClusterExists(String),
    /// A run with this id exists.
    #[error("run {0} exists")]
    RunExists(String),
    /// Another request with this idempotence key is creating its run now.
    #[error("idempotence key {0} is being claimed")]
    IdempotenceKeyBusy(String),
    /// Too many writers changed the same thing at once; try again.
    #[error("{0} is contended")]
    Contended(Contended),
}

/// What many writers were changing at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Contended {
    /// A run's stream.
    #[error("run {0}")]
    Run(String),
    /// The cluster registry.
    #[error("the cluster registry")]
    Clusters,
    /// A template's versions.
    #[error("template {0}")]
    Template(String),
    /// A schedule.
    #[error("schedule {0}")]
    Schedule(String),
}

/// The parts of the service an [`AppError`] can come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Dependency {
    /// The run, definition and template stores.
    #[error("storage")]
    Storage,
    /// The run queue.
    #[error("the run queue")]
    Queue,
    /// The execution engine.
    #[error("the execution engine")]
    Engine,
    /// The log store.
    #[error("the log store")]
    Logs,
    /// The domain's own rules (a refusal the use case did not expect).
    #[error("the run rules")]
    Rules,
}

impl AppError {
    /// An internal failure of `what`.
    pub fn internal(what: Dependency, e: impl Into<BoxError>) -> Self {
        Self::Internal {
            what,
            source: e.into(),
        }
    }
}

impl From<StoreError> for AppError {
    /// Store failures a use case did not handle itself: a conflict left after
    /// its own retries, or a backend failure.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::TooLarge { what, bytes, limit } => {
                Self::Invalid(ValidationError::new(format!(
                    "{what} would be {} KB, more than the {} KB one record may hold: shorten its command, env or payload",
                    bytes.div_ceil(1024),
                    limit / 1024
                )))
            }
            StoreError::TooBroad { why, limit } => Self::Invalid(ValidationError::new(match why {
                Breadth::Sort { field } => format!(
                    "sorting by {field} reads every matching run, and more than {limit} match: narrow the list with definition_id, status or cluster_name, or sort by queued_at, started_at or finished_at"
                ),
                Breadth::Offset { offset } => format!(
                    "offset {offset} needs more than {limit} runs read: page with next_token instead, which costs the same at any depth"
                ),
            })),
            other => Self::internal(Dependency::Storage, other),
        }
    }
}

impl From<EngineError> for AppError {
    fn from(e: EngineError) -> Self {
        Self::Unavailable {
            what: Dependency::Engine,
            source: Box::new(e),
        }
    }
}

impl From<DomainError> for AppError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Invalid(v) => Self::Invalid(v),
            DomainError::RunAlreadyExists { run_id } => Self::Conflict(Conflict::RunExists(run_id)),
            other => Self::internal(Dependency::Rules, other),
        }
    }
}

impl From<LogError> for AppError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::BadCursor(msg) => Self::Invalid(ValidationError::new(msg)),
            LogError::TooLarge { limit } => Self::TooLarge(format!(
                "the log is larger than the {} MB one answer may carry: page through it with last_seen (leave out raw_text)",
                limit / (1024 * 1024)
            )),
            other => Self::internal(Dependency::Logs, other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_too_broad_for_one_request_is_the_callers_to_narrow_and_says_how() {
        for (why, hint) in [
            (Breadth::Sort { field: "alias" }, "sort by queued_at"),
            (Breadth::Offset { offset: 90_000 }, "next_token"),
        ] {
            match AppError::from(StoreError::TooBroad { why, limit: 10 }) {
                AppError::Invalid(e) => {
                    assert!(e.problems.iter().any(|p| p.contains(hint)), "{e:?}")
                }
                other => panic!("expected Invalid, got {other:?}"),
            }
        }
    }
}
