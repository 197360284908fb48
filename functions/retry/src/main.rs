//! The `retry` Lambda: a scheduled sweep. See `shared::lambda::retry`.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::lambda::retry;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let (config, app) = shared::lambda::from_env().await?;
    let (app, minutes) = (&app, config.requeue_after_minutes);
    lambda_runtime::run(service_fn(
        move |_event: LambdaEvent<serde_json::Value>| async move {
            retry::tick(app, minutes).await.map_err(Error::from)
        },
    ))
    .await
}
