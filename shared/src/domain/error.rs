//! Business refusals. No IO error ever appears here.

use crate::domain::run::RunStatus;

/// A request whose content breaks the rules; the message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", problems.join("; "))]
pub struct ValidationError {
    /// Every problem found, each phrased as what to fix.
    pub problems: Vec<String>,
}

impl ValidationError {
    /// One problem.
    pub fn new(problem: impl Into<String>) -> Self {
        Self {
            problems: vec![problem.into()],
        }
    }

    /// `Ok` when there are no problems, otherwise all of them at once.
    pub fn from_problems(problems: Vec<String>) -> Result<(), Self> {
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Self { problems })
        }
    }
}

/// A command the run aggregate refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The command needs a run that was never queued.
    #[error("the run does not exist")]
    RunNotFound,
    /// A run with this id was already queued.
    #[error("run {run_id} already exists")]
    RunAlreadyExists {
        /// The duplicate id.
        run_id: String,
    },
    /// Only a QUEUED run of the current attempt can be handed to an engine.
    #[error("run {run_id} cannot be launched: it is {status} (attempt {attempt})")]
    NotLaunchable {
        /// The run.
        run_id: String,
        /// Its status now.
        status: RunStatus,
        /// Its attempt now.
        attempt: u32,
    },
    /// The command's content is invalid.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}
