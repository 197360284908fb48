//! Executing a definition: validate the request into a run spec (owner,
//! routing, env, resources), record `RunQueued`, then enqueue a ticket. With
//! an idempotence key that names a run of the last 7 days that did not fail,
//! that run is returned instead of a new one. Keys belong to an owner: the
//! same key sent by two owners names two runs. Requests racing with one key
//! make one run, and every one of them gets it: a request that finds the key
//! claimed a moment ago waits for the claimant's run. A run of a job whose
//! runs ran out of memory or lost their spot capacity lately starts as
//! their lessons say ([`crate::domain::learning`]).

use std::time::Duration;

use tracing::warn;

use crate::app::{App, DefinitionRef};
use crate::domain::definition::Definition;
use crate::domain::event::RunEvent;
use crate::domain::identity::Caller;
use crate::domain::launch::RunTags;
use crate::domain::launch::{LaunchContext, LaunchRequest, OwnerRule, build_spec, run_id_for};
use crate::domain::learning::JobKey;
use crate::domain::run::{Run, RunCommand, RunState, RunStatus, TemplateUse, replay};
use crate::error::{Act, AppError, Conflict, Missing, Refusal};
use crate::ports::RunTicket;

/// How long an idempotence key names its run.
pub const IDEMPOTENCE_WINDOW_DAYS: i64 = 7;

/// How long a key may name a run that is not recorded yet before the request
/// that claimed it counts as dead (it claims the key, then appends the run, a
/// moment later). Until then another request with the key is told to try again.
pub const IDEMPOTENCE_CLAIM_GRACE_SECONDS: i64 = 60;

/// How long a request waits for the run of a key another request claimed a
/// moment ago before it is told to try again.
const KEY_WAIT: Duration = Duration::from_secs(10);

/// The stored form of `owner`'s `key`: unambiguous for every owner and key.
pub(crate) fn scoped_key(owner: &str, key: &str) -> String {
    format!("{}:{owner}/{key}", owner.len())
}

/// What an idempotence key lets a launch do.
enum KeyState {
    /// The key is free.
    Free,
    /// The key names this run: return it.
    Reuse(Box<Run>),
    /// The key names a run that failed, is too old, or was never recorded by
    /// a request long gone: claim the key from it.
    Replace(String),
    /// Another request claimed the key a moment ago and is recording its run.
    Busy,
}

impl App {
    /// Executes a definition: validates, appends `RunQueued`, then enqueues a
    /// ticket. If the enqueue fails the run is still recorded and the retry sweep
    /// enqueues it again, so the run is never lost.
    pub async fn execute(
        &self,
        by: DefinitionRef<'_>,
        rule: OwnerRule,
        request: LaunchRequest,
        caller: &Caller,
    ) -> Result<Run, AppError> {
        let definition = self.definition(by).await?;
        self.launch(&definition, rule, request, None, false, caller)
            .await
    }

    /// What an idempotence key names now.
    async fn key_state(&self, key: &str) -> Result<KeyState, AppError> {
        let now = self.now();
        let Some(claim) = self.idempotence.find(key, now).await? else {
            return Ok(KeyState::Free);
        };
        let window = chrono::Duration::days(IDEMPOTENCE_WINDOW_DAYS);
        Ok(match self.runs.get(&claim.run_id).await?.run {
            Some(run) => {
                let failed = run.status == RunStatus::Stopped && run.exit_code != Some(0);
                if !failed && run.queued_at + window > now {
                    KeyState::Reuse(Box::new(run))
                } else {
                    KeyState::Replace(claim.run_id)
                }
            }
            None => {
                let claimed_at = claim.expires_at - window;
                let grace = chrono::Duration::seconds(IDEMPOTENCE_CLAIM_GRACE_SECONDS);
                if now - claimed_at < grace {
                    KeyState::Busy
                } else {
                    KeyState::Replace(claim.run_id)
                }
            }
        })
    }

    /// What an idempotence key names once no request is between claiming it
    /// and recording its run: a request that lost a race waits (a few
    /// milliseconds, usually) for the winner's run.
    async fn settled_key_state(&self, key: &str) -> Result<KeyState, AppError> {
        let deadline = tokio::time::Instant::now() + KEY_WAIT;
        let mut pause = Duration::from_millis(2);
        loop {
            match self.key_state(key).await? {
                KeyState::Busy if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                other => return Ok(other),
            }
        }
    }

    /// Validates and records a run of `definition` (a stored definition, or
    /// one made from a template), unless `dry_run`.
    pub(crate) async fn launch(
        &self,
        definition: &Definition,
        rule: OwnerRule,
        request: LaunchRequest,
        template: Option<TemplateUse>,
        dry_run: bool,
        caller: &Caller,
    ) -> Result<Run, AppError> {
        let request = caller_owns_by_default(request, rule, caller);
        // Every launch reads the registry (one item): its cluster's engine
        // decides where it runs.
        let clusters = self.known_clusters().await?;
        let ctx = LaunchContext {
            run_id: run_id_for(self.settings.engine, &uuid::Uuid::new_v4().to_string()),
            engine: self.settings.engine,
            server_mode: self.settings.server_mode.clone(),
            owner_var: self.settings.owner_var.clone(),
            default_cluster: self.settings.default_cluster.clone(),
            clusters,
            requires_command: self.settings.requires_command,
            limits: self.settings.launch_limits,
            max_attempts: self.settings.max_attempts,
            max_memory: self.settings.max_memory,
        };
        let memory_asked = request.resources.memory.is_some();
        let mut spec = build_spec(definition, request, rule, &ctx)?;
        spec.template = template;
        if let Some(job) = JobKey::of(&spec) {
            let learned = self.lessons.learned(&job).await?;
            learned.apply(&mut spec, self.now(), ctx.limits, memory_asked);
        }
        if !caller.may_launch_as(&spec.owner) {
            return Err(AppError::NotOwner(Refusal {
                caller: caller.name().unwrap_or_default().to_owned(),
                owner: spec.owner,
                act: Act::LaunchAs,
            }));
        }
        let asked = spec.idempotence_key.clone().unwrap_or_default();
        let key = spec
            .idempotence_key
            .as_deref()
            .map(|k| scoped_key(&spec.owner, k));
        let mut replacing = None;
        if let Some(key) = &key
            && !dry_run
        {
            match self.settled_key_state(key).await? {
                KeyState::Free => {}
                KeyState::Reuse(run) => return Ok(*run),
                KeyState::Replace(run_id) => replacing = Some(run_id),
                KeyState::Busy => return Err(busy(&asked)),
            }
        }
        let run_id = spec.run_id.clone();
        let now = self.now();
        if dry_run {
            let state = replay(&[RunEvent::RunQueued {
                spec: Box::new(spec),
                at: now,
            }]);
            return state
                .run
                .ok_or_else(|| AppError::NotFound(Missing::Run(run_id)));
        }
        if let Some(key) = &key {
            let expires = now + chrono::Duration::days(IDEMPOTENCE_WINDOW_DAYS);
            let claimed = self
                .idempotence
                .claim(key, &run_id, replacing.as_deref(), now, expires)
                .await?;
            if !claimed {
                // Another request with the same key got there first.
                return match self.settled_key_state(key).await? {
                    KeyState::Reuse(run) => Ok(*run),
                    _ => Err(busy(&asked)),
                };
            }
        }
        let command = RunCommand::Queue {
            spec: Box::new(spec),
            now,
        };
        // A fresh id: its stream is empty, so there is nothing to read first.
        let run = self
            .apply_from(&run_id, command, Some(RunState::default()))
            .await?;
        if let Err(error) = self.queue.enqueue(&RunTicket::of(&run)).await {
            warn!(run_id = %run_id, error = %error, "enqueue failed; the retry sweep will enqueue the run again");
        }
        Ok(run)
    }
}

/// `request` with the caller as its owner when it names none (a known
/// caller need not say who they are).
fn caller_owns_by_default(
    mut request: LaunchRequest,
    rule: OwnerRule,
    caller: &Caller,
) -> LaunchRequest {
    let Some(name) = caller.name() else {
        return request;
    };
    let tags = request.run_tags.get_or_insert_with(RunTags::default);
    let field = match rule {
        OwnerRule::Anonymous | OwnerRule::OwnerId | OwnerRule::TemplateOwner => &mut tags.owner_id,
        OwnerRule::EmailAndTeam => &mut tags.owner_email,
    };
    if field.as_deref().is_none_or(|v| v.trim().is_empty()) {
        *field = Some(name.to_owned());
    }
    request
}

fn busy(key: &str) -> AppError {
    AppError::Conflict(Conflict::IdempotenceKeyBusy(key.to_owned()))
}
