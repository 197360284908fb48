//! v7 templates: versions created by content, read by id or by name and
//! version, and executed with a payload (merged over the defaults, checked
//! against the schema, rendered into the command).

use crate::app::{App, Step, retry_on_conflict};
use crate::domain::ValidationError;
use crate::domain::definition::Definition;
use crate::domain::identity::Caller;
use crate::domain::launch::{LaunchRequest, OwnerRule};
use crate::domain::run::{Run, TemplateUse};
use crate::domain::template::{Template, TemplateInput};
use crate::error::{AppError, Contended, Missing, StoreError};

/// Group of the runs made from templates.
pub const TEMPLATE_GROUP: &str = "templates";

/// Longest a template may take to render.
pub const RENDER_SECONDS: u64 = 2;

/// Renders at once, at most: a template that never stops rendering (loops
/// that write nothing) keeps its thread, and no more than these can.
static RENDERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// Runs `render` on a thread of its own within [`RENDER_SECONDS`]: a render
/// that takes longer, or fails in the renderer, is the template's problem
/// (a 400), never the server's.
async fn bounded<T: Send + 'static>(
    render: impl FnOnce() -> Result<T, ValidationError> + Send + 'static,
) -> Result<T, AppError> {
    let budget = std::time::Duration::from_secs(RENDER_SECONDS);
    let too_long = || {
        AppError::Invalid(ValidationError::new(format!(
            "the template took over {RENDER_SECONDS} s to render: render less (fewer or smaller loops)"
        )))
    };
    let started = tokio::time::Instant::now();
    let permit = tokio::time::timeout(budget, RENDERS.acquire())
        .await
        .map_err(|_| too_long())?
        .map_err(|e| AppError::internal(crate::error::Dependency::Rules, e))?;
    let task = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        render()
    });
    match tokio::time::timeout(budget.saturating_sub(started.elapsed()), task).await {
        Err(_) => Err(too_long()),
        Ok(Err(_)) => Err(AppError::Invalid(ValidationError::new(
            "the template could not be rendered: the renderer failed on it; simplify the template",
        ))),
        Ok(Ok(rendered)) => Ok(rendered?),
    }
}

impl App {
    /// Creates a template, or its next version when the content differs from
    /// the latest version of that name. Returns it and whether it was created.
    pub async fn create_template(
        &self,
        input: TemplateInput,
    ) -> Result<(Template, bool), AppError> {
        let name = input.template_name.clone().unwrap_or_default();
        let (name, input) = (&name, &input);
        retry_on_conflict(Contended::Template(name.clone()), || async move {
            let latest = if name.is_empty() {
                None
            } else {
                self.templates
                    .versions(name)
                    .await?
                    .into_iter()
                    .max_by_key(|t| t.version)
            };
            let id = format!("tpl-{}", &uuid::Uuid::new_v4().simple().to_string()[..28]);
            let version = latest.as_ref().map_or(1, |t| t.version + 1);
            // A template keeps its runs' whole size: the engine's for what
            // it was given (on ECS, Fargate's), else the template defaults.
            let mut sized = input.clone();
            sized.resources = self.settings.launch_limits.sized(sized.resources);
            let candidate = Template::create(id, version, sized)?;
            let mut problems = crate::domain::launch::definition_problems(
                None,
                &candidate.env,
                // What was given, so a message speaks of no default.
                &input.resources,
                None,
                &self.settings.owner_var,
                self.settings.launch_limits,
            );
            problems.extend(crate::domain::limits::nul_problem(
                "command_template",
                &candidate.command_template,
            ));
            ValidationError::from_problems(problems)?;
            let checked = candidate.clone();
            bounded(move || checked.check_render()).await?;
            if let Some(latest) = latest
                && latest.same_content(&candidate)
            {
                return Ok(Step::Done((latest, false)));
            }
            match self.templates.create(&candidate).await {
                Ok(()) => Ok(Step::Done((candidate, true))),
                // Another writer took this version number: decide again.
                Err(StoreError::Duplicate(_)) => Ok(Step::Again),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    /// One template version by id.
    pub async fn template(&self, template_id: &str) -> Result<Template, AppError> {
        self.templates
            .get(template_id)
            .await?
            .ok_or_else(|| AppError::NotFound(Missing::Template(template_id.to_owned())))
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
            AppError::NotFound(Missing::TemplateVersion {
                name: name.to_owned(),
                version,
            })
        })
    }

    /// The ids of every version of template `name`; not found when it has none.
    pub async fn template_version_ids(&self, name: &str) -> Result<Vec<String>, AppError> {
        let ids: Vec<String> = self
            .templates
            .versions(name)
            .await?
            .into_iter()
            .map(|t| t.template_id)
            .collect();
        if ids.is_empty() {
            return Err(AppError::NotFound(Missing::TemplateName(name.to_owned())));
        }
        Ok(ids)
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
    /// `command` wins). The owner is the request's `run_tags.owner_id`.
    /// `dry_run` returns the run without recording it.
    pub async fn execute_template(
        &self,
        template: &Template,
        request: LaunchRequest,
        payload: Option<serde_json::Value>,
        dry_run: bool,
        caller: &Caller,
    ) -> Result<Run, AppError> {
        let (definition, used) = self.rendered_template(template, payload).await?;
        self.launch(
            &definition,
            OwnerRule::TemplateOwner,
            request,
            Some(used),
            dry_run,
            caller,
        )
        .await
    }

    /// What a run of `template` with `payload` launches: a definition made
    /// from the template with its command rendered (within the render
    /// budget), and the template version and payload it records.
    pub(crate) async fn rendered_template(
        &self,
        template: &Template,
        payload: Option<serde_json::Value>,
    ) -> Result<(Definition, TemplateUse), AppError> {
        let rendered = {
            let (template, payload) = (template.clone(), payload.clone());
            bounded(move || template.command_for(payload.as_ref())).await?
        };
        let definition = Definition {
            definition_id: template.template_id.clone(),
            alias: template.template_name.clone(),
            group_name: TEMPLATE_GROUP.to_owned(),
            image: template.image.clone(),
            command: Some(rendered).filter(|c| !c.trim().is_empty()),
            resources: template.resources,
            env: template.env.clone(),
            tags: template.tags.clone(),
            ports: vec![],
            adaptive_resource_allocation: None,
            requires_docker: None,
            target_cluster: None,
            task_type: None,
            secrets: vec![],
            repository_credentials: None,
            retry: None,
            max_memory: None,
            created_by: None,
        };
        let used = TemplateUse {
            template_id: template.template_id.clone(),
            template_name: template.template_name.clone(),
            version: template.version,
            payload: payload.unwrap_or(serde_json::Value::Null),
        };
        Ok((definition, used))
    }
}
