//! The `retry` Lambda: a scheduled sweep, then a pass over the registered
//! Kubernetes clusters. See `shared::lambda::retry`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::lambda::{AwsClients, EksParts, retry};

/// Time kept free at the end of an invocation, after the pods' watch.
const MARGIN: Duration = Duration::from_secs(10);
/// The longest a pass watches pods: the schedule runs the next in a minute.
const MAX_WATCH: Duration = Duration::from_secs(45);

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let (config, app) = shared::lambda::from_env().await?;
    let eks = EksParts::new(
        &config,
        &AwsClients::new(&shared::lambda::lambda_sdk_config(&config)?),
    );
    let (app, eks, intervals) = (&app, &eks, retry::Intervals::from(&config));
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            // Watch until shortly before the invocation's deadline.
            let deadline = UNIX_EPOCH + Duration::from_millis(event.context.deadline);
            let left = deadline
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            let watch_for = left.saturating_sub(MARGIN).min(MAX_WATCH);
            let tick = retry::tick_with_kubernetes(app, intervals, eks, watch_for)
                .await
                .map_err(Error::from)?;
            tick.into_result().map_err(Error::from)
        },
    ))
    .await
}
