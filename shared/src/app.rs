//! The use cases every entry point calls: define jobs, execute, stop, submit to
//! an engine, record what the engine reports, retry, and read logs.
//!
//! [`App`] holds the ports and nothing else; it is the same for `flotilla serve`
//! and for the Lambda functions. Each run command goes through [`App::apply`]:
//! read the projection, `decide`, append with the version as condition, and on a
//! conflict read again and decide again. That loop, with `decide` returning no
//! events for duplicates, is what makes every handler idempotent.

use std::sync::Arc;

use tracing::{info, warn};

use crate::domain::cluster::{Cluster, ClusterInput};
use crate::domain::definition::{Definition, DefinitionInput};
use crate::domain::event::RunEvent;
use crate::domain::launch::{LaunchContext, LaunchRequest, OwnerRule, build_spec, run_id_for};
use crate::domain::query::{DefinitionQuery, Page, RunQuery};
use crate::domain::report::StatusReport;
use crate::domain::run::{Run, RunCommand, RunState, RunStatus, decide, evolve};
use crate::domain::template::{Template, TemplateInput};
use crate::error::{AppError, EngineError, StoreError};
use crate::ports::{
    Clock, ClusterStore, DefinitionStore, EngineUpdate, EventPublisher, EventStore,
    ExecutionEngine, IdempotenceKeys, LaunchSpec, LogPage, LogSource, RecordedEvent, RunQueue,
    RunReadModel, RunStateChange, RunTicket, TemplateStore,
};

/// How long an idempotence key names its run.
pub const IDEMPOTENCE_WINDOW_DAYS: i64 = 7;

/// How often a command is retried after losing an optimistic-concurrency race.
const MAX_CONFLICT_RETRIES: usize = 8;

/// Settings of the use cases that do not depend on the backend.
#[derive(Debug, Clone, PartialEq)]
pub struct AppSettings {
    /// Engine name recorded on runs and used as run id prefix.
    pub engine: String,
    /// Value of `FLOTILLA_SERVER_MODE` in every run.
    pub server_mode: String,
    /// Name of the owner variable.
    pub owner_var: String,
    /// Cluster used when none is named.
    pub default_cluster: String,
    /// Whether runs need a command (the local engine runs `bash -c`).
    pub requires_command: bool,
    /// Attempts allowed per run, the first included.
    pub max_attempts: u32,
    /// The clusters this deployment has queues for (on AWS, the stack's
    /// `Clusters`); empty when any name will do (local queues).
    pub clusters: Vec<String>,
}

/// The ports, built once per process.
#[derive(Clone)]
pub struct App {
    /// Run event streams.
    pub events: Arc<dyn EventStore>,
    /// Run projection.
    pub runs: Arc<dyn RunReadModel>,
    /// Definitions.
    pub definitions: Arc<dyn DefinitionStore>,
    /// Registered clusters.
    pub clusters: Arc<dyn ClusterStore>,
    /// Idempotence keys.
    pub idempotence: Arc<dyn IdempotenceKeys>,
    /// Job templates.
    pub templates: Arc<dyn TemplateStore>,
    /// Per-cluster queues.
    pub queue: Arc<dyn RunQueue>,
    /// Engine.
    pub engine: Arc<dyn ExecutionEngine>,
    /// Logs.
    pub logs: Arc<dyn LogSource>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Where run state changes are published for automation, if anywhere.
    pub publisher: Option<Arc<dyn EventPublisher>>,
    /// Settings.
    pub settings: AppSettings,
}

/// How a definition is named in a request.
#[derive(Debug, Clone, Copy)]
pub enum DefinitionRef<'a> {
    /// By `definition_id`.
    Id(&'a str),
    /// By alias.
    Alias(&'a str),
}

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

/// What one retry sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickOutcome {
    /// Runs queued again as a new attempt.
    pub requeued: Vec<String>,
    /// Runs that used up their attempts and were stopped.
    pub gave_up: Vec<String>,
    /// QUEUED runs whose ticket was put on the queue again.
    pub reenqueued: Vec<String>,
}

impl App {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    // ----- definitions -------------------------------------------------------

    /// Creates a definition; its id is `<group_name>-<uuid>`.
    pub async fn create_definition(&self, input: DefinitionInput) -> Result<Definition, AppError> {
        let group = input.group_name.clone().unwrap_or_default();
        let id = format!("{group}-{}", uuid::Uuid::new_v4());
        let definition = Definition::create(id, input)?;
        self.definitions
            .create(&definition)
            .await
            .map_err(|e| alias_conflict(e, &definition.alias))?;
        Ok(definition)
    }

    /// Updates the fields given.
    pub async fn update_definition(
        &self,
        definition_id: &str,
        input: DefinitionInput,
    ) -> Result<Definition, AppError> {
        let current = self.definition(DefinitionRef::Id(definition_id)).await?;
        let next = current.updated(input)?;
        self.definitions
            .update(&next)
            .await
            .map_err(|e| alias_conflict(e, &next.alias))?;
        Ok(next)
    }

    /// Deletes a definition. Its runs stay: run history is never deleted.
    pub async fn delete_definition(&self, definition_id: &str) -> Result<(), AppError> {
        if self.definitions.delete(definition_id).await? {
            Ok(())
        } else {
            Err(definition_not_found(DefinitionRef::Id(definition_id)))
        }
    }

    /// One definition.
    pub async fn definition(&self, by: DefinitionRef<'_>) -> Result<Definition, AppError> {
        let found = match by {
            DefinitionRef::Id(id) => self.definitions.get(id).await?,
            DefinitionRef::Alias(alias) => self.definitions.get_by_alias(alias).await?,
        };
        found.ok_or_else(|| definition_not_found(by))
    }

    /// Definitions matching a query.
    pub async fn list_definitions(
        &self,
        query: &DefinitionQuery,
    ) -> Result<Page<Definition>, AppError> {
        Ok(self.definitions.list(query).await?)
    }

    /// Every distinct group and tag of the stored definitions, sorted.
    pub async fn groups_and_tags(
        &self,
    ) -> Result<
        (
            std::collections::BTreeSet<String>,
            std::collections::BTreeSet<String>,
        ),
        AppError,
    > {
        let mut groups = std::collections::BTreeSet::new();
        let mut tags = std::collections::BTreeSet::new();
        let mut query = DefinitionQuery::default();
        query.paging.limit = crate::domain::query::MAX_LIMIT;
        loop {
            let page = self.definitions.list(&query).await?;
            let seen = page.items.len() as u64;
            for d in page.items {
                if !d.group_name.is_empty() {
                    groups.insert(d.group_name);
                }
                tags.extend(d.tags.into_iter().filter(|t| !t.is_empty()));
            }
            query.paging.offset += seen;
            if seen == 0 || query.paging.offset >= page.total {
                return Ok((groups, tags));
            }
        }
    }

    // ----- runs --------------------------------------------------------------

    /// Executes a definition: validates, appends `RunQueued`, then enqueues a
    /// ticket. If the enqueue fails the run is still recorded and the retry sweep
    /// enqueues it again, so the run is never lost. With an idempotence key
    /// that names a run of the last 7 days that did not fail, that run is
    /// returned instead.
    pub async fn execute(
        &self,
        by: DefinitionRef<'_>,
        rule: OwnerRule,
        request: LaunchRequest,
    ) -> Result<Run, AppError> {
        let definition = self.definition(by).await?;
        let owner = rule.owner(request.run_tags.as_ref())?;
        self.launch(&definition, owner, request, None, false).await
    }

    /// What an idempotence key names now: the run id, and the run itself
    /// when it is within the window and did not fail.
    async fn idempotent_run(&self, key: &str) -> Result<(Option<String>, Option<Run>), AppError> {
        let now = self.now();
        let Some(run_id) = self.idempotence.find(key, now).await? else {
            return Ok((None, None));
        };
        let run = self.runs.get(&run_id).await?.run;
        let window = chrono::Duration::days(IDEMPOTENCE_WINDOW_DAYS);
        let reusable = run.filter(|r| {
            let failed = r.status == RunStatus::Stopped && r.exit_code != Some(0);
            !failed && r.queued_at + window > now
        });
        Ok((Some(run_id), reusable))
    }

    /// Validates and records a run of `definition` (a stored definition, or
    /// one made from a template), unless `dry_run`.
    async fn launch(
        &self,
        definition: &Definition,
        owner: String,
        request: LaunchRequest,
        template: Option<crate::domain::run::TemplateUse>,
        dry_run: bool,
    ) -> Result<Run, AppError> {
        let key = request
            .idempotence_key
            .clone()
            .filter(|k| !k.trim().is_empty());
        let mut replacing = None;
        if let Some(key) = &key
            && !dry_run
        {
            let (named, reusable) = self.idempotent_run(key).await?;
            if let Some(run) = reusable {
                return Ok(run);
            }
            replacing = named;
        }
        let named = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
        let clusters = if named(&request.cluster) || named(&request.tier) {
            self.known_clusters().await?
        } else {
            vec![]
        };
        let ctx = LaunchContext {
            run_id: run_id_for(&self.settings.engine, &uuid::Uuid::new_v4().to_string()),
            engine: self.settings.engine.clone(),
            server_mode: self.settings.server_mode.clone(),
            owner_var: self.settings.owner_var.clone(),
            default_cluster: self.settings.default_cluster.clone(),
            clusters,
            requires_command: self.settings.requires_command,
        };
        let mut spec = build_spec(definition, request, owner, &ctx)?;
        spec.template = template;
        let run_id = spec.run_id.clone();
        let now = self.now();
        if dry_run {
            let state = crate::domain::run::replay(&[RunEvent::RunQueued {
                spec: Box::new(spec),
                at: now,
            }]);
            return state.run.ok_or_else(|| run_not_found(&run_id));
        }
        if let Some(key) = &key {
            let expires = now + chrono::Duration::days(IDEMPOTENCE_WINDOW_DAYS);
            let claimed = self
                .idempotence
                .claim(key, &run_id, replacing.as_deref(), now, expires)
                .await?;
            if !claimed {
                // Another request with the same key got there first.
                return match self.idempotent_run(key).await?.1 {
                    Some(run) => Ok(run),
                    None => Err(AppError::Conflict(format!(
                        "another run with idempotence_key \"{key}\" is being created; try again"
                    ))),
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
        let ticket = RunTicket {
            run_id: run_id.clone(),
            attempt: run.attempt,
            cluster: run.spec.cluster.clone(),
        };
        if let Err(error) = self.queue.enqueue(&ticket).await {
            warn!(run_id = %run_id, error = %error, "enqueue failed; the retry sweep will enqueue the run again");
        }
        Ok(run)
    }

    // ----- clusters ----------------------------------------------------------

    /// Every cluster: the registered ones, and those the deployment has
    /// without registration (the default cluster, the stack's clusters).
    pub async fn known_clusters(&self) -> Result<Vec<Cluster>, AppError> {
        let (mut clusters, _) = self.clusters.clusters().await?;
        let now = self.now();
        let implied =
            std::iter::once(&self.settings.default_cluster).chain(&self.settings.clusters);
        for name in implied {
            if !clusters.iter().any(|c| &c.name == name) {
                clusters.push(Cluster::implicit(name, now));
            }
        }
        clusters.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(clusters)
    }

    /// One cluster, registered or implied.
    pub async fn cluster(&self, name: &str) -> Result<Cluster, AppError> {
        self.known_clusters()
            .await?
            .into_iter()
            .find(|c| c.name == name)
            .ok_or_else(|| cluster_not_found(name))
    }

    /// Registers a cluster (or registers settings for an implied one).
    pub async fn create_cluster(&self, input: ClusterInput) -> Result<Cluster, AppError> {
        let cluster = Cluster::create(input, self.now())?;
        if !self.settings.clusters.is_empty()
            && !self.settings.clusters.contains(&cluster.name)
            && cluster.name != self.settings.default_cluster
        {
            return Err(crate::domain::ValidationError::new(format!(
                "cluster \"{}\" has no queue in this deployment (it has: {}): add it to the stack's Clusters parameter and deploy first",
                cluster.name,
                self.settings.clusters.join(", ")
            ))
            .into());
        }
        self.change_clusters(|registered| {
            if registered.iter().any(|c| c.name == cluster.name) {
                return Err(AppError::Conflict(format!(
                    "cluster {} already exists: update it with PUT /api/v6/clusters/{}",
                    cluster.name, cluster.name
                )));
            }
            registered.push(cluster.clone());
            Ok(())
        })
        .await?;
        Ok(cluster)
    }

    /// Updates a cluster's settings (an implied cluster becomes registered).
    pub async fn update_cluster(
        &self,
        name: &str,
        input: ClusterInput,
    ) -> Result<Cluster, AppError> {
        let current = self.cluster(name).await?;
        let next = current.updated(input, self.now())?;
        let saved = next.clone();
        self.change_clusters(move |registered| {
            registered.retain(|c| c.name != saved.name);
            registered.push(saved.clone());
            Ok(())
        })
        .await?;
        Ok(next)
    }

    /// Removes a registered cluster's settings. Its runs stay.
    pub async fn delete_cluster(&self, name: &str) -> Result<(), AppError> {
        let name = name.to_owned();
        self.change_clusters(|registered| {
            let before = registered.len();
            registered.retain(|c| c.name != name);
            if registered.len() == before {
                Err(cluster_not_found(&name))
            } else {
                Ok(())
            }
        })
        .await
    }

    /// Read, change and save the registry, again on a concurrent change.
    async fn change_clusters(
        &self,
        change: impl Fn(&mut Vec<Cluster>) -> Result<(), AppError>,
    ) -> Result<(), AppError> {
        for _ in 0..MAX_CONFLICT_RETRIES {
            let (mut registered, version) = self.clusters.clusters().await?;
            change(&mut registered)?;
            registered.sort_by(|a, b| a.name.cmp(&b.name));
            match self.clusters.save_clusters(&registered, version).await {
                Ok(()) => return Ok(()),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::Conflict(
            "the cluster registry is being changed by many writers at once; try again".into(),
        ))
    }

    // ----- templates ---------------------------------------------------------

    /// Creates a template, or its next version when the content differs from
    /// the latest version of that name. Returns it and whether it was created.
    pub async fn create_template(
        &self,
        input: TemplateInput,
    ) -> Result<(Template, bool), AppError> {
        let name = input.template_name.clone().unwrap_or_default();
        for _ in 0..MAX_CONFLICT_RETRIES {
            let latest = if name.is_empty() {
                None
            } else {
                self.templates
                    .versions(&name)
                    .await?
                    .into_iter()
                    .max_by_key(|t| t.version)
            };
            let id = format!("tpl-{}", &uuid::Uuid::new_v4().simple().to_string()[..28]);
            let version = latest.as_ref().map_or(1, |t| t.version + 1);
            let candidate = Template::create(id, version, input.clone())?;
            if let Some(latest) = latest
                && latest.same_content(&candidate)
            {
                return Ok((latest, false));
            }
            match self.templates.create(&candidate).await {
                Ok(()) => return Ok((candidate, true)),
                Err(StoreError::Duplicate(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::Conflict(format!(
            "template {name} is being changed by many writers at once; try again"
        )))
    }

    /// One template version by id.
    pub async fn template(&self, template_id: &str) -> Result<Template, AppError> {
        self.templates
            .get(template_id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("Template with ID {template_id} not found")))
    }

    /// A template by name and version (the latest when `None`).
    pub async fn template_by_name(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<Template, AppError> {
        let versions = self.templates.versions(name).await?;
        let found = match version {
            Some(v) => versions.into_iter().find(|t| t.version == v),
            None => versions.into_iter().max_by_key(|t| t.version),
        };
        found.ok_or_else(|| {
            AppError::NotFound(format!(
                "template {name} version {} not found",
                version.map_or_else(|| "latest".to_owned(), |v| v.to_string())
            ))
        })
    }

    /// Every template version, or only each name's latest.
    pub async fn list_templates(&self, latest_only: bool) -> Result<Vec<Template>, AppError> {
        let mut all = self.templates.all().await?;
        if latest_only {
            all.sort_by(|a, b| {
                a.template_name
                    .cmp(&b.template_name)
                    .then(b.version.cmp(&a.version))
            });
            all.dedup_by(|later, first| later.template_name == first.template_name);
        }
        Ok(all)
    }

    /// Executes a template version: the payload merged over its defaults,
    /// validated against its schema and rendered into the command (a request
    /// `command` wins). `dry_run` returns the run without recording it.
    pub async fn execute_template(
        &self,
        template: &Template,
        owner: String,
        request: LaunchRequest,
        payload: Option<serde_json::Value>,
        dry_run: bool,
    ) -> Result<Run, AppError> {
        let rendered = template.command_for(payload.as_ref())?;
        let definition = Definition {
            definition_id: template.template_id.clone(),
            alias: template.template_name.clone(),
            group_name: TEMPLATE_GROUP.to_owned(),
            image: template.image.clone(),
            command: Some(rendered).filter(|c| !c.trim().is_empty()),
            memory: Some(template.memory),
            cpu: Some(template.cpu),
            gpu: template.gpu,
            ephemeral_storage: template.ephemeral_storage,
            env: template.env.clone(),
            tags: template.tags.clone(),
            ports: vec![],
            adaptive_resource_allocation: None,
            requires_docker: None,
            target_cluster: None,
            task_type: None,
        };
        let used = crate::domain::run::TemplateUse {
            template_id: template.template_id.clone(),
            template_name: template.template_name.clone(),
            version: template.version,
            payload: payload.unwrap_or(serde_json::Value::Null),
        };
        self.launch(&definition, owner, request, Some(used), dry_run)
            .await
    }

    /// One run.
    pub async fn run(&self, run_id: &str) -> Result<Run, AppError> {
        self.runs
            .get(run_id)
            .await?
            .run
            .ok_or_else(|| run_not_found(run_id))
    }

    /// Runs matching a query. A `definition_ids` filter must name existing
    /// definitions.
    pub async fn list_runs(&self, query: &RunQuery) -> Result<Page<Run>, AppError> {
        Ok(self.runs.list(query).await?)
    }

    /// A run's event stream.
    pub async fn run_events(&self, run_id: &str) -> Result<Vec<RecordedEvent>, AppError> {
        let events = self.events.load(run_id).await?;
        if events.is_empty() {
            return Err(run_not_found(run_id));
        }
        Ok(events)
    }

    /// Stops a run: a QUEUED run ends at once; a launched one is signalled and
    /// ends when its engine reports it gone. Stopping a stopped run changes
    /// nothing.
    pub async fn stop(&self, run_id: &str, by: &str) -> Result<Run, AppError> {
        let run = self
            .apply(
                run_id,
                RunCommand::RequestStop {
                    by: by.to_owned(),
                    now: self.now(),
                },
            )
            .await?;
        if matches!(run.status, RunStatus::Pending | RunStatus::Running)
            && let Some(task_id) = &run.task_id
            && let Err(error) = self.engine.stop(run_id, task_id).await
        {
            warn!(run_id = %run_id, error = %error, "engine could not stop the task");
            return Err(AppError::Engine(error));
        }
        Ok(run)
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
        let spec = LaunchSpec::for_run(run);
        match self.engine.launch(&spec).await {
            Ok(launched) => {
                let now = self.now();
                let run = self
                    .apply_from(
                        &ticket.run_id,
                        RunCommand::RecordSubmitted {
                            attempt: ticket.attempt,
                            task_id: launched.task_id.clone(),
                            now,
                        },
                        Some(state),
                    )
                    .await?;
                if run.task_id.as_deref() != Some(launched.task_id.as_str()) {
                    // The run moved on while it was being launched (stopped by a
                    // user in between): the task must not outlive that decision.
                    if let Err(error) = self.engine.stop(&ticket.run_id, &launched.task_id).await {
                        warn!(run_id = %ticket.run_id, error = %error, "could not stop a task launched for a run that had moved on");
                    }
                    return Ok(SubmitOutcome::Skipped);
                }
                if let Some(host) = launched.running_on {
                    self.apply(
                        &ticket.run_id,
                        RunCommand::RecordStarted {
                            attempt: ticket.attempt,
                            engine_version: None,
                            task_id: Some(launched.task_id.clone()),
                            host: Some(host),
                            now,
                        },
                    )
                    .await?;
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
                self.apply_from(
                    &ticket.run_id,
                    RunCommand::RecordExited {
                        attempt: ticket.attempt,
                        engine_version: None,
                        exit_code: None,
                        reason: Some(format!("could not launch: {message}")),
                        now: self.now(),
                    },
                    Some(state),
                )
                .await?;
                Ok(SubmitOutcome::Failed { reason: message })
            }
        }
    }

    /// Records a state change reported by an engine. Duplicates, stale attempts
    /// and out-of-order reports change nothing.
    pub async fn record_engine_update(&self, update: EngineUpdate) -> Result<Run, AppError> {
        let run_id = update.run_id.clone();
        let command = update.into_command();
        self.apply(&run_id, command).await
    }

    /// Ends a run its engine lost track of (see `RunCommand::Abandon`).
    pub async fn abandon(&self, run_id: &str, reason: &str) -> Result<Run, AppError> {
        self.apply(
            run_id,
            RunCommand::Abandon {
                reason: reason.to_owned(),
                now: self.now(),
            },
        )
        .await
    }

    /// One retry sweep: NEEDS_RETRY runs are queued again as a new attempt (or
    /// stopped once they used up their attempts), and QUEUED runs accepted before
    /// `stale_before` get their ticket enqueued again in case the first enqueue
    /// was lost. Enqueueing twice is harmless: submit skips what is not QUEUED.
    pub async fn retry_tick(
        &self,
        stale_before: chrono::DateTime<chrono::Utc>,
    ) -> Result<TickOutcome, AppError> {
        let mut outcome = TickOutcome::default();
        let needs_retry = self
            .runs
            .list(&RunQuery {
                statuses: vec![RunStatus::NeedsRetry],
                ..oldest_first()
            })
            .await?;
        for run in needs_retry.items {
            let run_id = run.spec.run_id.clone();
            let run = self
                .apply(
                    &run_id,
                    RunCommand::Requeue {
                        max_attempts: self.settings.max_attempts,
                        now: self.now(),
                    },
                )
                .await?;
            match run.status {
                RunStatus::Queued => {
                    self.enqueue(&run).await?;
                    outcome.requeued.push(run_id);
                }
                RunStatus::Stopped => outcome.gave_up.push(run_id),
                _ => {}
            }
        }
        let queued = self
            .runs
            .list(&RunQuery {
                statuses: vec![RunStatus::Queued],
                ..oldest_first()
            })
            .await?;
        for run in queued.items {
            if run.queued_at < stale_before {
                self.enqueue(&run).await?;
                outcome.reenqueued.push(run.spec.run_id.clone());
            }
        }
        Ok(outcome)
    }

    /// Stops every RUNNING run past its `active_deadline_seconds` at `now`: the
    /// engine is told to stop the task and the run ends with a timeout reason.
    /// (The local engine enforces deadlines itself; the AWS retry sweep uses this.)
    pub async fn enforce_deadlines(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<String>, AppError> {
        let running = self
            .runs
            .list(&RunQuery {
                statuses: vec![RunStatus::Running],
                ..oldest_first()
            })
            .await?;
        let mut timed_out = Vec::new();
        for run in running.items {
            let (Some(started), Some(deadline)) =
                (run.started_at, run.spec.active_deadline_seconds)
            else {
                continue;
            };
            let deadline_secs = i64::try_from(deadline).unwrap_or(i64::MAX);
            if now - started <= chrono::Duration::seconds(deadline_secs) {
                continue;
            }
            let run_id = run.spec.run_id.clone();
            if let Some(task_id) = &run.task_id
                && let Err(error) = self.engine.stop(&run_id, task_id).await
            {
                warn!(run_id = %run_id, error = %error, "could not stop a task past its deadline");
            }
            self.apply(
                &run_id,
                RunCommand::Abandon {
                    reason: format!(
                        "exceeded its active_deadline_seconds ({deadline} s) and was stopped"
                    ),
                    now,
                },
            )
            .await?;
            timed_out.push(run_id);
        }
        Ok(timed_out)
    }

    async fn enqueue(&self, run: &Run) -> Result<(), AppError> {
        let ticket = RunTicket {
            run_id: run.spec.run_id.clone(),
            attempt: run.attempt,
            cluster: run.spec.cluster.clone(),
        };
        Ok(self.queue.enqueue(&ticket).await?)
    }

    /// One page of a run's log; an empty page before the run has launched.
    pub async fn log_page(
        &self,
        run_id: &str,
        last_seen: Option<&str>,
    ) -> Result<LogPage, AppError> {
        let run = self.run(run_id).await?;
        if run.task_id.is_none() && run.started_at.is_none() {
            return Ok(LogPage {
                log: String::new(),
                last_seen: last_seen.unwrap_or_default().to_owned(),
            });
        }
        Ok(self.logs.page(&run, last_seen).await?)
    }

    /// One run with the version of its stream (which changes whenever the
    /// run does, so it makes an exact ETag).
    pub async fn run_with_version(&self, run_id: &str) -> Result<(Run, u64), AppError> {
        let state = self.runs.get(run_id).await?;
        let version = state.version;
        state
            .run
            .map(|run| (run, version))
            .ok_or_else(|| run_not_found(run_id))
    }

    /// Records the status a run reports about itself. Returns the run and
    /// whether the report changed it (a report that would move the status
    /// backwards, or repeats it, changes nothing).
    pub async fn report_status(
        &self,
        run_id: &str,
        report: &StatusReport,
    ) -> Result<(Run, bool), AppError> {
        report.status()?;
        let state = self.runs.get(run_id).await?;
        let Some(before) = state.run.clone() else {
            return Err(run_not_found(run_id));
        };
        let Some(command) = report.command(&before, self.now())? else {
            return Ok((before, false));
        };
        let after = self.apply_from(run_id, command, Some(state)).await?;
        let changed = after != before;
        Ok((after, changed))
    }

    /// A run's whole log.
    pub async fn log_text(&self, run_id: &str) -> Result<String, AppError> {
        let run = self.run(run_id).await?;
        if run.task_id.is_none() && run.started_at.is_none() {
            return Ok(String::new());
        }
        Ok(self.logs.all(&run).await?)
    }

    /// Runs one command against a run's stream: read, decide, append with the
    /// version as condition; on a conflict, read and decide again. Returns the
    /// run as it is afterwards.
    pub async fn apply(&self, run_id: &str, command: RunCommand) -> Result<Run, AppError> {
        self.apply_from(run_id, command, None).await
    }

    /// [`App::apply`], starting from a state the caller has just read (or, for
    /// a new run, the empty state), which saves one read. A stale state costs
    /// nothing but a conflict and a fresh read.
    async fn apply_from(
        &self,
        run_id: &str,
        command: RunCommand,
        mut known: Option<RunState>,
    ) -> Result<Run, AppError> {
        for _ in 0..MAX_CONFLICT_RETRIES {
            let state = match known.take() {
                Some(state) => state,
                None => self.runs.get(run_id).await?,
            };
            let events = decide(&state, command.clone()).map_err(|e| match e {
                crate::domain::DomainError::RunNotFound => run_not_found(run_id),
                other => other.into(),
            })?;
            let version = state.version;
            let previous = state.run.as_ref().map(|r| r.status);
            let next = fold(state, &events);
            let Some(run) = next.run else {
                return Err(run_not_found(run_id));
            };
            if events.is_empty() {
                return Ok(run);
            }
            match self.events.append(run_id, version, &events, &run).await {
                Ok(_) => {
                    if previous != Some(run.status) {
                        self.publish(&run, previous).await;
                    }
                    return Ok(run);
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(AppError::Conflict(format!(
            "run {run_id} is being changed by many writers at once; try again"
        )))
    }
}

/// The sweep works oldest first, a page per tick.
fn oldest_first() -> RunQuery {
    RunQuery {
        sort_by: crate::domain::query::RunSortField::QueuedAt,
        order: crate::domain::query::SortOrder::Asc,
        ..RunQuery::default()
    }
}

impl App {
    /// Publishes a status change. The change is already recorded; a failure to
    /// publish is logged, not returned, so it never undoes or repeats a command.
    async fn publish(&self, run: &Run, previous: Option<RunStatus>) {
        if let Some(publisher) = &self.publisher
            && let Err(error) = publisher
                .publish(&[RunStateChange::of(run, previous)])
                .await
        {
            warn!(run_id = %run.spec.run_id, error = %error, "could not publish a run state change");
        }
    }
}

fn fold(state: RunState, events: &[RunEvent]) -> RunState {
    events.iter().fold(state, evolve)
}

fn alias_conflict(e: StoreError, alias: &str) -> AppError {
    match e {
        StoreError::Duplicate(_) => AppError::Conflict(format!(
            "definition with alias [{alias}] already exists: choose another alias, or update that definition"
        )),
        other => other.into(),
    }
}

fn definition_not_found(by: DefinitionRef<'_>) -> AppError {
    match by {
        DefinitionRef::Id(id) => AppError::NotFound(format!("Definition with ID {id} not found")),
        DefinitionRef::Alias(alias) => {
            AppError::NotFound(format!("Definition with alias {alias} not found"))
        }
    }
}

/// Group of the runs made from templates.
pub const TEMPLATE_GROUP: &str = "templates";

fn cluster_not_found(name: &str) -> AppError {
    AppError::NotFound(format!("Cluster with ID {name} not found"))
}

fn run_not_found(run_id: &str) -> AppError {
    AppError::NotFound(format!("Run with id {run_id} not found"))
}
