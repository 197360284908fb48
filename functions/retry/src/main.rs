//! The `retry` Lambda: a scheduled sweep. See `shared::lambda::retry`.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::lambda::retry;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let (config, app) = shared::lambda::from_env().await?;
    let (app, intervals) = (&app, retry::Intervals::from(&config));
    lambda_runtime::run(service_fn(
        move |_event: LambdaEvent<serde_json::Value>| async move {
            let tick = retry::tick(app, intervals).await.map_err(Error::from)?;
            tick.into_result().map_err(Error::from)
        },
    ))
    .await
}
