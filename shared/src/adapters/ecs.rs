//! The ECS execution engine (feature `aws`): launches one Fargate task per
//! attempt and stops it on request ([`EcsExecutionEngine`]; the api function
//! has only its stopping half, [`EcsStopper`]). State changes come back through
//! EventBridge (see [`super::ecs_events`]), not through this type.
//!
//! - A task definition is registered once per definition, image and resources
//!   (its family names all three) and reused: RunTask names the family, and
//!   only when ECS answers that it does not know it is it registered (so a
//!   launch is one request once the family exists).
//! - RunTask carries `clientToken = <run_id>-<attempt>`, so a retried call
//!   within ECS's 24 h window cannot start a second task; the submit handler's
//!   own state check covers the rest.
//! - The task group `flotilla:<run_id>:<attempt>` ties the task's events to
//!   its run; `startedBy` lets the EventBridge rule pick our tasks.
//! - The command runs as `bash -c <command>`, with the run's env, cpu and
//!   memory as overrides; logs go to CloudWatch Logs through `awslogs`.
//! - The task's size is the run's cpu and memory as Fargate takes them
//!   ([`crate::domain::fargate::size`]: a missing one is the smallest that
//!   fits the other); the API refuses any other size before a run is queued.
//! - A `spot` run asks for the `FARGATE_SPOT` capacity provider (its
//!   cluster must have it); an `ondemand` one keeps the `FARGATE` launch
//!   type, which needs no capacity provider on the cluster and ignores the
//!   cluster's default strategy, so it is never placed on spot capacity.
//! - A definition's `repository_credentials` (a Secrets Manager ARN) is the
//!   container's `repositoryCredentials`, for images from private registries.
//! - Launch failures are classified: capacity, throttling, `RESOURCE:*` and
//!   "no container instances" are retryable; anything else (a bad image, an
//!   invalid parameter, an unknown cluster) is permanent, with a message that
//!   says what to fix.

use async_trait::async_trait;
use aws_sdk_ecs::Client;
use aws_sdk_ecs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ecs::operation::run_task::{RunTaskError, RunTaskOutput};
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, CapacityProviderStrategyItem, Compatibility,
    ContainerDefinition, ContainerOverride, KeyValuePair, LaunchType, LogConfiguration, LogDriver,
    NetworkConfiguration, NetworkMode, RepositoryCredentials, TaskOverride,
};

use crate::adapters::ecs_events::task_group;
use crate::domain::fargate::{self, TaskSize};
use crate::domain::spec::NodeLifecycle;
use crate::error::EngineError;
use crate::ports::{ExecutionEngine, LaunchSpec, Launched};

/// Name of the one container in every task definition.
pub const CONTAINER_NAME: &str = "main";
/// The capacity provider of `spot` runs.
pub const SPOT_CAPACITY_PROVIDER: &str = "FARGATE_SPOT";
/// Longest `clientToken` ECS accepts
/// (<https://docs.aws.amazon.com/AmazonECS/latest/APIReference/ECS_Idempotency.html>).
pub const MAX_CLIENT_TOKEN_LEN: usize = 64;

/// Where and how tasks run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcsSettings {
    /// ECS cluster of a Flotilla cluster: `<cluster_prefix><cluster>`.
    pub cluster_prefix: String,
    /// Subnets of the tasks (awsvpc).
    pub subnets: Vec<String>,
    /// Security groups of the tasks.
    pub security_groups: Vec<String>,
    /// Whether tasks get a public IP (needed to pull images without a NAT).
    pub assign_public_ip: bool,
    /// Role ECS uses to pull images and write logs.
    pub execution_role_arn: Option<String>,
    /// Role the job itself runs with.
    pub task_role_arn: Option<String>,
    /// CloudWatch Logs group of task output.
    pub log_group: String,
    /// Region of that log group.
    pub log_region: String,
    /// `startedBy` of every task, matched by the EventBridge rule.
    pub started_by: String,
}

/// Launches runs as ECS tasks.
#[derive(Debug, Clone)]
pub struct EcsExecutionEngine {
    client: Client,
    settings: EcsSettings,
}

/// Stops the ECS task `task_id` of `run_id` (`StopTask`).
async fn stop_task(client: &Client, run_id: &str, task_id: &str) -> Result<(), EngineError> {
    let cluster = cluster_of_task(task_id)
        .ok_or_else(|| permanent(format!("{task_id} is not an ECS task ARN")))?
        .to_owned();
    client
        .stop_task()
        .cluster(&cluster)
        .task(task_id)
        .reason(format!("flotilla: stop requested for run {run_id}"))
        .send()
        .await
        .map_err(|e| classify(e, "stop the task", &cluster))?;
    Ok(())
}

/// The ECS engine's stopping half, for a function that stops tasks and
/// launches none (the api: the submit function launches, the retry
/// function looks tasks up). Its `launch` refuses, saying which function
/// launches; it links no task definition or `RunTask` code into the api.
#[derive(Debug, Clone)]
pub struct EcsStopper {
    client: Client,
}

impl EcsStopper {
    /// Stops tasks with `client`.
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl ExecutionEngine for EcsStopper {
    async fn launch(&self, spec: &LaunchSpec) -> Result<Launched, EngineError> {
        Err(permanent(format!(
            "run {} was handed to the api function, which launches no task: the submit function launches runs from their cluster's queue",
            spec.run_id
        )))
    }

    async fn stop(&self, _cluster: &str, run_id: &str, task_id: &str) -> Result<(), EngineError> {
        stop_task(&self.client, run_id, task_id).await
    }
}

/// The ECS cluster name inside a task ARN
/// (`arn:aws:ecs:<region>:<account>:task/<cluster>/<id>`).
pub fn cluster_of_task(task_arn: &str) -> Option<&str> {
    let (_, path) = task_arn.split_once(":task/")?;
    let (cluster, _) = path.split_once('/')?;
    Some(cluster)
}

/// The Fargate size of `spec`'s task, or why it has none.
pub fn task_size(spec: &LaunchSpec) -> Result<TaskSize, String> {
    fargate::size(spec.resources.cpu, spec.resources.memory)
}

/// A task definition family for a definition, image, resources, secrets
/// and registry credentials (which ECS takes only in a task definition,
/// never as overrides); ECS allows letters, digits, `-` and `_`, up to 255
/// characters.
pub fn family(spec: &LaunchSpec) -> String {
    use md5::{Digest, Md5};
    let size = task_size(spec).unwrap_or(TaskSize {
        cpu: spec.resources.cpu.unwrap_or(fargate::SMALLEST.cpu),
        memory: spec.resources.memory.unwrap_or(fargate::SMALLEST.memory),
    });
    let mut resources = format!(
        "{}|{}|{}|{}",
        spec.image,
        size.cpu,
        size.memory,
        spec.resources.gpu.unwrap_or(0)
    );
    for secret in &spec.secrets {
        resources.push_str(&format!("|{}={}", secret.name, secret.value_from));
    }
    // Absent, it adds nothing: the families of runs without it stay as they were.
    if let Some(arn) = &spec.repository_credentials {
        resources.push_str(&format!("|registry={arn}"));
    }
    let digest = hex::encode(Md5::digest(resources.as_bytes()));
    let definition: String = spec
        .definition_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(200)
        .collect();
    format!("flotilla-{definition}-{}", &digest[..12])
}

/// Whether a failed launch is worth retrying, from the error code and message.
pub fn is_retryable(code: Option<&str>, message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    matches!(
        code,
        Some(
            "ThrottlingException"
                | "ServerException"
                | "ServiceUnavailableException"
                | "LimitExceededException"
        )
    ) || message.starts_with("RESOURCE:")
        || lower.contains("no container instances")
        || (lower.contains("capacity") && !is_unassociated_capacity_provider_message(message))
        || lower.contains("rate exceeded")
}

fn permanent(message: String) -> EngineError {
    EngineError::Permanent {
        message,
        source: None,
    }
}

fn classify<E>(e: aws_sdk_ecs::error::SdkError<E>, action: &str, cluster: &str) -> EngineError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = e.code().map(str::to_owned);
    let message = e.message().unwrap_or_default().to_owned();
    let service = matches!(e, aws_sdk_ecs::error::SdkError::ServiceError(_));
    let server_error = e
        .raw_response()
        .is_some_and(|r| r.status().is_server_error());
    if !service || server_error || is_retryable(code.as_deref(), &message) {
        return EngineError::Retryable {
            message: format!(
                "{action} failed: {}",
                if message.is_empty() {
                    e.to_string()
                } else {
                    message
                }
            ),
            source: Some(Box::new(e)),
        };
    }
    let what = match code.as_deref() {
        Some("ClusterNotFoundException") => format!(
            "ECS cluster \"{cluster}\" does not exist: create it, or launch the run on a cluster that does"
        ),
        _ => format!(
            "ECS refused to {action}: {message} ({}): check the definition's image, cpu and memory",
            code.unwrap_or_default()
        ),
    };
    EngineError::Permanent {
        message: what,
        source: Some(Box::new(e)),
    }
}

impl EcsExecutionEngine {
    /// An engine launching tasks as `settings` say.
    pub fn new(client: Client, settings: EcsSettings) -> Self {
        Self { client, settings }
    }

    /// The ECS cluster of a Flotilla cluster.
    pub fn ecs_cluster(&self, cluster: &str) -> String {
        format!("{}{cluster}", self.settings.cluster_prefix)
    }

    /// Registers the task definition of `spec`'s family, of `size`, and
    /// returns its ARN.
    async fn register(&self, spec: &LaunchSpec, size: TaskSize) -> Result<String, EngineError> {
        let family = family(spec);
        let s = &self.settings;
        let logs = LogConfiguration::builder()
            .log_driver(LogDriver::Awslogs)
            .options("awslogs-group", &s.log_group)
            .options("awslogs-region", &s.log_region)
            .options("awslogs-stream-prefix", "flotilla")
            .build()
            .map_err(|e| permanent(format!("invalid log configuration: {e}")))?;
        let TaskSize { cpu, memory } = size;
        let credentials = spec
            .repository_credentials
            .as_ref()
            .map(|arn| {
                RepositoryCredentials::builder()
                    .credentials_parameter(arn)
                    .build()
            })
            .transpose()
            .map_err(|e| permanent(format!("invalid repository_credentials: {e}")))?;
        // The one container may use the whole task.
        let container = ContainerDefinition::builder()
            .name(CONTAINER_NAME)
            .image(&spec.image)
            .essential(true)
            .cpu(i32::try_from(cpu).unwrap_or(i32::MAX))
            .memory(i32::try_from(memory).unwrap_or(i32::MAX))
            .log_configuration(logs)
            .set_repository_credentials(credentials)
            .set_secrets(Some(
                spec.secrets
                    .iter()
                    .map(|s| {
                        aws_sdk_ecs::types::Secret::builder()
                            .name(&s.name)
                            .value_from(&s.value_from)
                            .build()
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| permanent(format!("invalid secret: {e}")))?,
            ))
            .build();
        let registered = self
            .client
            .register_task_definition()
            .family(&family)
            .requires_compatibilities(Compatibility::Fargate)
            .network_mode(NetworkMode::Awsvpc)
            .cpu(cpu.to_string())
            .memory(memory.to_string())
            .set_execution_role_arn(s.execution_role_arn.clone())
            .set_task_role_arn(s.task_role_arn.clone())
            .container_definitions(container)
            .send()
            .await
            .map_err(|e| classify(e, "register the task definition", &spec.cluster))?;
        let arn = registered
            .task_definition()
            .and_then(|t| t.task_definition_arn())
            .ok_or_else(|| permanent("RegisterTaskDefinition returned no ARN".into()))?;
        Ok(arn.to_owned())
    }

    /// One RunTask call for `spec` of `size` with `task_definition` (a
    /// family or an ARN).
    async fn run_task(
        &self,
        spec: &LaunchSpec,
        size: TaskSize,
        task_definition: &str,
    ) -> Result<RunTaskOutput, RunTaskFailure> {
        let cluster = self.ecs_cluster(&spec.cluster);
        let s = &self.settings;
        let vpc = AwsVpcConfiguration::builder()
            .set_subnets(Some(s.subnets.clone()))
            .set_security_groups(Some(s.security_groups.clone()))
            .assign_public_ip(if s.assign_public_ip {
                AssignPublicIp::Enabled
            } else {
                AssignPublicIp::Disabled
            })
            .build()
            .map_err(|e| {
                RunTaskFailure::Engine(permanent(format!("invalid network configuration: {e}")))
            })?;
        let env = spec
            .env
            .iter()
            .map(|v| {
                KeyValuePair::builder()
                    .name(&v.name)
                    .value(&v.value)
                    .build()
            })
            .collect();
        let container = ContainerOverride::builder()
            .name(CONTAINER_NAME)
            .set_command(
                spec.command
                    .as_ref()
                    .map(|c| vec!["bash".to_owned(), "-c".to_owned(), c.clone()]),
            )
            .set_environment(Some(env))
            .build();
        let overrides = TaskOverride::builder()
            .container_overrides(container)
            .cpu(size.cpu.to_string())
            .memory(size.memory.to_string())
            .build();
        let token: String = format!("{}-{}", spec.run_id, spec.attempt)
            .chars()
            .take(MAX_CLIENT_TOKEN_LEN)
            .collect();
        // A task names a launch type or a capacity provider strategy, never both.
        let (launch_type, strategy) = match spec.node_lifecycle {
            NodeLifecycle::Spot => (
                None,
                Some(vec![
                    CapacityProviderStrategyItem::builder()
                        .capacity_provider(SPOT_CAPACITY_PROVIDER)
                        .weight(1)
                        .build()
                        .map_err(|e| {
                            RunTaskFailure::Engine(permanent(format!(
                                "invalid capacity provider strategy: {e}"
                            )))
                        })?,
                ]),
            ),
            NodeLifecycle::Ondemand => (Some(LaunchType::Fargate), None),
        };
        self.client
            .run_task()
            .cluster(&cluster)
            .task_definition(task_definition)
            .set_launch_type(launch_type)
            .set_capacity_provider_strategy(strategy)
            .network_configuration(
                NetworkConfiguration::builder()
                    .awsvpc_configuration(vpc)
                    .build(),
            )
            .client_token(token)
            .started_by(&s.started_by)
            .group(task_group(&spec.run_id, spec.attempt))
            .overrides(overrides)
            .count(1)
            .send()
            .await
            .map_err(|e| {
                if is_missing_task_definition(&e) {
                    RunTaskFailure::MissingTaskDefinition
                } else if is_unassociated_capacity_provider(&e) {
                    RunTaskFailure::Engine(permanent(format!(
                        "ECS cluster \"{cluster}\" has no {SPOT_CAPACITY_PROVIDER} capacity provider, which spot runs need: add it to the cluster's capacity providers, or launch with \"node_lifecycle\": \"ondemand\""
                    )))
                } else {
                    RunTaskFailure::Engine(classify(e, "run the task", &cluster))
                }
            })
    }
}

/// Why a RunTask call failed.
enum RunTaskFailure {
    /// The task definition (family) is not registered.
    MissingTaskDefinition,
    /// Anything else, classified.
    Engine(EngineError),
}

/// ECS's answer to a capacity provider strategy naming a provider the
/// cluster does not have ("… cannot contain a capacity provider that is not
/// associated with the cluster …"). It speaks of capacity, but retrying
/// never helps.
fn is_unassociated_capacity_provider<R>(e: &SdkError<RunTaskError, R>) -> bool {
    e.code() == Some("InvalidParameterException")
        && e.message()
            .is_some_and(is_unassociated_capacity_provider_message)
}

fn is_unassociated_capacity_provider_message(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("capacity provider") && lower.contains("not associated")
}

/// ECS's answer to a task definition it does not know.
fn is_missing_task_definition<R>(e: &SdkError<RunTaskError, R>) -> bool {
    e.code() == Some("ClientException")
        && e.message().is_some_and(|m| {
            m.to_ascii_lowercase()
                .contains("unable to describe task definition")
        })
}

#[async_trait]
impl ExecutionEngine for EcsExecutionEngine {
    async fn launch(&self, spec: &LaunchSpec) -> Result<Launched, EngineError> {
        // Refused by the API before a run is queued; a run queued before
        // that check existed is told what to change.
        let size = task_size(spec).map_err(|problem| {
            permanent(format!(
                "{problem}: launch it again with a size Fargate takes"
            ))
        })?;
        let family = family(spec);
        // A family's content never changes (its name hashes it), so its latest
        // revision is the one to run: try it before registering anything, which
        // keeps a launch to one request in the common case.
        let out = match self.run_task(spec, size, &family).await {
            Ok(out) => out,
            Err(RunTaskFailure::MissingTaskDefinition) => {
                let arn = self.register(spec, size).await?;
                self.run_task(spec, size, &arn).await.map_err(|e| match e {
                    RunTaskFailure::Engine(e) => e,
                    RunTaskFailure::MissingTaskDefinition => EngineError::Retryable {
                        message: format!(
                            "task definition {family} was registered but ECS does not find it yet"
                        ),
                        source: None,
                    },
                })?
            }
            Err(RunTaskFailure::Engine(e)) => return Err(e),
        };
        if let Some(task_arn) = out.tasks().first().and_then(|t| t.task_arn()) {
            return Ok(Launched {
                limits: None,
                task_id: task_arn.to_owned(),
                running_on: None,
            });
        }
        let reasons: Vec<String> = out
            .failures()
            .iter()
            .map(|f| {
                format!(
                    "{}{}",
                    f.reason().unwrap_or("unknown"),
                    f.detail().map(|d| format!(" ({d})")).unwrap_or_default()
                )
            })
            .collect();
        let message = format!("ECS started no task: {}", reasons.join("; "));
        if reasons.iter().any(|r| is_retryable(None, r)) || reasons.is_empty() {
            Err(EngineError::Retryable {
                message,
                source: None,
            })
        } else {
            Err(permanent(message))
        }
    }

    async fn stop(&self, _cluster: &str, run_id: &str, task_id: &str) -> Result<(), EngineError> {
        stop_task(&self.client, run_id, task_id).await
    }

    /// One `DescribeTasks` call. A task ECS answers with a failure
    /// (`MISSING`), or a cluster ECS does not have, is unknown.
    async fn look_up(
        &self,
        cluster: &str,
        task_ids: &[String],
        seen: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<Vec<crate::ports::TaskLookup>>, EngineError> {
        use crate::ports::TaskLookup;
        let cluster = self.ecs_cluster(cluster);
        let answer = self
            .client
            .describe_tasks()
            .cluster(&cluster)
            .set_tasks(Some(task_ids.to_vec()))
            .send()
            .await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) if e.code() == Some("ClusterNotFoundException") => {
                let reason = format!("ECS has no cluster \"{cluster}\" any more");
                return Ok(Some(
                    task_ids
                        .iter()
                        .map(|task_id| TaskLookup::Unknown {
                            task_id: task_id.clone(),
                            reason: reason.clone(),
                        })
                        .collect(),
                ));
            }
            Err(e) => return Err(classify(e, "describe tasks", &cluster)),
        };
        let mut found = Vec::with_capacity(task_ids.len());
        for task in answer.tasks() {
            let task = described_task(task, &cluster);
            found.push(TaskLookup::Known {
                update: crate::adapters::ecs_events::task_update(&task, seen),
                task_id: task.task_arn,
            });
        }
        for failure in answer.failures() {
            let Some(task_id) = failure.arn() else {
                continue;
            };
            found.push(TaskLookup::Unknown {
                task_id: task_id.to_owned(),
                reason: format!(
                    "ECS answered {} for it",
                    failure.reason().unwrap_or("nothing")
                ),
            });
        }
        // A task ECS left out of both lists is as unknown as a failure.
        let answered: std::collections::HashSet<String> = found
            .iter()
            .map(|f| match f {
                TaskLookup::Known { task_id, .. } | TaskLookup::Unknown { task_id, .. } => {
                    task_id.clone()
                }
            })
            .collect();
        for task_id in task_ids {
            if !answered.contains(task_id) {
                found.push(TaskLookup::Unknown {
                    task_id: task_id.clone(),
                    reason: "ECS did not answer for it".to_owned(),
                });
            }
        }
        Ok(Some(found))
    }
}

/// A task `DescribeTasks` gave, read as a state change event's task is.
fn described_task(
    task: &aws_sdk_ecs::types::Task,
    cluster: &str,
) -> crate::adapters::ecs_events::EcsTask {
    use crate::adapters::ecs_events::{EcsContainer, EcsTask};
    let time = |t: Option<&aws_sdk_ecs::primitives::DateTime>| {
        t.and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
    };
    EcsTask {
        task_arn: task.task_arn().unwrap_or_default().to_owned(),
        cluster_arn: task.cluster_arn().unwrap_or(cluster).to_owned(),
        last_status: task.last_status().unwrap_or_default().to_owned(),
        group: task.group().map(str::to_owned),
        started_by: task.started_by().map(str::to_owned),
        version: u64::try_from(task.version()).ok().filter(|v| *v > 0),
        started_at: time(task.started_at()),
        stopped_at: time(task.stopped_at()),
        stop_code: task.stop_code().map(|c| c.as_str().to_owned()),
        stopped_reason: task.stopped_reason().map(str::to_owned),
        containers: task
            .containers()
            .iter()
            .map(|c| EcsContainer {
                name: c.name().unwrap_or_default().to_owned(),
                exit_code: c.exit_code().map(i64::from),
                reason: c.reason().map(str::to_owned),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::EnvVar;
    use crate::testing::counting::RequestCounter;
    use crate::testing::moto::Moto;

    fn spec(run_id: &str, attempt: u32) -> LaunchSpec {
        LaunchSpec {
            run_id: run_id.into(),
            attempt,
            definition_id: "examples-1234".into(),
            cluster: "default".into(),
            image: "ubuntu:latest".into(),
            command: Some("echo \"hello ${USERNAME}\"".into()),
            env: vec![
                EnvVar::new("USERNAME", "me"),
                EnvVar::new("FLOTILLA_RUN_ID", run_id),
            ],
            resources: crate::domain::spec::Resources {
                memory: Some(1024),
                cpu: Some(512),
                ..Default::default()
            },
            active_deadline_seconds: Some(60),
            secrets: vec![],
            node_lifecycle: NodeLifecycle::Ondemand,
            repository_credentials: None,
            ports: vec![],
            arch: None,
            service_account: None,
            engine: crate::domain::spec::Engine::Ecs,
        }
    }

    #[test]
    fn launch_failures_are_classified_retryable_or_permanent() {
        assert!(is_retryable(Some("ThrottlingException"), "Rate exceeded"));
        assert!(is_retryable(None, "RESOURCE:MEMORY"));
        assert!(is_retryable(
            Some("InvalidParameterException"),
            "No Container Instances were found in your cluster."
        ));
        assert!(is_retryable(Some("ServerException"), "boom"));
        assert!(!is_retryable(Some("ClientException"), "Invalid image name"));
        assert!(!is_retryable(
            Some("InvalidParameterException"),
            "Invalid setting for memory"
        ));
        assert!(is_retryable(
            None,
            "Capacity is unavailable at this time. Please try again later or in a different availability zone"
        ));
        assert!(!is_retryable(
            Some("InvalidParameterException"),
            "The specified capacity provider strategy cannot contain a capacity provider that is not associated with the cluster."
        ));
    }

    #[test]
    fn a_task_is_sized_as_fargate_takes_its_run_and_its_registry_credentials_make_a_family() {
        let mut memory_only = spec("r", 1);
        memory_only.resources.cpu = None;
        memory_only.resources.memory = Some(4096);
        assert_eq!(
            task_size(&memory_only),
            Ok(TaskSize {
                cpu: 512,
                memory: 4096
            })
        );
        let mut stated = memory_only.clone();
        stated.resources.cpu = Some(512);
        assert_eq!(
            family(&memory_only),
            family(&stated),
            "a size is one family however it was asked for"
        );
        let mut private = spec("r", 1);
        private.repository_credentials =
            Some("arn:aws:secretsmanager:us-east-1:123456789012:secret:flotilla/registry".into());
        assert_ne!(family(&private), family(&spec("r", 1)));
        let mut spot = spec("r", 1);
        spot.node_lifecycle = NodeLifecycle::Spot;
        assert_eq!(
            family(&spot),
            family(&spec("r", 1)),
            "capacity is chosen per task, not per task definition"
        );
    }

    #[test]
    fn the_family_names_definition_image_and_resources() {
        let a = spec("r", 1);
        let mut b = a.clone();
        assert_eq!(family(&a), family(&b));
        b.resources.memory = Some(2048);
        assert_ne!(family(&a), family(&b));
        assert!(family(&a).starts_with("flotilla-examples-1234-"));
        assert_eq!(
            cluster_of_task("arn:aws:ecs:us-east-1:1:task/flotilla-default/abc"),
            Some("flotilla-default")
        );
        assert_eq!(cluster_of_task("not-an-arn"), None);
    }

    async fn engine(moto: &Moto) -> (EcsExecutionEngine, Client) {
        let (engine, client, _) = counted_engine(moto).await;
        (engine, client)
    }

    /// An engine whose every request is recorded, with its body.
    async fn counted_engine(moto: &Moto) -> (EcsExecutionEngine, Client, RequestCounter) {
        let counter = RequestCounter::default();
        let client = Client::from_conf(
            aws_sdk_ecs::config::Builder::from(&moto.sdk_config().await)
                .interceptor(counter.clone())
                .build(),
        );
        client
            .create_cluster()
            .cluster_name("flotilla-default")
            .send()
            .await
            .unwrap();
        let (subnet, group) = moto.default_network();
        let settings = EcsSettings {
            cluster_prefix: "flotilla-".into(),
            subnets: vec![subnet],
            security_groups: vec![group],
            assign_public_ip: false,
            execution_role_arn: Some("arn:aws:iam::123456789012:role/exec".into()),
            task_role_arn: None,
            log_group: "/flotilla/runs".into(),
            log_region: "us-east-1".into(),
            started_by: "flotilla".into(),
        };
        (
            EcsExecutionEngine::new(client.clone(), settings),
            client,
            counter,
        )
    }

    /// The one RunTask body `counter` saw since it was reset.
    fn run_task_body(counter: &RequestCounter) -> serde_json::Value {
        let bodies = counter.bodies("RunTask");
        assert_eq!(bodies.len(), 1, "{bodies:?}");
        bodies[0].clone()
    }

    #[tokio::test]
    #[ignore = "needs moto: scripts/test installs it and runs these"]
    async fn a_spot_run_asks_for_fargate_spot_and_an_ondemand_run_for_the_fargate_launch_type() {
        let moto = Moto::start();
        let (engine, client, counter) = counted_engine(&moto).await;
        let mut spot = spec("ecs-spot-1", 1);
        spot.node_lifecycle = NodeLifecycle::Spot;
        // The first launch also registers the family; count from the second.
        engine.launch(&spec("ecs-warm-1", 1)).await.unwrap();
        counter.reset();
        let launched = engine.launch(&spot).await.unwrap();
        let body = run_task_body(&counter);
        assert_eq!(
            body["capacityProviderStrategy"],
            serde_json::json!([{"capacityProvider": "FARGATE_SPOT", "weight": 1}]),
            "{body}"
        );
        assert!(body.get("launchType").is_none(), "never both: {body}");
        let described = client
            .describe_tasks()
            .cluster("flotilla-default")
            .tasks(&launched.task_id)
            .send()
            .await
            .unwrap();
        assert_eq!(
            described.tasks()[0].capacity_provider_name(),
            Some("FARGATE_SPOT")
        );

        counter.reset();
        engine.launch(&spec("ecs-ondemand-1", 1)).await.unwrap();
        let body = run_task_body(&counter);
        assert_eq!(body["launchType"], "FARGATE", "{body}");
        assert!(body.get("capacityProviderStrategy").is_none(), "{body}");
    }

    #[tokio::test]
    #[ignore = "needs moto: scripts/test installs it and runs these"]
    async fn registry_credentials_and_the_size_memory_chooses_reach_the_registered_task_definition()
    {
        let moto = Moto::start();
        let (engine, client, counter) = counted_engine(&moto).await;
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:flotilla/registry-AbCdEf";
        let mut private = spec("ecs-private-1", 1);
        private.image = "registry.example.com/team/job:1".into();
        private.repository_credentials = Some(arn.into());
        private.resources.cpu = None;
        private.resources.memory = Some(4096);
        engine.launch(&private).await.unwrap();
        let described = client
            .describe_task_definition()
            .task_definition(family(&private))
            .send()
            .await
            .unwrap();
        let definition = described.task_definition().unwrap();
        assert_eq!(
            (definition.cpu(), definition.memory()),
            (Some("512"), Some("4096"))
        );
        let container = &definition.container_definitions()[0];
        assert_eq!(
            container
                .repository_credentials()
                .map(|c| c.credentials_parameter()),
            Some(arn)
        );
        let registered = counter.bodies("RegisterTaskDefinition");
        assert_eq!(
            registered[0]["containerDefinitions"][0]["repositoryCredentials"],
            serde_json::json!({"credentialsParameter": arn})
        );
        let run = counter.bodies("RunTask");
        let overrides = &run[run.len() - 1]["overrides"];
        assert_eq!(
            (&overrides["cpu"], &overrides["memory"]),
            (&serde_json::json!("512"), &serde_json::json!("4096"))
        );

        let without = client
            .describe_task_definition()
            .task_definition({
                engine.launch(&spec("ecs-public-1", 1)).await.unwrap();
                family(&spec("ecs-public-1", 1))
            })
            .send()
            .await
            .unwrap();
        assert!(
            without.task_definition().unwrap().container_definitions()[0]
                .repository_credentials()
                .is_none()
        );
    }

    #[tokio::test]
    #[ignore = "needs moto: scripts/test installs it and runs these"]
    async fn a_queued_run_of_a_size_fargate_does_not_take_fails_for_good_before_asking_ecs() {
        let moto = Moto::start();
        let (engine, _, counter) = counted_engine(&moto).await;
        let mut odd = spec("ecs-odd-1", 1);
        odd.resources.cpu = Some(256);
        odd.resources.memory = Some(4096);
        counter.reset();
        match engine.launch(&odd).await {
            Err(EngineError::Permanent { message, .. }) => assert!(
                message.starts_with("memory 4096 MB on Fargate takes cpu 512, 1024 or 2048"),
                "{message}"
            ),
            other => panic!("expected a permanent error, got {other:?}"),
        }
        assert!(counter.requests().is_empty(), "{:?}", counter.requests());
    }

    #[tokio::test]
    #[ignore = "needs moto: scripts/test installs it and runs these"]
    async fn ecs_launches_a_task_tagged_with_its_run_and_registers_the_task_definition_once() {
        let moto = Moto::start();
        let (engine, client) = engine(&moto).await;
        let first = engine.launch(&spec("ecs-run-1", 1)).await.unwrap();
        let second = engine.launch(&spec("ecs-run-2", 1)).await.unwrap();
        assert_ne!(first.task_id, second.task_id);
        assert_eq!(
            first.running_on, None,
            "an ECS task is PENDING until EventBridge says otherwise"
        );
        let families = client.list_task_definitions().send().await.unwrap();
        assert_eq!(
            families.task_definition_arns().len(),
            1,
            "one task definition for the same definition and resources"
        );

        let described = client
            .describe_tasks()
            .cluster("flotilla-default")
            .tasks(&first.task_id)
            .send()
            .await
            .unwrap();
        let task = &described.tasks()[0];
        assert_eq!(task.group(), Some("flotilla:ecs-run-1:1"));
        assert_eq!(task.started_by(), Some("flotilla"));
        let container = &task.overrides().unwrap().container_overrides()[0];
        assert_eq!(
            container.command(),
            ["bash", "-c", "echo \"hello ${USERNAME}\""]
        );
        assert!(
            container
                .environment()
                .iter()
                .any(|kv| kv.name() == Some("USERNAME") && kv.value() == Some("me"))
        );

        engine
            .stop("default", "ecs-run-1", &first.task_id)
            .await
            .unwrap();
        let described = client
            .describe_tasks()
            .cluster("flotilla-default")
            .tasks(&first.task_id)
            .send()
            .await
            .unwrap();
        assert_eq!(described.tasks()[0].desired_status(), Some("STOPPED"));
    }

    #[tokio::test]
    #[ignore = "needs moto: scripts/test installs it and runs these"]
    async fn secrets_go_into_the_task_definition_by_reference_and_never_into_the_overrides() {
        let moto = Moto::start();
        let (engine, client) = engine(&moto).await;
        let arn = "arn:aws:ssm:us-east-1:123456789012:parameter/flotilla/team/api-key";
        let mut with_secret = spec("ecs-secret-1", 1);
        with_secret.secrets = vec![crate::domain::SecretRef {
            name: "API_KEY".into(),
            value_from: arn.into(),
        }];
        assert_ne!(
            family(&with_secret),
            family(&spec("ecs-secret-1", 1)),
            "a task definition per set of secrets"
        );
        let launched = engine.launch(&with_secret).await.unwrap();
        let definition = client
            .describe_task_definition()
            .task_definition(family(&with_secret))
            .send()
            .await
            .unwrap();
        let container = &definition
            .task_definition()
            .unwrap()
            .container_definitions()[0];
        let secrets: Vec<(&str, &str)> = container
            .secrets()
            .iter()
            .map(|s| (s.name(), s.value_from()))
            .collect();
        assert_eq!(secrets, vec![("API_KEY", arn)]);
        let described = client
            .describe_tasks()
            .cluster("flotilla-default")
            .tasks(&launched.task_id)
            .send()
            .await
            .unwrap();
        let overrides = &described.tasks()[0]
            .overrides()
            .unwrap()
            .container_overrides()[0];
        assert!(
            overrides
                .environment()
                .iter()
                .all(|v| v.name() != Some("API_KEY")),
            "a secret is never an override's plain variable"
        );
    }

    #[tokio::test]
    #[ignore = "needs moto: scripts/test installs it and runs these"]
    async fn launching_on_a_cluster_that_does_not_exist_is_a_permanent_error_naming_it() {
        let moto = Moto::start();
        let (engine, _) = engine(&moto).await;
        let mut s = spec("ecs-run-3", 1);
        s.cluster = "nowhere".into();
        match engine.launch(&s).await {
            Err(EngineError::Permanent { message, .. }) => {
                assert!(message.contains("flotilla-nowhere"), "{message}");
            }
            other => panic!("expected a permanent error, got {other:?}"),
        }
    }
}
