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
/// S3 bucket the logs of Kubernetes clusters' runs are archived in.
pub const LOG_BUCKET: &str = "FLOTILLA_LOG_BUCKET";
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
/// The most memory (MB) a run's memory may grow to after running out.
pub const MAX_MEMORY_MB: &str = "FLOTILLA_MAX_MEMORY_MB";
/// Minutes after which a QUEUED run is enqueued again.
pub const REQUEUE_AFTER_MINUTES: &str = "FLOTILLA_REQUEUE_AFTER_MINUTES";
/// Minutes without an event after which a PENDING or RUNNING run's task is
/// looked up in ECS (a state change event may have been lost).
pub const RECONCILE_AFTER_MINUTES: &str = "FLOTILLA_RECONCILE_AFTER_MINUTES";
/// Milliseconds an AWS SDK call may take to connect.
pub const AWS_CONNECT_TIMEOUT_MS: &str = "FLOTILLA_AWS_CONNECT_TIMEOUT_MS";
/// Milliseconds one attempt of an AWS SDK call may take.
pub const AWS_ATTEMPT_TIMEOUT_MS: &str = "FLOTILLA_AWS_ATTEMPT_TIMEOUT_MS";
/// Milliseconds an AWS SDK call, retries included, may take.
pub const AWS_OPERATION_TIMEOUT_MS: &str = "FLOTILLA_AWS_OPERATION_TIMEOUT_MS";
/// An emulator's endpoint (tests, local set-ups); unset on AWS.
pub const AWS_ENDPOINT_URL: &str = "FLOTILLA_AWS_ENDPOINT_URL";
/// The clusters the stack has queues for, comma-separated.
pub const CLUSTERS: &str = "FLOTILLA_CLUSTERS";
/// Origins a browser may call the API from, comma-separated (CORS).
pub const CORS_ALLOWED_ORIGINS: &str = "FLOTILLA_CORS_ALLOWED_ORIGINS";
/// Region (set by Lambda).
pub const AWS_REGION: &str = "AWS_REGION";
/// The function role's access key id (set by Lambda).
pub const AWS_ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
/// The function role's secret access key (set by Lambda).
pub const AWS_SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
/// The function role's session token (set by Lambda).
pub const AWS_SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";
/// The variables Lambda itself sets in every function's environment; a
/// template never does.
pub const SET_BY_LAMBDA: [&str; 4] = [
    AWS_REGION,
    AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY,
    AWS_SESSION_TOKEN,
];
/// JWT claims that name a caller, comma-separated, the first set wins.
pub const IDENTITY_CLAIMS: &str = "FLOTILLA_IDENTITY_CLAIMS";
/// Callers (JWT claim values or IAM principal ARNs) who are admins.
pub const ADMINS: &str = "FLOTILLA_ADMINS";
/// The JWT group (`cognito:groups`) whose members are admins.
pub const ADMIN_GROUP: &str = "FLOTILLA_ADMIN_GROUP";

/// `IAM` or `JWT`: how API Gateway authenticates callers (the UI needs JWT).
pub const API_AUTH: &str = "FLOTILLA_API_AUTH";
/// With JWT: the issuer the UI signs in at.
pub const OAUTH_ISSUER: &str = "FLOTILLA_OAUTH_ISSUER";
/// With JWT: the UI's client id at the issuer; without it the UI asks for a
/// token to paste.
pub const OAUTH_CLIENT_ID: &str = "FLOTILLA_OAUTH_CLIENT_ID";
/// Scopes the UI asks for, space-separated.
pub const OAUTH_SCOPES: &str = "FLOTILLA_OAUTH_SCOPES";
/// The issuer's authorization endpoint (else discovered from the issuer).
pub const OAUTH_AUTHORIZE_URL: &str = "FLOTILLA_OAUTH_AUTHORIZE_URL";
/// The issuer's token endpoint (else discovered from the issuer).
pub const OAUTH_TOKEN_URL: &str = "FLOTILLA_OAUTH_TOKEN_URL";
/// The key run tokens are made with (at least 32 characters): a run
/// reports its own status with its attempt's token.
pub const RUN_TOKEN_KEY: &str = "FLOTILLA_RUN_TOKEN_KEY";
/// A price table (JSON) runs' costs are estimated at, instead of Fargate's
/// published rates.
pub const PRICES: &str = "FLOTILLA_PRICES";

/// Longest `startedBy` ECS takes.
pub const MAX_STARTED_BY: usize = 36;

/// Shortest run token key taken.
pub const MIN_RUN_TOKEN_KEY: usize = 32;

/// Every variable the functions read, for documentation and template checks.
pub const ALL: [&str; 39] = [
    TABLE,
    LOG_BUCKET,
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
    MAX_MEMORY_MB,
    REQUEUE_AFTER_MINUTES,
    RECONCILE_AFTER_MINUTES,
    AWS_CONNECT_TIMEOUT_MS,
    AWS_ATTEMPT_TIMEOUT_MS,
    AWS_OPERATION_TIMEOUT_MS,
    AWS_ENDPOINT_URL,
    CORS_ALLOWED_ORIGINS,
    CLUSTERS,
    AWS_REGION,
    AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY,
    AWS_SESSION_TOKEN,
    IDENTITY_CLAIMS,
    ADMINS,
    ADMIN_GROUP,
    API_AUTH,
    OAUTH_ISSUER,
    OAUTH_CLIENT_ID,
    OAUTH_SCOPES,
    OAUTH_AUTHORIZE_URL,
    OAUTH_TOKEN_URL,
    RUN_TOKEN_KEY,
    PRICES,
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
    /// S3 bucket of Kubernetes clusters' run logs, when the stack has one.
    pub log_bucket: Option<String>,
    /// ECS settings.
    pub ecs: EcsSettings,
    /// FLOTILLA_SERVER_MODE.
    pub mode: String,
    /// Default cluster.
    pub default_cluster: String,
    /// Attempts per run.
    pub max_attempts: u32,
    /// The most memory (MB) a run's memory may grow to after running out.
    pub max_memory_mb: u64,
    /// Minutes after which a QUEUED run is enqueued again.
    pub requeue_after_minutes: u32,
    /// Minutes without an event after which a PENDING or RUNNING run's task
    /// is looked up in ECS.
    pub reconcile_after_minutes: u32,
    /// The HTTP edge (CORS).
    pub http: crate::http::HttpOptions,
    /// The clusters the stack has queues for.
    pub clusters: Vec<String>,
    /// Who a caller is, from API Gateway's request context.
    pub identity: super::identity::IdentityRule,
    /// The key of the run tokens; without it self-reports are not checked.
    pub run_token_key: Option<String>,
    /// The price table runs' costs are estimated at (JSON, checked when
    /// read); Fargate's published rates when absent.
    pub prices: Option<String>,
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
        let millis = |name: &'static str, default: std::time::Duration| {
            let ms = number(name, u32::try_from(default.as_millis()).unwrap_or(u32::MAX))?;
            if ms == 0 {
                return Err(ConfigError::Invalid {
                    name,
                    problem: "0 ms leaves no time for any call".to_owned(),
                });
            }
            Ok(std::time::Duration::from_millis(u64::from(ms)))
        };
        let defaults = crate::adapters::aws::SdkTimeouts::DEFAULT;
        let timeouts = crate::adapters::aws::SdkTimeouts {
            connect: millis(AWS_CONNECT_TIMEOUT_MS, defaults.connect)?,
            attempt: millis(AWS_ATTEMPT_TIMEOUT_MS, defaults.attempt)?,
            operation: millis(AWS_OPERATION_TIMEOUT_MS, defaults.operation)?,
        };
        let started_by = value(STARTED_BY).unwrap_or_else(|| "flotilla".to_owned());
        if started_by.len() > MAX_STARTED_BY {
            return Err(ConfigError::Invalid {
                name: STARTED_BY,
                problem: format!(
                    "\"{started_by}\" has {} characters; ECS takes at most {MAX_STARTED_BY}",
                    started_by.len()
                ),
            });
        }
        let subnets = list(SUBNETS);
        if subnets.is_empty() {
            return Err(ConfigError::Missing(SUBNETS));
        }
        let region = value(AWS_REGION);
        let run_token_key = value(RUN_TOKEN_KEY);
        if let Some(key) = &run_token_key
            && key.len() < MIN_RUN_TOKEN_KEY
        {
            return Err(ConfigError::Invalid {
                name: RUN_TOKEN_KEY,
                problem: format!(
                    "it has {} characters, fewer than the {MIN_RUN_TOKEN_KEY} a key needs",
                    key.len()
                ),
            });
        }
        let prices = value(PRICES).filter(|p| !p.trim().is_empty());
        if let Some(Err(e)) = prices
            .as_deref()
            .map(crate::domain::usage::PriceTable::parse)
        {
            return Err(ConfigError::Invalid {
                name: PRICES,
                problem: e.to_string(),
            });
        }
        let mut http = crate::http::HttpOptions::with_cors_origins(
            &value(CORS_ALLOWED_ORIGINS).unwrap_or_default(),
        );
        http.sign_in = sign_in(&value)?;
        Ok(Self {
            aws: AwsTarget {
                endpoint_url: value(AWS_ENDPOINT_URL),
                region: region.clone(),
                timeouts,
                credentials: match (value(AWS_ACCESS_KEY_ID), value(AWS_SECRET_ACCESS_KEY)) {
                    (Some(key), Some(secret)) => Some(aws_sdk_dynamodb::config::Credentials::new(
                        key,
                        secret,
                        value(AWS_SESSION_TOKEN),
                        None,
                        "lambda-environment",
                    )),
                    _ => None,
                },
            },
            table: required(TABLE)?,
            queue_prefix: required(QUEUE_PREFIX)?,
            event_bus: required(EVENT_BUS)?,
            log_bucket: value(LOG_BUCKET),
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
                started_by,
            },
            mode: value(MODE).unwrap_or_else(|| "prod".to_owned()),
            default_cluster: value(DEFAULT_CLUSTER).unwrap_or_else(|| "default".to_owned()),
            max_attempts: number(MAX_ATTEMPTS, 3)?.max(1),
            max_memory_mb: u64::from(number(MAX_MEMORY_MB, 30720)?.max(1)),
            requeue_after_minutes: number(REQUEUE_AFTER_MINUTES, 5)?,
            reconcile_after_minutes: number(RECONCILE_AFTER_MINUTES, 10)?.max(1),
            clusters: list(CLUSTERS),
            identity: super::identity::IdentityRule {
                claims: match list(IDENTITY_CLAIMS) {
                    claims if claims.is_empty() => super::identity::IdentityRule::default().claims,
                    claims => claims,
                },
                admins: list(ADMINS),
                admin_group: value(ADMIN_GROUP).map(|g| g.trim().to_owned()),
            },
            http,
            run_token_key,
            prices,
        })
    }
}

/// How the UI signs in, from [`API_AUTH`] and the `FLOTILLA_OAUTH_*`
/// variables: IAM, which a browser cannot sign; JWT with a UI client, the
/// authorization-code flow; JWT without one, a pasted token.
fn sign_in(
    value: &impl Fn(&'static str) -> Option<String>,
) -> Result<crate::http::sign_in::SignIn, ConfigError> {
    use crate::http::sign_in::{DEFAULT_SCOPES, OAuthSignIn, SignIn};
    let auth = value(API_AUTH).unwrap_or_else(|| "IAM".to_owned());
    if auth.eq_ignore_ascii_case("IAM") {
        return Ok(SignIn::Iam);
    }
    if !auth.eq_ignore_ascii_case("JWT") {
        return Err(ConfigError::Invalid {
            name: API_AUTH,
            problem: format!("\"{auth}\" is neither IAM nor JWT"),
        });
    }
    let (Some(issuer), Some(client_id)) = (value(OAUTH_ISSUER), value(OAUTH_CLIENT_ID)) else {
        return Ok(SignIn::Token);
    };
    Ok(SignIn::OAuth(OAuthSignIn {
        issuer: issuer.trim().trim_end_matches('/').to_owned(),
        client_id: client_id.trim().to_owned(),
        scopes: value(OAUTH_SCOPES).unwrap_or_else(|| DEFAULT_SCOPES.to_owned()),
        authorization_endpoint: value(OAUTH_AUTHORIZE_URL),
        token_endpoint: value(OAUTH_TOKEN_URL),
    }))
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

    fn with(extra: &[(&'static str, &str)]) -> Result<Config, ConfigError> {
        let mut vars = env(&[
            (TABLE, "t"),
            (QUEUE_PREFIX, "q"),
            (EVENT_BUS, "b"),
            (LOG_GROUP, "l"),
            (SUBNETS, "s"),
        ]);
        vars.extend(env(extra));
        Config::from_lookup(|k| vars.get(k).cloned())
    }

    #[test]
    fn the_ui_signs_in_by_the_stacks_api_auth() {
        use crate::http::sign_in::SignIn;
        assert_eq!(with(&[]).unwrap().http.sign_in, SignIn::Iam);
        assert_eq!(
            with(&[(API_AUTH, "JWT")]).unwrap().http.sign_in,
            SignIn::Token,
            "JWT without a UI client: a pasted token"
        );
        let oauth = with(&[
            (API_AUTH, "JWT"),
            (OAUTH_ISSUER, "https://issuer.example.com/pool/"),
            (OAUTH_CLIENT_ID, "ui"),
            (OAUTH_TOKEN_URL, "https://auth.example.com/oauth2/token"),
        ])
        .unwrap();
        let SignIn::OAuth(oauth) = oauth.http.sign_in else {
            panic!("{:?}", oauth.http.sign_in)
        };
        assert_eq!(oauth.issuer, "https://issuer.example.com/pool");
        assert_eq!(oauth.scopes, crate::http::sign_in::DEFAULT_SCOPES);
        assert_eq!(oauth.authorization_endpoint, None);
        assert_eq!(
            oauth.token_endpoint.as_deref(),
            Some("https://auth.example.com/oauth2/token")
        );
        assert!(matches!(
            with(&[(API_AUTH, "none")]),
            Err(ConfigError::Invalid { name: API_AUTH, .. })
        ));
    }

    #[test]
    fn a_price_table_is_taken_whole_and_one_with_a_bad_rate_is_refused_naming_it() {
        let table = r#"{"source": "our negotiated rates", "rates": [{"vcpu_hour": 0.03, "gb_hour": 0.003}]}"#;
        assert_eq!(
            with(&[(PRICES, table)]).unwrap().prices.as_deref(),
            Some(table)
        );
        assert_eq!(with(&[]).unwrap().prices, None);
        let refused = with(&[(
            PRICES,
            r#"{"source": "x", "rates": [{"vcpu_hour": -1, "gb_hour": 0}]}"#,
        )]);
        let Err(ConfigError::Invalid { name, problem }) = refused else {
            panic!("refused: {refused:?}");
        };
        assert_eq!(name, PRICES);
        assert!(problem.contains("rates[0].vcpu_hour"), "{problem}");
    }

    #[test]
    fn a_short_run_token_key_is_refused() {
        assert!(matches!(
            with(&[(RUN_TOKEN_KEY, "short")]),
            Err(ConfigError::Invalid {
                name: RUN_TOKEN_KEY,
                ..
            })
        ));
        let key = "k".repeat(MIN_RUN_TOKEN_KEY);
        assert_eq!(
            with(&[(RUN_TOKEN_KEY, &key)]).unwrap().run_token_key,
            Some(key)
        );
    }

    #[test]
    fn sdk_timeouts_default_below_the_function_timeouts_and_read_in_milliseconds() {
        let c = with(&[]).unwrap();
        assert_eq!(c.aws.timeouts, crate::adapters::aws::SdkTimeouts::DEFAULT);
        assert!(c.aws.timeouts.operation < std::time::Duration::from_secs(30));
        let c = with(&[
            (AWS_CONNECT_TIMEOUT_MS, "250"),
            (AWS_OPERATION_TIMEOUT_MS, "4000"),
        ])
        .unwrap();
        assert_eq!(
            c.aws.timeouts.connect,
            std::time::Duration::from_millis(250)
        );
        assert_eq!(c.aws.timeouts.operation, std::time::Duration::from_secs(4));
        for bad in ["0", "soon"] {
            assert!(matches!(
                with(&[(AWS_ATTEMPT_TIMEOUT_MS, bad)]),
                Err(ConfigError::Invalid {
                    name: AWS_ATTEMPT_TIMEOUT_MS,
                    ..
                })
            ));
        }
    }

    #[test]
    fn a_started_by_longer_than_ecs_takes_is_refused_at_start() {
        let long = "s".repeat(MAX_STARTED_BY + 1);
        let err = with(&[(STARTED_BY, &long)]).unwrap_err();
        assert!(err.to_string().contains("at most 36"), "{err}");
        let fits = "s".repeat(MAX_STARTED_BY);
        assert_eq!(with(&[(STARTED_BY, &fits)]).unwrap().ecs.started_by, fits);
    }

    #[tokio::test]
    async fn a_function_signs_with_the_credentials_lambda_sets_and_says_which_is_missing() {
        use aws_sdk_dynamodb::config::ProvideCredentials;
        let lambda = [
            (AWS_REGION, "eu-west-1"),
            (AWS_ACCESS_KEY_ID, "ASIAEXAMPLE"),
            (AWS_SECRET_ACCESS_KEY, "very-secret"),
            (AWS_SESSION_TOKEN, "session-token"),
        ];
        let config = with(&lambda).unwrap();
        assert!(
            !format!("{config:?}").contains("very-secret"),
            "the secret never reaches a log line of the configuration"
        );
        let sdk = crate::lambda::lambda_sdk_config(&config).unwrap();
        assert_eq!(sdk.region().map(|r| r.as_ref()), Some("eu-west-1"));
        let credentials = sdk
            .credentials_provider()
            .unwrap()
            .provide_credentials()
            .await
            .unwrap();
        assert_eq!(credentials.access_key_id(), "ASIAEXAMPLE");
        assert_eq!(credentials.secret_access_key(), "very-secret");
        assert_eq!(credentials.session_token(), Some("session-token"));

        for (left_out, named) in [
            (AWS_REGION, AWS_REGION),
            (AWS_ACCESS_KEY_ID, AWS_ACCESS_KEY_ID),
            (AWS_SECRET_ACCESS_KEY, AWS_ACCESS_KEY_ID),
        ] {
            let rest: Vec<_> = lambda.into_iter().filter(|(k, _)| *k != left_out).collect();
            let config = with(&rest).unwrap();
            assert_eq!(
                crate::lambda::lambda_sdk_config(&config).unwrap_err(),
                ConfigError::Missing(named),
                "without {left_out}"
            );
        }
    }
}
