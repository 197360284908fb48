//! Between a run and its engine: handing a queued attempt to the engine
//! ([`App::submit`]), and recording what the engine reports
//! ([`App::record_engine_update`]), what a run reports about itself
//! ([`App::report_status`]), or that the engine lost it ([`App::abandon`]).
//! Duplicate, stale and out-of-order reports change nothing.

use tracing::{info, warn};

use crate::app::{App, Step, retry_on_conflict};
use crate::domain::EnvVar;
use crate::domain::cluster::{ClusterStatus, not_active_reason};
use crate::domain::launch::{ATTEMPT_VAR, RUN_TOKEN_VAR};
use crate::domain::report::ReportedStatus;
use crate::domain::run::{Run, RunCommand, RunState, RunStatus, decide, evolve};
use crate::error::{AppError, Contended, EngineError, Missing, StoreError};
use crate::ports::{EngineUpdate, LaunchSpec, RunTicket, SlotChange};

/// What [`App::submit`] did with a ticket.
#[derive(Debug, Clone, PartialEq)]
pub enum SubmitOutcome {
    /// The attempt was handed to the engine.
    Launched {
        /// Engine task id.
        task_id: String,
    },
    /// Nothing to do: the run is gone, not QUEUED, or at another attempt (a
    /// duplicate or stale ticket). Acknowledge it.
    Skipped,
    /// The run's cluster launches nothing now (every slot of its cap is
    /// held, or it is in maintenance or offline): the ticket waits (put back
    /// on the queue with a delay, so waiting never counts as a failed
    /// delivery).
    Held {
        /// Why.
        reason: String,
    },
    /// The engine refused for now; try the ticket again later.
    Deferred {
        /// Why.
        reason: String,
    },
    /// The engine refused for good; the run is STOPPED with the reason.
    Failed {
        /// Why.
        reason: String,
    },
}

impl App {
    /// What the engine would be given to launch `run` (a dry run's), when
    /// it has something to show: the Job manifest of a Kubernetes
    /// cluster's run. No run token is in it: the run is not recorded.
    pub async fn engine_manifest(&self, run: &Run) -> Result<Option<serde_json::Value>, AppError> {
        let mut spec = self.launch_spec(run);
        spec.env.retain(|v| v.name != RUN_TOKEN_VAR);
        Ok(self.engine.manifest(&spec).await?)
    }

    /// What the engine is given to launch `run`'s current attempt: the run's
    /// spec, and the attempt's own variables (its number, and its token when
    /// runs need one to report their status).
    pub fn launch_spec(&self, run: &Run) -> LaunchSpec {
        let mut spec = LaunchSpec::for_run(run);
        spec.env
            .push(EnvVar::new(ATTEMPT_VAR, run.attempt.to_string()));
        if let Some(tokens) = &self.tokens {
            spec.env.push(EnvVar::new(
                RUN_TOKEN_VAR,
                tokens.issue(&run.spec.run_id, run.attempt),
            ));
        }
        spec
    }

    /// Handles one queue ticket: launches the run's attempt if, and only if, the
    /// run is QUEUED at that attempt. A redelivered ticket finds the run past
    /// QUEUED and is skipped, so no attempt is launched twice.
    pub async fn submit(&self, ticket: &RunTicket) -> Result<SubmitOutcome, AppError> {
        let state = self.runs.get(&ticket.run_id).await?;
        let Some(run) = state
            .run
            .as_ref()
            .filter(|r| r.is_launchable(ticket.attempt))
        else {
            return Ok(SubmitOutcome::Skipped);
        };
        let gate = self.cluster_gate(&run.spec.cluster).await?;
        if gate.status != ClusterStatus::Active {
            return Ok(SubmitOutcome::Held {
                reason: not_active_reason(&run.spec.cluster, gate.status),
            });
        }
        let state = match gate.cap {
            Some(cap) if run.slot.is_none() => match self.admit(ticket, cap, state).await? {
                Admission::Admitted(state) => *state,
                Admission::Full(reason) => return Ok(SubmitOutcome::Held { reason }),
            },
            _ => state,
        };
        let Some(run) = state
            .run
            .as_ref()
            .filter(|r| r.is_launchable(ticket.attempt))
        else {
            return Ok(SubmitOutcome::Skipped);
        };
        let spec = self.launch_spec(run);
        match self.engine.launch(&spec).await {
            Ok(launched) => {
                // One launch, one append: the submission, and the start when the
                // engine knows the attempt already runs.
                let recorded = RunCommand::RecordLaunched {
                    attempt: ticket.attempt,
                    task_id: launched.task_id.clone(),
                    running_on: launched.running_on,
                    limits: launched.limits,
                    now: self.now(),
                };
                let run = self
                    .apply_from(&ticket.run_id, recorded, Some(state))
                    .await?;
                if run.task_id.as_deref() != Some(launched.task_id.as_str()) {
                    // The run moved on while it was being launched (stopped by a
                    // user in between): the task must not outlive that decision.
                    if let Err(error) = self
                        .engine
                        .stop(&ticket.cluster, &ticket.run_id, &launched.task_id)
                        .await
                    {
                        warn!(run_id = %ticket.run_id, error = %error, "could not stop a task launched for a run that had moved on");
                    }
                    return Ok(SubmitOutcome::Skipped);
                }
                info!(run_id = %ticket.run_id, attempt = ticket.attempt, task_id = %launched.task_id, "launched");
                Ok(SubmitOutcome::Launched {
                    task_id: launched.task_id,
                })
            }
            Err(EngineError::Retryable { message, .. }) => {
                // Record why the run waits (once per reason), for its timeline.
                let deferred = RunCommand::RecordLaunchDeferred {
                    attempt: ticket.attempt,
                    reason: message.clone(),
                    now: self.now(),
                };
                if let Err(error) = self.apply_from(&ticket.run_id, deferred, Some(state)).await {
                    warn!(run_id = %ticket.run_id, error = %error, "could not record a launch deferral");
                }
                Ok(SubmitOutcome::Deferred { reason: message })
            }
            Err(EngineError::Permanent { message, .. }) => {
                let failed = RunCommand::RecordExited {
                    usage: None,
                    attempt: ticket.attempt,
                    engine_version: None,
                    exit_code: None,
                    reason: Some(format!("could not launch: {message}")),
                    now: self.now(),
                };
                self.apply_from(&ticket.run_id, failed, Some(state)).await?;
                Ok(SubmitOutcome::Failed { reason: message })
            }
        }
    }

    /// Takes a slot of the ticket's cluster for its attempt, in the same
    /// write as the admission, unless all `cap` are held.
    async fn admit(
        &self,
        ticket: &RunTicket,
        cap: u32,
        known: RunState,
    ) -> Result<Admission, AppError> {
        let mut known = Some(known);
        let run_id = ticket.run_id.as_str();
        retry_on_conflict(Contended::Run(run_id.to_owned()), || {
            let known = known.take();
            async move {
                let state = match known {
                    Some(state) => state,
                    None => self.runs.get(run_id).await?,
                };
                let admit = RunCommand::Admit {
                    attempt: ticket.attempt,
                    cap,
                    now: self.now(),
                };
                let events = decide(&state, admit)?;
                if events.is_empty() {
                    return Ok(Step::Done(Admission::Admitted(Box::new(state))));
                }
                let before = state.run.clone();
                let version = state.version;
                let next = events.iter().fold(state, evolve);
                let Some(run) = next.run.as_ref() else {
                    return Err(AppError::NotFound(Missing::Run(run_id.to_owned())));
                };
                let slot = SlotChange::between(before.as_ref(), run);
                match self
                    .runs
                    .append_with_slot(run_id, version, &events, run, &slot)
                    .await
                {
                    Ok(version) => Ok(Step::Done(Admission::Admitted(Box::new(RunState {
                        version,
                        run: next.run,
                    })))),
                    Err(full @ StoreError::AtCap { .. }) => {
                        Ok(Step::Done(Admission::Full(full.to_string())))
                    }
                    Err(StoreError::Conflict { .. }) => Ok(Step::Again),
                    Err(other) => Err(other.into()),
                }
            }
        })
        .await
    }

    /// Records a state change reported by an engine. Duplicates, stale attempts
    /// and out-of-order reports change nothing.
    pub async fn record_engine_update(&self, update: EngineUpdate) -> Result<Run, AppError> {
        let run_id = update.run_id.clone();
        self.apply(&run_id, update.into_command()).await
    }

    /// Ends a run its engine lost track of (see `RunCommand::Abandon`).
    pub async fn abandon(&self, run_id: &str, reason: &str) -> Result<Run, AppError> {
        let command = RunCommand::Abandon {
            reason: reason.to_owned(),
            now: self.now(),
        };
        self.apply(run_id, command).await
    }

    /// Records the status a run reports about itself, sent with `token`,
    /// the attempt's own (required when the app has [`RunTokens`]). Returns
    /// the run and whether the report changed it (a report that would move
    /// the status backwards, or repeats it, changes nothing).
    ///
    /// A report never ends a run whose attempt was launched: STOPPED asks
    /// the engine to stop the attempt (with the report's reason), and the
    /// run ends when the engine reports the attempt gone, with the exit code
    /// it really had. NEEDS_RETRY is recorded and the attempt is stopped, so
    /// the next attempt never runs beside it.
    pub async fn report_status(
        &self,
        run_id: &str,
        report: &ReportedStatus,
        token: Option<&str>,
    ) -> Result<(Run, bool), AppError> {
        let state = self.runs.get(run_id).await?;
        let Some(before) = state.run.clone() else {
            return Err(AppError::NotFound(Missing::Run(run_id.to_owned())));
        };
        if let Some(tokens) = &self.tokens
            && !token.is_some_and(|t| tokens.verify(&before, t))
        {
            return Err(AppError::Forbidden(format!(
                "only run {run_id} itself may report its status: send the {RUN_TOKEN_VAR} its current attempt was given as the X-Flotilla-Run-Token header"
            )));
        }
        let launched = before
            .task_id
            .clone()
            .filter(|_| matches!(before.status, RunStatus::Pending | RunStatus::Running));
        let command = match (report.status, &launched) {
            (RunStatus::Stopped, Some(_)) => Some(RunCommand::RequestStop {
                by: "the run itself".to_owned(),
                reason: Some(
                    report
                        .reason
                        .clone()
                        .unwrap_or_else(|| match report.exit_code {
                            Some(code) => format!("the run reported STOPPED with exit code {code}"),
                            None => "the run reported STOPPED".to_owned(),
                        }),
                ),
                now: self.now(),
            }),
            _ => report.command(&before, self.now()),
        };
        let Some(command) = command else {
            return Ok((before, false));
        };
        let after = self.apply_from(run_id, command, Some(state)).await?;
        // The attempt must not outlive what the run said: a stop, or a retry.
        if let Some(task_id) = &launched
            && (after.stop_requested_by.is_some() || after.status == RunStatus::NeedsRetry)
            && let Err(error) = self.engine.stop(&after.spec.cluster, run_id, task_id).await
        {
            warn!(run_id = %run_id, error = %error, "could not stop the attempt a run reported on");
        }
        let changed = after != before;
        Ok((after, changed))
    }
}

/// Whether an attempt got a slot of its cluster.
enum Admission {
    /// It holds one: the run as it is now.
    Admitted(Box<RunState>),
    /// Every slot is held; why it waits.
    Full(String),
}
