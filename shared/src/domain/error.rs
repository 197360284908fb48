//! Business refusals. No IO error ever appears here.

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
    /// The command's content is invalid.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}
