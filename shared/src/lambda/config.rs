//! Typed configuration of the functions, read once from the environment. The
//! variable names are defined here and nowhere else in Rust; the SAM template
//! and the README mirror them.

use crate::adapters::aws::AwsTarget;
use crate::adapters::ecs::EcsSettings;

/// DynamoDB table.
pub const TABLE: &str = "FLOTILLA_TABLE";
/// Prefix of the per-cluster SQS queue names.
pub const QUEUE_PREFIX: &str = "FLOTILLA_QUEUE_PREFIX";
/// EventBridge bus for run state changes.
pub const EVENT_BUS: &str = "FLOTILLA_EVENT_BUS";
/// CloudWatch Logs group of task output.
pub const LOG_GROUP: &str = "FLOTILLA_LOG_GROUP";
/// Comma-separated subnets of the tasks.
pub const SUBNETS: &str = "FLOTILLA_SUBNETS";
/// Comma-separated security groups of the tasks.
pub const SECURITY_GROUPS: &str = "FLOTILLA_SECURITY_GROUPS";
/// `true` to give tasks a public IP.
pub const ASSIGN_PUBLIC_IP: &str = "FLOTILLA_ASSIGN_PUBLIC_IP";
/// Task execution role.
pub const EXECUTION_ROLE_ARN: &str = "FLOTILLA_EXECUTION_ROLE_ARN";
/// Task role.
pub const TASK_ROLE_ARN: &str = "FLOTILLA_TASK_ROLE_ARN";
/// Prefix of ECS cluster names.
pub const ECS_CLUSTER_PREFIX: &str = "FLOTILLA_ECS_CLUSTER_PREFIX";
/// `startedBy` of tasks.
pub const STARTED_BY: &str = "FLOTILLA_STARTED_BY";
/// Value of FLOTILLA_SERVER_MODE in runs.
pub const MODE: &str = "FLOTILLA_MODE";
/// Cluster of runs that name none.
pub const DEFAULT_CLUSTER: &str = "FLOTILLA_DEFAULT_CLUSTER";
/// Attempts per run.
pub const MAX_ATTEMPTS: &str = "FLOTILLA_MAX_ATTEMPTS";
/// Minutes after which a QUEUED run is enqueued again.
pub const REQUEUE_AFTER_MINUTES: &str = "FLOTILLA_REQUEUE_AFTER_MINUTES";
/// An emulator's endpoint (tests, local set-ups); unset on AWS.
pub const AWS_ENDPOINT_URL: &str = "FLOTILLA_AWS_ENDPOINT_URL";
/// The clusters the stack has queues for, comma-separated.
pub const CLUSTERS: &str = "FLOTILLA_CLUSTERS";
/// Origins a browser may call the API from, comma-separated (CORS).
pub const CORS_ALLOWED_ORIGINS: &str = "FLOTILLA_CORS_ALLOWED_ORIGINS";
/// Region (set by Lambda).
pub const AWS_REGION: &str = "AWS_REGION";
/// JWT claims that name a caller, comma-separated, the first set wins.
pub const IDENTITY_CLAIMS: &str = "FLOTILLA_IDENTITY_CLAIMS";
/// Callers (JWT claim values or IAM principal ARNs) who are admins.
pub const ADMINS: &str = "FLOTILLA_ADMINS";
/// The JWT group (`cognito:groups`) whose members are admins.
pub const ADMIN_GROUP: &str = "FLOTILLA_ADMIN_GROUP";

/// Every variable the functions read, for documentation and template checks.
pub const ALL: [&str; 22] = [
    TABLE,
    QUEUE_PREFIX,
    EVENT_BUS,
    LOG_GROUP,
    SUBNETS,
    SECURITY_GROUPS,
    ASSIGN_PUBLIC_IP,
    EXECUTION_ROLE_ARN,
    TASK_ROLE_ARN,
    ECS_CLUSTER_PREFIX,
    STARTED_BY,
    MODE,
    DEFAULT_CLUSTER,
    MAX_ATTEMPTS,
    REQUEUE_AFTER_MINUTES,
    AWS_ENDPOINT_URL,
    CORS_ALLOWED_ORIGINS,
    CLUSTERS,
    AWS_REGION,
    IDENTITY_CLAIMS,
    ADMINS,
    ADMIN_GROUP,
];

/// The variables without which a function does not start.
pub const REQUIRED: [&str; 5] = [TABLE, QUEUE_PREFIX, EVENT_BUS, LOG_GROUP, SUBNETS];

/// A variable missing or unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Required and unset.
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    /// Set to something unusable.
    #[error("environment variable {name} is invalid: {problem}")]
    Invalid {
        /// Variable.
        name: &'static str,
        /// What is wrong.
        problem: String,
    },
}

/// The functions' configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where the AWS APIs are.
    pub aws: AwsTarget,
    /// DynamoDB table.
    pub table: String,
    /// SQS queue name prefix.
    pub queue_prefix: String,
    /// EventBridge bus.
    pub event_bus: String,
    /// ECS settings.
    pub ecs: EcsSettings,
    /// FLOTILLA_SERVER_MODE.
    pub mode: String,
    /// Default cluster.
    pub default_cluster: String,
    /// Attempts per run.
    pub max_attempts: u32,
    /// Minutes after which a QUEUED run is enqueued again.
    pub requeue_after_minutes: u32,
    /// The HTTP edge (CORS).
    pub http: crate::http::HttpOptions,
    /// The clusters the stack has queues for.
    pub clusters: Vec<String>,
    /// Who a caller is, from API Gateway's request context.
    pub identity: super::identity::IdentityRule,
}

impl Config {
    /// From the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// From any lookup (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let value = |name: &'static str| get(name).filter(|v| !v.trim().is_empty());
        let required = |name: &'static str| value(name).ok_or(ConfigError::Missing(name));
        let list = |name: &'static str| {
            value(name)
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        };
        let number = |name: &'static str, default: u32| match value(name) {
            None => Ok(default),
            Some(v) => v.trim().parse::<u32>().map_err(|_| ConfigError::Invalid {
                name,
                problem: format!("\"{v}\" is not a whole number"),
            }),
        };
        let subnets = list(SUBNETS);
        if subnets.is_empty() {
            return Err(ConfigError::Missing(SUBNETS));
        }
        let region = value(AWS_REGION);
        Ok(Self {
            aws: AwsTarget {
                endpoint_url: value(AWS_ENDPOINT_URL),
                region: region.clone(),
            },
            table: required(TABLE)?,
            queue_prefix: required(QUEUE_PREFIX)?,
            event_bus: required(EVENT_BUS)?,
            ecs: EcsSettings {
                cluster_prefix: value(ECS_CLUSTER_PREFIX).unwrap_or_default(),
                subnets,
                security_groups: list(SECURITY_GROUPS),
                assign_public_ip: value(ASSIGN_PUBLIC_IP)
                    .is_some_and(|v| v.eq_ignore_ascii_case("true")),
                execution_role_arn: value(EXECUTION_ROLE_ARN),
                task_role_arn: value(TASK_ROLE_ARN),
                log_group: required(LOG_GROUP)?,
                log_region: region.unwrap_or_else(|| "us-east-1".to_owned()),
                started_by: value(STARTED_BY).unwrap_or_else(|| "flotilla".to_owned()),
            },
            mode: value(MODE).unwrap_or_else(|| "prod".to_owned()),
            default_cluster: value(DEFAULT_CLUSTER).unwrap_or_else(|| "default".to_owned()),
            max_attempts: number(MAX_ATTEMPTS, 3)?.max(1),
            requeue_after_minutes: number(REQUEUE_AFTER_MINUTES, 5)?,
            clusters: list(CLUSTERS),
            identity: super::identity::IdentityRule {
                claims: match list(IDENTITY_CLAIMS) {
                    claims if claims.is_empty() => super::identity::IdentityRule::default().claims,
                    claims => claims,
                },
                admins: list(ADMINS),
                admin_group: value(ADMIN_GROUP).map(|g| g.trim().to_owned()),
            },
            http: crate::http::HttpOptions::with_cors_origins(
                &value(CORS_ALLOWED_ORIGINS).unwrap_or_default(),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_missing_variable_is_named() {
        let vars = env(&[(SUBNETS, "subnet-1")]);
        let err = Config::from_lookup(|k| vars.get(k).cloned()).unwrap_err();
        assert_eq!(err, ConfigError::Missing(TABLE));
        assert!(err.to_string().contains("FLOTILLA_TABLE"));
    }

    #[test]
    fn exactly_the_required_variables_are_required() {
        let all: HashMap<String, String> = REQUIRED
            .iter()
            .map(|k| (k.to_string(), "x".to_owned()))
            .collect();
        assert!(Config::from_lookup(|k| all.get(k).cloned()).is_ok());
        for name in REQUIRED {
            let mut vars = all.clone();
            vars.remove(name);
            assert_eq!(
                Config::from_lookup(|k| vars.get(k).cloned()).unwrap_err(),
                ConfigError::Missing(name)
            );
        }
    }

    #[test]
    fn a_complete_environment_reads_into_typed_settings() {
        let vars = env(&[
            (TABLE, "t"),
            (QUEUE_PREFIX, "flotilla-"),
            (EVENT_BUS, "bus"),
            (LOG_GROUP, "/flotilla/runs"),
            (SUBNETS, "subnet-1, subnet-2"),
            (MAX_ATTEMPTS, "5"),
            (AWS_REGION, "eu-west-1"),
        ]);
        let c = Config::from_lookup(|k| vars.get(k).cloned()).unwrap();
        assert_eq!(c.ecs.subnets, ["subnet-1", "subnet-2"]);
        assert_eq!(c.max_attempts, 5);
        assert_eq!(c.ecs.log_region, "eu-west-1");
        let bad = env(&[
            (TABLE, "t"),
            (QUEUE_PREFIX, "q"),
            (EVENT_BUS, "b"),
            (LOG_GROUP, "l"),
            (SUBNETS, "s"),
            (MAX_ATTEMPTS, "lots"),
        ]);
        assert!(matches!(
            Config::from_lookup(|k| bad.get(k).cloned()),
            Err(ConfigError::Invalid {
                name: MAX_ATTEMPTS,
                ..
            })
        ));
    }
}
