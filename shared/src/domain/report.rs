//! Runs that report their own status (`PUT /{run_id}/status`): what a report
//! may say, the exit reason derived from its exceptions, and the run command it
//! becomes.
//!
//! A report goes through the same rules as an engine's: a status only moves
//! forward (QUEUED → PENDING → RUNNING → STOPPED), NEEDS_RETRY may follow
//! anything but a run whose code exited, and a report that changes nothing is
//! accepted and ignored. Unlike Flotilla, `finished_at` is set only when the
//! run stops, and the exception categories are checked as words, so "15000"
//! is not an HTTP 500 and "Code or syntax error" is not the catch-all.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::domain::error::ValidationError;
use crate::domain::run::{Run, RunCommand, RunStatus};

/// The body of a status report (a run JSON; only these fields are read).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, schemars::JsonSchema)]
pub struct StatusReport {
    /// The new status.
    pub status: Option<String>,
    /// The command's exit code, with STOPPED.
    pub exit_code: Option<i64>,
    /// Why it ended; derived from `run_exceptions` when absent.
    pub exit_reason: Option<String>,
    /// Exceptions the run saw, newest last.
    pub run_exceptions: Option<Vec<String>>,
}

/// Most bytes of text (exit reason and exceptions) a report may carry.
pub const MAX_REPORT_BYTES: usize = 64 * 1024;

/// Exit reason categories, checked in order; the first that matches wins.
const CATEGORIES: &[(&str, &[&str])] = &[
    (
        "Connection error to downstream uri",
        &[
            "timeout",
            "timed out",
            "gateway",
            "socket",
            "500",
            "502",
            "503",
            "504",
            "connection",
        ],
    ),
    (
        "Python pip package installation error",
        &["pip", "modulenotfounderror", "could not find a version"],
    ),
    ("Yum installation error", &["nothing to do"]),
    (
        "Git clone error",
        &[
            "repository not found",
            "could not read from remote repository",
            "authentication failed for",
        ],
    ),
    (
        "Data or argument error",
        &["404", "400", "keyerror", "column missing", "runtimeerror"],
    ),
    (
        "Code or syntax error",
        &[
            "syntaxerror",
            "nameerror",
            "typeerror",
            "attributeerror",
            "indentationerror",
            "valueerror",
            "importerror",
        ],
    ),
];

/// Whether `needle` occurs in `haystack` (both lower case). A number must
/// stand alone: "15000" holds no "500".
fn mentions(haystack: &str, needle: &str) -> bool {
    if !needle.bytes().all(|b| b.is_ascii_digit()) {
        return haystack.contains(needle);
    }
    let is_word = |c: char| c.is_ascii_alphanumeric();
    haystack.match_indices(needle).any(|(i, _)| {
        let before = haystack[..i].chars().next_back();
        let after = haystack[i + needle.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

/// The exit reason category of a run's exceptions, or `None` without any.
pub fn exit_reason_from_exceptions(exceptions: &[String]) -> Option<String> {
    let text: Vec<String> = exceptions
        .iter()
        .map(|e| e.to_lowercase())
        .filter(|e| !e.trim().is_empty())
        .collect();
    if text.is_empty() {
        return None;
    }
    let found = CATEGORIES.iter().find(|(_, words)| {
        words
            .iter()
            .any(|w| text.iter().any(|exception| mentions(exception, w)))
    });
    Some(
        found
            .map(|(reason, _)| *reason)
            .unwrap_or("Runtime exception encountered")
            .to_owned(),
    )
}

/// A status report, parsed: what the run says happened to its current attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedStatus {
    /// The status reported.
    pub status: RunStatus,
    /// The exit code, only with STOPPED.
    pub exit_code: Option<i64>,
    /// The reason given, or derived from the exceptions.
    pub reason: Option<String>,
}

impl StatusReport {
    /// Parses the body once: a known status, an exit code only with STOPPED,
    /// the reason given or else derived from `run_exceptions`.
    pub fn parse(&self) -> Result<ReportedStatus, ValidationError> {
        let raw = self.status.as_deref().unwrap_or("");
        let status = RunStatus::parse(raw).ok_or_else(|| {
            let names: Vec<_> = RunStatus::ALL.iter().map(|s| s.as_str()).collect();
            ValidationError::new(format!(
                "status \"{raw}\" is invalid: send one of {}",
                names.join(", ")
            ))
        })?;
        if self.exit_code.is_some() && status != RunStatus::Stopped {
            return Err(ValidationError::new(format!(
                "exit_code goes with status STOPPED, not {status}: leave it out or report STOPPED"
            )));
        }
        let mut problems = Vec::new();
        let texts = self
            .exit_reason
            .iter()
            .chain(self.run_exceptions.iter().flatten());
        for text in texts {
            problems.extend(crate::domain::limits::nul_problem(
                "exit_reason and run_exceptions",
                text,
            ));
        }
        let bytes: usize = self
            .exit_reason
            .iter()
            .chain(self.run_exceptions.iter().flatten())
            .map(String::len)
            .sum();
        if bytes > MAX_REPORT_BYTES {
            problems.push(format!(
                "exit_reason and run_exceptions are {bytes} bytes, more than the {MAX_REPORT_BYTES} a report may carry: send the last exceptions only"
            ));
        }
        ValidationError::from_problems(problems)?;
        let reason = self
            .exit_reason
            .clone()
            .filter(|r| !r.trim().is_empty())
            .or_else(|| exit_reason_from_exceptions(self.run_exceptions.as_deref().unwrap_or(&[])));
        Ok(ReportedStatus {
            status,
            exit_code: self.exit_code,
            reason,
        })
    }
}

impl ReportedStatus {
    /// The command this report asks of `run`, or `None` when it would change
    /// nothing a report may change (QUEUED, or PENDING: only an engine hands a
    /// run over).
    pub fn command(&self, run: &Run, now: DateTime<Utc>) -> Option<RunCommand> {
        let attempt = run.attempt;
        let reason = self.reason.clone();
        match self.status {
            RunStatus::Queued | RunStatus::Pending => None,
            RunStatus::Running => Some(RunCommand::RecordStarted {
                attempt,
                engine_version: None,
                task_id: None,
                host: None,
                now,
            }),
            RunStatus::Stopped => Some(RunCommand::RecordExited {
                usage: None,
                attempt,
                engine_version: None,
                exit_code: self.exit_code,
                reason,
                now,
            }),
            RunStatus::NeedsRetry => Some(RunCommand::RecordInfrastructureFailure {
                attempt,
                engine_version: None,
                reason: reason.unwrap_or_else(|| "the run reported NEEDS_RETRY".to_owned()),
                now,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(exceptions: &[&str]) -> Option<String> {
        exit_reason_from_exceptions(&exceptions.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn a_report_too_large_or_holding_a_nul_is_refused_with_the_limit() {
        let big = StatusReport {
            status: Some("STOPPED".into()),
            exit_code: Some(1),
            run_exceptions: Some(vec!["x".repeat(MAX_REPORT_BYTES / 2); 3]),
            ..StatusReport::default()
        };
        let refused = big.parse().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            refused.contains("more than the 65536 a report may carry"),
            "{refused}"
        );
        let nul = StatusReport {
            status: Some("STOPPED".into()),
            exit_reason: Some("bad\0".into()),
            ..StatusReport::default()
        };
        let refused = nul.parse().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(refused.contains("NUL"), "{refused}");
        let fits = StatusReport {
            status: Some("STOPPED".into()),
            exit_code: Some(1),
            run_exceptions: Some(vec!["x".repeat(MAX_REPORT_BYTES)]),
            ..StatusReport::default()
        };
        assert!(fits.parse().is_ok(), "exactly the limit is taken");
    }

    #[test]
    fn exceptions_fall_into_the_first_matching_category() {
        assert_eq!(
            reason(&["requests.exceptions.ConnectionError: HTTPSConnectionPool"]).as_deref(),
            Some("Connection error to downstream uri")
        );
        assert_eq!(
            reason(&["upstream answered 503 Service Unavailable"]).as_deref(),
            Some("Connection error to downstream uri")
        );
        assert_eq!(
            reason(&["ModuleNotFoundError: No module named 'pandas'"]).as_deref(),
            Some("Python pip package installation error")
        );
        assert_eq!(
            reason(&["KeyError: 'user_id'"]).as_deref(),
            Some("Data or argument error")
        );
        assert_eq!(
            reason(&["NameError: name 'x' is not defined"]).as_deref(),
            Some("Code or syntax error")
        );
        assert_eq!(
            reason(&["processed 15000 rows then failed"]).as_deref(),
            Some("Runtime exception encountered"),
            "15000 is not an HTTP 500"
        );
        assert_eq!(reason(&[]), None);
    }

    #[test]
    fn a_report_needs_a_known_status_and_an_exit_code_only_with_stopped() {
        let report = StatusReport {
            status: Some("DONE".into()),
            ..Default::default()
        };
        assert!(report.parse().unwrap_err().to_string().contains("DONE"));
        let report = StatusReport {
            status: Some("RUNNING".into()),
            exit_code: Some(1),
            ..Default::default()
        };
        assert!(report.parse().is_err());
        let report = StatusReport {
            status: Some("STOPPED".into()),
            exit_code: Some(1),
            run_exceptions: Some(vec!["KeyError: user_id".into()]),
            ..Default::default()
        };
        let parsed = report.parse().unwrap();
        assert_eq!(parsed.reason.as_deref(), Some("Data or argument error"));
        let run = crate::domain::run::replay([&crate::testing::scenario::queued()])
            .run
            .unwrap();
        assert!(matches!(
            parsed.command(&run, run.queued_at),
            Some(RunCommand::RecordExited {
                exit_code: Some(1),
                ..
            })
        ));
    }
}
