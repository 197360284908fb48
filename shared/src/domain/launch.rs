//! Execute requests: what a launch may ask for, and how it becomes a [`RunSpec`].
//!
//! The rules are Flotilla's: the run's env is the reserved variables
//! (`FLOTILLA_RUN_ID`, `FLOTILLA_SERVER_MODE`, the owner variable) followed by the
//! request's env; the request's command and resources override the definition's;
//! `description` defaults to the alias; `node_lifecycle` is `spot` or `ondemand`.
//! Unlike Flotilla, a request may not set a reserved variable itself (it would
//! silently lose), and the request's `cluster` is honoured (see
//! [`crate::domain::cluster`] for routing). What the engine cannot take is
//! refused here, not at launch: on ECS a run's cpu and memory must be a
//! Fargate size, and are set on its spec to the size it launches with
//! ([`crate::domain::fargate`]), and a gpu is refused.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::cluster::{Cluster, RouteRequest, route};
use crate::domain::definition::Definition;
use crate::domain::error::ValidationError;
use crate::domain::limits::{
    LaunchLimits, MAX_ITEMS, MAX_NAME_BYTES, MAX_TEXT_BYTES, count_problem, length_problem,
    nul_problem,
};
use crate::domain::retry::RunRetry;
use crate::domain::spec::{Engine, NodeLifecycle, Resources, RunSpec};
use crate::domain::{EnvVar, SecretRef, secret_problems, validate_env};

/// Reserved variable carrying the run id.
pub const RUN_ID_VAR: &str = "FLOTILLA_RUN_ID";
/// Reserved variable carrying the server mode.
pub const SERVER_MODE_VAR: &str = "FLOTILLA_SERVER_MODE";
/// Reserved variable carrying the attempt number (from 1), set per attempt.
pub const ATTEMPT_VAR: &str = "FLOTILLA_RUN_ATTEMPT";
/// Reserved variable carrying the attempt's own token, which a run sends
/// (as the `X-Flotilla-Run-Token` header) to report its own status.
pub const RUN_TOKEN_VAR: &str = "FLOTILLA_RUN_TOKEN";
/// Default name of the reserved variable carrying the owner.
pub const DEFAULT_OWNER_VAR: &str = "FLOTILLA_RUN_OWNER_ID";
/// Default timeout of a run: 48 hours, as Flotilla.
pub const DEFAULT_ACTIVE_DEADLINE_SECONDS: u64 = 172_800;
/// Owner recorded for runs launched through the v1 execute route, which has no owner.
pub const V1_OWNER: &str = "v1-unknown";

/// `run_tags` of an execute body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunTags {
    /// Owner (v4/v6 and the alias route).
    pub owner_id: Option<String>,
    /// Owner e-mail (v2).
    pub owner_email: Option<String>,
    /// Team (v2).
    pub team_name: Option<String>,
}

/// An execute body (Flotilla's LaunchRequestV2; v1's `{cluster, env, tier}` is a subset).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LaunchRequest {
    /// Cluster to run on; the default cluster when absent.
    pub cluster: Option<String>,
    /// Extra environment for this run.
    pub env: Option<Vec<EnvVar>>,
    /// Extra secrets for this run, by reference.
    pub secrets: Option<Vec<SecretRef>>,
    /// Ownership tags.
    pub run_tags: Option<RunTags>,
    /// Command overriding the definition's.
    pub command: Option<String>,
    /// Resources overriding the definition's, each on its own.
    #[serde(flatten)]
    pub resources: Resources,
    /// Timeout in seconds.
    pub active_deadline_seconds: Option<u64>,
    /// Free text.
    pub description: Option<String>,
    /// Idempotence key.
    pub idempotence_key: Option<String>,
    /// Labels.
    pub labels: Option<BTreeMap<String, String>>,
    /// Engine the client asks for (checked, then the server's engine is used).
    pub engine: Option<String>,
    /// `spot` or `ondemand`.
    pub node_lifecycle: Option<String>,
    /// Scheduling tier.
    pub tier: Option<String>,
    /// CPU architecture.
    pub arch: Option<String>,
    /// Service account.
    pub service_account: Option<String>,
    /// A retry policy replacing the definition's.
    pub retry: Option<crate::domain::retry::RetryPolicy>,
}

/// Which ownership rule an execute route applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerRule {
    /// v1: no owner is asked for; runs are owned by the caller a server
    /// knows (carried as `run_tags.owner_id`), else by [`V1_OWNER`].
    Anonymous,
    /// v2: `run_tags.owner_email` and `run_tags.team_name` are required; the e-mail owns.
    EmailAndTeam,
    /// v4, v6 and the alias route: `run_tags.owner_id` is required.
    OwnerId,
    /// v7 templates: the body's top-level `owner_id` is required (carried
    /// here as `run_tags.owner_id`).
    TemplateOwner,
}

impl OwnerRule {
    /// The owner of a run launched with these tags, or what to add.
    pub fn owner(self, tags: Option<&RunTags>) -> Result<String, ValidationError> {
        let get = |f: fn(&RunTags) -> &Option<String>| {
            tags.and_then(|t| f(t).as_deref())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        match self {
            Self::Anonymous => Ok(get(|t| &t.owner_id).unwrap_or_else(|| V1_OWNER.to_owned())),
            Self::TemplateOwner => get(|t| &t.owner_id).ok_or_else(|| {
                ValidationError::new(
                    "request payload must contain [owner_id]; the run_tags field is deprecated for the v7 endpoint, e.g. {\"owner_id\": \"jane\", \"template_payload\": {…}}",
                )
            }),
            Self::OwnerId => get(|t| &t.owner_id).ok_or_else(|| {
                ValidationError::new(
                    "run_tags must exist in body and contain [owner_id]: say who launches the run, e.g. \"run_tags\": {\"owner_id\": \"jane\"}",
                )
            }),
            Self::EmailAndTeam => match (get(|t| &t.owner_email), get(|t| &t.team_name)) {
                (Some(email), Some(_)) => Ok(email),
                _ => Err(ValidationError::new(
                    "run_tags must exist in body and contain [owner_email] and [team_name], e.g. \"run_tags\": {\"owner_email\": \"jane@example.com\", \"team_name\": \"data\"}",
                )),
            },
        }
    }
}

/// What the server decides for every launch, independent of the request.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchContext {
    /// The new run's id.
    pub run_id: String,
    /// The engine this server runs runs with.
    pub engine: Engine,
    /// Value of `FLOTILLA_SERVER_MODE`.
    pub server_mode: String,
    /// Name of the owner variable.
    pub owner_var: String,
    /// Cluster used when neither request nor definition names one.
    pub default_cluster: String,
    /// The known clusters (registered and implied); a run runs on its
    /// cluster's engine.
    pub clusters: Vec<Cluster>,
    /// Whether the engine needs a command (a local process does; a container has
    /// its image's default command).
    pub requires_command: bool,
    /// What the engine can take.
    pub limits: LaunchLimits,
    /// Attempts a run's policy allows when it names none (the server's).
    pub max_attempts: u32,
    /// The most memory (MB) an attempt's memory may grow to, whatever its
    /// definition says (the server's cap), when there is one.
    pub max_memory: Option<u64>,
}

/// The variables Flotilla sets for every run, which neither a definition
/// nor a request may set: `owner_var` is the deployment's owner variable.
pub fn reserved_names(owner_var: &str) -> [&str; 5] {
    [
        RUN_ID_VAR,
        SERVER_MODE_VAR,
        ATTEMPT_VAR,
        RUN_TOKEN_VAR,
        owner_var,
    ]
}

/// The problems of a definition's (or template's) own command, env and
/// resources, as a launch would meet them: the engine's limits (on ECS,
/// Fargate's sizes and no gpu; `cluster` is where it runs, when it says),
/// and no reserved variable.
pub fn definition_problems(
    command: Option<&str>,
    env: &[EnvVar],
    resources: &Resources,
    cluster: Option<&str>,
    owner_var: &str,
    limits: LaunchLimits,
) -> Vec<String> {
    let reserved = reserved_names(owner_var);
    let mut problems: Vec<String> = env
        .iter()
        .filter(|v| reserved.contains(&v.name.as_str()))
        .map(|v| {
            format!(
                "env: {} is reserved and set by Flotilla for every run; remove it",
                v.name
            )
        })
        .collect();
    problems.extend(limits.problems(command, env));
    problems.extend(limits.resource_problems(resources, cluster));
    problems
}

/// Validates a request against its definition and builds the run's spec,
/// its owner decided by `rule`. Every problem is reported at once.
pub fn build_spec(
    definition: &Definition,
    request: LaunchRequest,
    rule: OwnerRule,
    ctx: &LaunchContext,
) -> Result<RunSpec, ValidationError> {
    let mut problems = Vec::new();
    let owner = rule
        .owner(request.run_tags.as_ref())
        .map_err(|e| problems.extend(e.problems))
        .unwrap_or_default();
    let request_env = request.env.unwrap_or_default();
    if let Err(e) = validate_env(&request_env, "env") {
        problems.extend(e.problems);
    }
    let reserved = reserved_names(&ctx.owner_var);
    for var in &request_env {
        if reserved.contains(&var.name.as_str()) {
            problems.push(format!(
                "env: {} is reserved and set by Flotilla for every run; remove it from the request",
                var.name
            ));
        }
    }
    let node_lifecycle = match request.node_lifecycle.as_deref() {
        None | Some("") => NodeLifecycle::default(),
        Some(v) => NodeLifecycle::parse(v)
            .map_err(|e| problems.extend(e.problems))
            .unwrap_or_default(),
    };
    let asked_engine = match request.engine.as_deref().filter(|e| !e.is_empty()) {
        None => None,
        Some(engine) => match Engine::parse(engine) {
            Ok(engine) => Some(engine),
            Err(_) => {
                let known: Vec<_> = Engine::ALL.iter().map(|e| e.as_str()).collect();
                problems.push(format!(
                    "engine \"{engine}\" is not supported: leave it out, or use one of {}",
                    known.join(", ")
                ));
                None
            }
        },
    };
    let routed = route(
        &ctx.clusters,
        RouteRequest {
            cluster: request.cluster.as_deref(),
            tier: request.tier.as_deref(),
            target_cluster: definition.target_cluster.as_deref(),
            default_cluster: &ctx.default_cluster,
            spread_key: &ctx.run_id,
        },
    );
    let cluster = match routed {
        Ok(c) => c,
        Err(e) => {
            problems.extend(e.problems);
            String::new()
        }
    };
    // A run runs on its cluster's engine; a request naming another is
    // refused rather than run somewhere it did not ask for.
    let engine = ctx
        .clusters
        .iter()
        .find(|c| c.name == cluster)
        .map_or(ctx.engine, |c| c.engine_or(ctx.engine));
    if let Some(asked) = asked_engine
        && asked != engine
        && !cluster.is_empty()
    {
        let on: Vec<&str> = ctx
            .clusters
            .iter()
            .filter(|c| c.is_active() && c.engine_or(ctx.engine) == asked)
            .map(|c| c.name.as_str())
            .collect();
        let choose = if on.is_empty() {
            format!("no cluster here runs on {asked}; leave \"engine\" out")
        } else {
            format!("name one that does with \"cluster\": {}", on.join(", "))
        };
        problems.push(format!(
            "engine \"{asked}\": cluster \"{cluster}\" runs its runs on {engine}: {choose}"
        ));
    }
    let limits = if engine == Engine::Eks {
        LaunchLimits::Kubernetes
    } else {
        ctx.limits
    };
    let run_id = if engine == ctx.engine {
        ctx.run_id.clone()
    } else {
        // The same id, prefixed by the engine it runs on.
        let tail = ctx
            .run_id
            .strip_prefix(&format!("{}-", ctx.engine))
            .unwrap_or(&ctx.run_id);
        run_id_for(engine, &format!("{tail:0>36}"))
    };
    let command = request
        .command
        .filter(|c| !c.trim().is_empty())
        .or_else(|| definition.command.clone());
    if command.is_none() && ctx.requires_command {
        problems.push(format!(
            "this run has no command: give \"command\" in the request or in definition \"{}\"",
            definition.alias
        ));
    }
    problems.extend(request.resources.problems());
    // The size the run asks for, the request's over the definition's, as
    // the engine takes it (on ECS, a Fargate size, cpu and memory set).
    let resources = request.resources.or(definition.resources);
    problems.extend(limits.resource_problems(&resources, Some(cluster.as_str())));
    let resources = limits.sized(resources);
    if request.active_deadline_seconds == Some(0) {
        problems.push(
            "active_deadline_seconds must be greater than 0 when given: leave it out to use the default".to_owned(),
        );
    }
    if let Some(problem) = nul_problem("run_tags owner", &owner) {
        problems.push(problem);
    }
    if let Some(description) = &request.description {
        problems.extend(nul_problem("description", description));
        problems.extend(length_problem("description", description, MAX_TEXT_BYTES));
    }
    problems.extend(length_problem("run_tags owner", &owner, MAX_NAME_BYTES));
    if let Some(tags) = &request.run_tags {
        for (field, value) in [
            ("run_tags.owner_email", &tags.owner_email),
            ("run_tags.team_name", &tags.team_name),
        ] {
            if let Some(value) = value {
                problems.extend(length_problem(field, value, MAX_NAME_BYTES));
                problems.extend(nul_problem(field, value));
            }
        }
    }
    let names = [
        ("cluster", &request.cluster),
        ("tier", &request.tier),
        ("arch", &request.arch),
        ("service_account", &request.service_account),
        ("idempotence_key", &request.idempotence_key),
    ];
    for (field, value) in names {
        if let Some(value) = value {
            problems.extend(length_problem(field, value, MAX_NAME_BYTES));
            problems.extend(nul_problem(field, value));
        }
    }
    problems.extend(count_problem("env", request_env.len(), MAX_ITEMS));
    if let Some(labels) = &request.labels {
        problems.extend(count_problem("labels", labels.len(), MAX_ITEMS));
        for (key, value) in labels {
            problems.extend(length_problem("labels key", key, MAX_NAME_BYTES));
            problems.extend(length_problem(
                &format!("labels.{key}"),
                value,
                MAX_TEXT_BYTES,
            ));
            problems.extend(nul_problem("labels", &format!("{key}{value}")));
        }
    }
    // The launch as the engine will meet it: the definition's env, then the
    // run's (reserved variables and the request's).
    let launch_env: Vec<EnvVar> = definition
        .env
        .iter()
        .chain(request_env.iter())
        .cloned()
        .collect();
    problems.extend(limits.problems(command.as_deref(), &launch_env));
    let request_secrets = request.secrets.unwrap_or_default();
    problems.extend(secret_problems(&request_secrets, &launch_env, "secrets"));
    for secret in &request_secrets {
        if reserved.contains(&secret.name.as_str()) {
            problems.push(format!(
                "secrets: {} is reserved and set by Flotilla for every run; remove it from the request",
                secret.name
            ));
        }
    }
    if let Some(policy) = &request.retry {
        problems.extend(policy.problems("retry"));
    }
    ValidationError::from_problems(problems)?;
    let retry = RunRetry::resolve(
        request.retry.as_ref().or(definition.retry.as_ref()),
        definition.max_memory,
        ctx.max_memory,
        ctx.max_attempts,
    );
    // The definition's secrets, then the request's; a name given again wins,
    // and a plain env variable of that name gives way.
    let mut secrets: Vec<SecretRef> = definition
        .secrets
        .iter()
        .filter(|s| !request_secrets.iter().any(|r| r.name == s.name))
        .filter(|s| !request_env.iter().any(|v| v.name == s.name))
        .cloned()
        .collect();
    secrets.extend(request_secrets);

    let mut env = vec![
        EnvVar::new(RUN_ID_VAR, &run_id),
        EnvVar::new(SERVER_MODE_VAR, &ctx.server_mode),
        EnvVar::new(&ctx.owner_var, &owner),
    ];
    env.extend(request_env);
    let non_empty = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
    Ok(RunSpec {
        run_id,
        definition_id: definition.definition_id.clone(),
        alias: definition.alias.clone(),
        group_name: definition.group_name.clone(),
        image: definition.image.clone(),
        repository_credentials: definition.repository_credentials.clone(),
        ports: definition.ports.clone(),
        cluster,
        engine,
        owner,
        command,
        resources,
        active_deadline_seconds: Some(
            request
                .active_deadline_seconds
                .unwrap_or(DEFAULT_ACTIVE_DEADLINE_SECONDS),
        ),
        env,
        definition_env: definition.env.clone(),
        description: non_empty(request.description).unwrap_or_else(|| definition.alias.clone()),
        node_lifecycle,
        labels: request.labels.unwrap_or_default(),
        tier: non_empty(request.tier),
        arch: non_empty(request.arch),
        service_account: non_empty(request.service_account),
        idempotence_key: non_empty(request.idempotence_key),
        template: None,
        secrets,
        retry,
        resources_note: None,
        lifecycle_note: None,
    })
}

/// Makes a Flotilla-style run id: a v4 UUID whose first characters are replaced
/// by `<engine>-`, 36 characters in all. `uuid` is the caller's fresh UUID text.
pub fn run_id_for(engine: Engine, uuid: &str) -> String {
    let prefix = format!("{engine}-");
    let tail = uuid.get(prefix.len()..).unwrap_or("");
    format!("{prefix}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::definition::DefinitionInput;

    fn definition() -> Definition {
        Definition::create(
            "examples-1".into(),
            DefinitionInput {
                alias: Some("hello".into()),
                image: Some("ubuntu:latest".into()),
                command: Some("echo hi".into()),
                resources: Resources {
                    memory: Some(512),
                    ..Resources::default()
                },
                env: Some(vec![EnvVar::new("USERNAME", "x")]),
                ..Default::default()
            },
        )
        .unwrap()
    }

    fn ctx() -> LaunchContext {
        LaunchContext {
            run_id: "local-1234".into(),
            engine: Engine::Local,
            server_mode: "local".into(),
            owner_var: DEFAULT_OWNER_VAR.into(),
            default_cluster: "default".into(),
            clusters: vec![Cluster::implicit("default", chrono::DateTime::UNIX_EPOCH)],
            requires_command: true,
            limits: LaunchLimits::Local,
            max_attempts: 3,
            max_memory: None,
        }
    }

    fn owned_by_me(request: LaunchRequest) -> LaunchRequest {
        LaunchRequest {
            run_tags: Some(RunTags {
                owner_id: Some("me".into()),
                ..Default::default()
            }),
            ..request
        }
    }

    #[test]
    fn the_owner_is_decided_with_every_other_problem_at_once() {
        let req = LaunchRequest {
            node_lifecycle: Some("cheap".into()),
            ..Default::default()
        };
        let err = build_spec(&definition(), req, OwnerRule::OwnerId, &ctx()).unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        assert!(err.problems[0].contains("owner_id"), "{err}");
    }

    #[test]
    fn the_run_env_is_the_reserved_variables_then_the_request_env() {
        let req = LaunchRequest {
            env: Some(vec![EnvVar::new("USERNAME", "me")]),
            ..Default::default()
        };
        let spec = build_spec(&definition(), owned_by_me(req), OwnerRule::OwnerId, &ctx()).unwrap();
        let names: Vec<_> = spec.env.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(
            names,
            [RUN_ID_VAR, SERVER_MODE_VAR, DEFAULT_OWNER_VAR, "USERNAME"]
        );
        assert_eq!(spec.env[0].value, "local-1234");
        assert_eq!(spec.env[2].value, "me");
        assert_eq!(spec.description, "hello");
        assert_eq!(spec.node_lifecycle, NodeLifecycle::Spot);
        assert_eq!(spec.owner, "me");
    }

    #[test]
    fn a_request_setting_a_reserved_variable_is_refused() {
        let req = LaunchRequest {
            env: Some(vec![EnvVar::new(RUN_ID_VAR, "x")]),
            ..Default::default()
        };
        let err =
            build_spec(&definition(), owned_by_me(req), OwnerRule::OwnerId, &ctx()).unwrap_err();
        assert!(err.to_string().contains("reserved"), "{err}");
    }

    #[test]
    fn every_problem_in_a_request_is_reported_at_once() {
        let req = LaunchRequest {
            node_lifecycle: Some("cheap".into()),
            cluster: Some("no such/cluster".into()),
            resources: Resources {
                memory: Some(0),
                ..Resources::default()
            },
            ..Default::default()
        };
        let err =
            build_spec(&definition(), owned_by_me(req), OwnerRule::OwnerId, &ctx()).unwrap_err();
        assert_eq!(err.problems.len(), 3, "{err}");
    }

    fn ecs() -> LaunchContext {
        LaunchContext {
            engine: Engine::Ecs,
            requires_command: false,
            limits: LaunchLimits::Ecs,
            max_attempts: 3,
            max_memory: None,
            ..ctx()
        }
    }

    fn sized(memory: Option<u64>, cpu: Option<u64>, gpu: Option<u64>) -> LaunchRequest {
        owned_by_me(LaunchRequest {
            resources: Resources {
                memory,
                cpu,
                gpu,
                ..Resources::default()
            },
            ..LaunchRequest::default()
        })
    }

    #[test]
    fn on_ecs_a_run_launches_with_the_fargate_size_its_memory_chooses_and_locally_as_asked() {
        let spec = build_spec(
            &definition(),
            sized(Some(4096), None, None),
            OwnerRule::OwnerId,
            &ecs(),
        )
        .unwrap();
        assert_eq!(
            (spec.resources.cpu, spec.resources.memory),
            (Some(512), Some(4096))
        );
        let spec = build_spec(
            &definition(),
            sized(None, None, None),
            OwnerRule::OwnerId,
            &ecs(),
        )
        .unwrap();
        assert_eq!(
            (spec.resources.cpu, spec.resources.memory),
            (Some(256), Some(512)),
            "the definition's memory, with the smallest cpu"
        );
        let spec = build_spec(
            &definition(),
            sized(Some(4096), None, Some(1)),
            OwnerRule::OwnerId,
            &ctx(),
        )
        .unwrap();
        assert_eq!(
            (
                spec.resources.cpu,
                spec.resources.memory,
                spec.resources.gpu
            ),
            (None, Some(4096), Some(1)),
            "a local run is not sized"
        );
    }

    /// An ECS deployment with a Kubernetes cluster `gpu` registered.
    fn ecs_and_eks() -> LaunchContext {
        let gpu = Cluster::create(
            crate::domain::cluster::ClusterInput {
                name: Some("gpu".into()),
                engine: Some("eks".into()),
                kubernetes: Some(crate::domain::cluster::KubernetesSettings {
                    endpoint: "https://k8s.example".into(),
                    certificate_authority: "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            chrono::DateTime::UNIX_EPOCH,
        )
        .unwrap();
        let mut ctx = ecs();
        ctx.run_id = "ecs-8a2e-9b7d-4c1e-8f2a-1b2c3d4e5f60".into();
        ctx.clusters.push(gpu);
        ctx
    }

    #[test]
    fn a_run_of_a_kubernetes_cluster_runs_on_eks_with_its_gpus_and_a_request_naming_another_engine_is_refused()
     {
        let mut request = sized(Some(30_000), Some(7000), Some(2));
        request.cluster = Some("gpu".into());
        request.engine = Some("eks".into());
        let spec = build_spec(
            &definition(),
            request.clone(),
            OwnerRule::OwnerId,
            &ecs_and_eks(),
        )
        .unwrap();
        assert_eq!(spec.engine, Engine::Eks);
        assert_eq!(spec.run_id, "eks-8a2e-9b7d-4c1e-8f2a-1b2c3d4e5f60");
        assert_eq!(
            spec.env[0].value, spec.run_id,
            "FLOTILLA_RUN_ID is the run's id"
        );
        assert_eq!(
            (
                spec.resources.memory,
                spec.resources.cpu,
                spec.resources.gpu
            ),
            (Some(30_000), Some(7000), Some(2)),
            "no Fargate sizes on Kubernetes"
        );
        // Asking for EKS on a cluster that is not: refused, naming the one that is.
        request.cluster = None;
        let err = build_spec(
            &definition(),
            request.clone(),
            OwnerRule::OwnerId,
            &ecs_and_eks(),
        )
        .unwrap_err();
        assert!(
            err.problems.iter().any(|p| p
                == "engine \"eks\": cluster \"default\" runs its runs on ecs: name one that does with \"cluster\": gpu"),
            "{:?}",
            err.problems
        );
        // With no Kubernetes cluster at all, the same request says so.
        let err = build_spec(&definition(), request, OwnerRule::OwnerId, &ecs()).unwrap_err();
        assert!(
            err.problems
                .iter()
                .any(|p| p.contains("no cluster here runs on eks")),
            "{:?}",
            err.problems
        );
    }

    #[test]
    fn on_ecs_an_override_fargate_does_not_take_or_a_gpu_is_refused_naming_the_cluster() {
        let err = build_spec(
            &definition(),
            sized(Some(4096), Some(256), Some(2)),
            OwnerRule::OwnerId,
            &ecs(),
        )
        .unwrap_err();
        assert_eq!(
            err.problems,
            [
                "memory 4096 MB on Fargate takes cpu 512, 1024 or 2048; cpu 256 takes memory 512, 1024 or 2048 MB",
                "gpu 2: cluster \"default\" has no GPUs, as its tasks run on Fargate, which has none: leave gpu out or set it to 0",
            ]
        );
        let mut gpu_definition = definition();
        gpu_definition.resources.gpu = Some(1);
        assert!(
            build_spec(
                &gpu_definition,
                sized(None, None, None),
                OwnerRule::OwnerId,
                &ecs()
            )
            .is_err(),
            "the definition's gpu is the run's"
        );
        assert!(
            build_spec(
                &gpu_definition,
                sized(None, None, Some(0)),
                OwnerRule::OwnerId,
                &ecs()
            )
            .is_ok(),
            "a request may ask for no gpu"
        );
    }

    #[test]
    fn v6_needs_an_owner_id_and_v2_an_email_and_team() {
        assert!(OwnerRule::OwnerId.owner(None).is_err());
        let tags = RunTags {
            owner_id: Some("  ".into()),
            ..Default::default()
        };
        assert!(OwnerRule::OwnerId.owner(Some(&tags)).is_err());
        let tags = RunTags {
            owner_email: Some("a@b".into()),
            team_name: Some("t".into()),
            ..Default::default()
        };
        assert_eq!(OwnerRule::EmailAndTeam.owner(Some(&tags)).unwrap(), "a@b");
        assert_eq!(OwnerRule::Anonymous.owner(None).unwrap(), V1_OWNER);
    }

    #[test]
    fn run_ids_carry_the_engine_and_are_36_characters() {
        let id = run_id_for(Engine::Local, "3f1c8a2e-9b7d-4c1e-8f2a-1b2c3d4e5f60");
        assert!(id.starts_with("local-"));
        assert_eq!(id.len(), 36);
    }

    #[test]
    fn a_requests_secret_replaces_the_definitions_of_its_name_and_env_of_that_name_gives_way() {
        let secret = |name: &str, from: &str| SecretRef {
            name: name.into(),
            value_from: from.into(),
        };
        let mut definition = definition();
        definition.secrets = vec![secret("API_KEY", "team/old"), secret("DB", "team/db")];
        let request = owned_by_me(LaunchRequest {
            secrets: Some(vec![secret("API_KEY", "team/new")]),
            env: Some(vec![EnvVar::new("DB", "plain")]),
            ..LaunchRequest::default()
        });
        let spec = build_spec(&definition, request, OwnerRule::OwnerId, &ctx()).unwrap();
        assert_eq!(spec.secrets, vec![secret("API_KEY", "team/new")]);
        let twice = owned_by_me(LaunchRequest {
            secrets: Some(vec![secret("K", "a"), secret("K", "b")]),
            ..LaunchRequest::default()
        });
        let refused = build_spec(&definition, twice, OwnerRule::OwnerId, &ctx()).unwrap_err();
        assert!(refused.to_string().contains("more than once"), "{refused}");
    }
}
