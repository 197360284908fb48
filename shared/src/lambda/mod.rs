//! What the four Lambda functions share (feature `aws`): their typed
//! configuration, the AWS clients built once per cold start, the [`App`] over
//! the AWS adapters, and the handlers. Each function's `main` only initialises
//! tracing, reads [`Config::from_env`], calls [`build_app`] and runs its
//! handler; tests call the same handlers with no Lambda runtime.
//!
//! - [`submit`]: SQS batch of run tickets → ECS tasks, with per-item failures.
//! - [`status`]: EventBridge ECS Task State Change → run events.
//! - [`retry`]: scheduled sweep: NEEDS_RETRY runs requeued, lost enqueues
//!   repaired once per interval, quiet PENDING and RUNNING runs reconciled
//!   with ECS `DescribeTasks`, runs past their deadline stopped.
//! - The `api` function hands [`crate::http::router`] to `lambda_http`.
//! - [`serve_api`]: the same router over the same adapters on a local port,
//!   for `flotilla serve --backend aws` (a deployed stack or an emulator).

pub mod config;
pub mod identity;
pub mod retry;
pub mod status;
pub mod submit;

use std::sync::Arc;

use aws_config::SdkConfig;

pub use config::{Config, ConfigError};

use crate::adapters::cloudwatch::CloudWatchLogs;
use crate::adapters::dynamo::DynamoStore;
use crate::adapters::ecs::EcsExecutionEngine;
use crate::adapters::eventbridge::EventBridgePublisher;
use crate::adapters::sqs::SqsRunQueue;
use crate::app::{App, AppSettings, Runtime};
use crate::domain::launch::DEFAULT_OWNER_VAR;
use crate::domain::spec::Engine;
use crate::ports::{Clock, SystemClock};

/// The AWS clients, built once.
#[derive(Debug, Clone)]
pub struct AwsClients {
    /// DynamoDB.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
    /// ECS.
    pub ecs: aws_sdk_ecs::Client,
    /// CloudWatch Logs.
    pub logs: aws_sdk_cloudwatchlogs::Client,
    /// EventBridge.
    pub events: aws_sdk_eventbridge::Client,
    /// The configuration they were built from (the EKS connector signs its
    /// tokens with its credentials).
    pub sdk: SdkConfig,
}

impl AwsClients {
    /// Clients from one SDK configuration.
    pub fn new(sdk: &SdkConfig) -> Self {
        Self {
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            sqs: aws_sdk_sqs::Client::new(sdk),
            ecs: aws_sdk_ecs::Client::new(sdk),
            logs: aws_sdk_cloudwatchlogs::Client::new(sdk),
            events: aws_sdk_eventbridge::Client::new(sdk),
            sdk: sdk.clone(),
        }
    }

    /// Clients that also pass every request through `interceptor` (tests use
    /// it to count requests).
    pub fn with_interceptor<I>(sdk: &SdkConfig, interceptor: I) -> Self
    where
        I: aws_smithy_runtime_api::client::interceptors::Intercept + Clone + 'static,
    {
        Self {
            dynamodb: aws_sdk_dynamodb::Client::from_conf(
                aws_sdk_dynamodb::config::Builder::from(sdk)
                    .interceptor(interceptor.clone())
                    .build(),
            ),
            sqs: aws_sdk_sqs::Client::from_conf(
                aws_sdk_sqs::config::Builder::from(sdk)
                    .interceptor(interceptor.clone())
                    .build(),
            ),
            ecs: aws_sdk_ecs::Client::from_conf(
                aws_sdk_ecs::config::Builder::from(sdk)
                    .interceptor(interceptor.clone())
                    .build(),
            ),
            logs: aws_sdk_cloudwatchlogs::Client::from_conf(
                aws_sdk_cloudwatchlogs::config::Builder::from(sdk)
                    .interceptor(interceptor.clone())
                    .build(),
            ),
            events: aws_sdk_eventbridge::Client::from_conf(
                aws_sdk_eventbridge::config::Builder::from(sdk)
                    .interceptor(interceptor)
                    .build(),
            ),
            sdk: sdk.clone(),
        }
    }
}

/// A function's cold start: reads the configuration and builds the app over
/// real AWS clients and the wall clock, once. The region and credentials
/// are the ones Lambda sets (see [`crate::adapters::aws::lambda_sdk_config`]).
pub async fn from_env() -> Result<(Config, App), ConfigError> {
    let config = Config::from_env()?;
    let clients = AwsClients::new(&lambda_sdk_config(&config)?);
    let app = build_app(&config, &clients, Arc::new(SystemClock));
    Ok((config, app))
}

/// [`from_env`] for the api function: its ECS engine only stops tasks
/// ([`build_api_app`]).
pub async fn api_from_env() -> Result<(Config, App), ConfigError> {
    let config = Config::from_env()?;
    let clients = AwsClients::new(&lambda_sdk_config(&config)?);
    let app = build_api_app(&config, &clients, Arc::new(SystemClock));
    Ok((config, app))
}

/// The SDK configuration of a function configured by `config`, naming the
/// variable Lambda should have set when one is missing.
pub fn lambda_sdk_config(config: &Config) -> Result<SdkConfig, ConfigError> {
    use crate::adapters::aws::LambdaSdkMissing;
    crate::adapters::aws::lambda_sdk_config(&config.aws).map_err(|missing| match missing {
        LambdaSdkMissing::Region => ConfigError::Missing(config::AWS_REGION),
        LambdaSdkMissing::Credentials => ConfigError::Missing(config::AWS_ACCESS_KEY_ID),
    })
}

/// Serves the API (the `api` function's router over the AWS adapters) on
/// `listen` until `shutdown` completes. Launching, status and retries stay with
/// the deployed `submit`, `status` and `retry` functions.
pub async fn serve_api(
    config: &Config,
    listen: std::net::SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let clients = AwsClients::new(&crate::adapters::aws::sdk_config(&config.aws).await);
    let app = Arc::new(build_api_app(config, &clients, Arc::new(SystemClock)));
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(
        address = %listener.local_addr()?,
        table = %config.table,
        endpoint = config.aws.endpoint_url.as_deref().unwrap_or("AWS"),
        "flotilla serve (backend aws) is listening"
    );
    axum::serve(listener, crate::http::router_with(app, &config.http))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The `api` function's router: the API, with the caller API Gateway
/// authenticated taken from each request's context.
pub fn api_router(app: Arc<App>, config: &Config) -> axum::Router {
    crate::http::router_with(app, &config.http).layer(axum::middleware::from_fn_with_state(
        Arc::new(config.identity.clone()),
        identity::identify,
    ))
}

/// What a function needs to reach Kubernetes clusters (feature `eks`):
/// the connector signing IAM tokens with the function's credentials, and
/// the S3 archive of their runs' logs when the stack has a bucket.
#[cfg(feature = "eks")]
#[derive(Clone)]
pub struct EksParts {
    /// Clients of the registered Kubernetes clusters.
    pub connect: Arc<crate::adapters::eks::connect::IamConnector>,
    /// Where ended attempts' logs are archived.
    pub archive: Option<crate::adapters::eks::logs::S3LogArchive>,
}

#[cfg(feature = "eks")]
impl EksParts {
    /// The parts of a function configured by `config`.
    pub fn new(config: &Config, clients: &AwsClients) -> Self {
        let region = config.ecs.log_region.clone();
        let credentials = clients.sdk.credentials_provider();
        // Emulators (an endpoint given) serve buckets by path.
        let archive = config.log_bucket.as_deref().and_then(|bucket| {
            match crate::adapters::eks::s3::S3Objects::new(
                bucket,
                &region,
                config.aws.endpoint_url.as_deref(),
                credentials.clone(),
            ) {
                Ok(objects) => Some(crate::adapters::eks::logs::S3LogArchive::new(
                    objects, bucket, "", &region,
                )),
                Err(e) => {
                    tracing::error!(bucket, error = %e, "cannot reach the run log bucket; EKS logs are not archived");
                    None
                }
            }
        });
        Self {
            connect: Arc::new(crate::adapters::eks::connect::IamConnector::new(
                credentials,
                &region,
            )),
            archive,
        }
    }
}

/// How to give the stack a cluster it has no queue for.
pub const ADD_CLUSTER_HINT: &str = "add it to the stack's Clusters parameter and deploy first";

/// The use cases over the AWS adapters, telling time by `clock`.
pub fn build_app(config: &Config, clients: &AwsClients, clock: Arc<dyn Clock>) -> App {
    let ecs = Arc::new(EcsExecutionEngine::new(
        clients.ecs.clone(),
        config.ecs.clone(),
    ));
    build_app_with(config, clients, clock, ecs)
}

/// [`build_app`] for the api function, which stops ECS tasks and launches
/// none: its ECS engine is [`crate::adapters::ecs::EcsStopper`], so the
/// launch code (task definitions, `RunTask`, `DescribeTasks`) is not in
/// its bootstrap.
pub fn build_api_app(config: &Config, clients: &AwsClients, clock: Arc<dyn Clock>) -> App {
    let ecs = Arc::new(crate::adapters::ecs::EcsStopper::new(clients.ecs.clone()));
    build_app_with(config, clients, clock, ecs)
}

fn build_app_with(
    config: &Config,
    clients: &AwsClients,
    clock: Arc<dyn Clock>,
    engine: Arc<dyn crate::ports::ExecutionEngine>,
) -> App {
    let store = DynamoStore::new(clients.dynamodb.clone(), &config.table, Arc::clone(&clock));
    let logs: Arc<dyn crate::ports::LogSource> = Arc::new(CloudWatchLogs::new(
        clients.logs.clone(),
        &config.ecs.log_group,
        &config.ecs.log_region,
    ));
    // Runs of clusters registered with `engine: "eks"` go to their API
    // servers; the rest to ECS.
    #[cfg(feature = "eks")]
    let (engine, logs) = {
        let eks = EksParts::new(config, clients);
        let registry: Arc<dyn crate::ports::ClusterStore> = Arc::new(store.clone());
        let engine: Arc<dyn crate::ports::ExecutionEngine> =
            Arc::new(crate::adapters::eks::routed::RoutedEngine::new(
                engine,
                registry.clone(),
                eks.connect.clone(),
            ));
        let logs: Arc<dyn crate::ports::LogSource> = Arc::new(
            crate::adapters::eks::logs::EksLogs::new(logs, registry, eks.connect, eks.archive),
        );
        (engine, logs)
    };
    let runtime = Runtime {
        queue: Arc::new(SqsRunQueue::new(clients.sqs.clone(), &config.queue_prefix)),
        engine,
        logs,
        clock,
        publisher: Some(Arc::new(EventBridgePublisher::new(
            clients.events.clone(),
            &config.event_bus,
        ))),
        tokens: config
            .run_token_key
            .as_deref()
            .and_then(|key| crate::app::RunTokens::new(key.as_bytes()).ok()),
    };
    let settings = AppSettings {
        engine: Engine::Ecs,
        server_mode: config.mode.clone(),
        owner_var: DEFAULT_OWNER_VAR.to_owned(),
        default_cluster: config.default_cluster.clone(),
        requires_command: false,
        max_attempts: config.max_attempts,
        max_memory: Some(config.max_memory_mb),
        clusters: config.clusters.clone(),
        add_cluster_hint: ADD_CLUSTER_HINT.to_owned(),
        launch_limits: crate::domain::limits::LaunchLimits::Ecs,
        parallelism: None,
        kubernetes_clusters: cfg!(feature = "eks"),
        prices: config
            .prices
            .as_deref()
            .and_then(|table| crate::domain::usage::PriceTable::parse(table).ok())
            .unwrap_or_else(crate::domain::usage::PriceTable::fargate),
        region: config.ecs.log_region.clone(),
        long_run_minimum: chrono::Duration::minutes(
            crate::domain::learning::LONG_RUN_MINIMUM_MINUTES,
        ),
    };
    App::new(Arc::new(store), runtime, settings)
}
