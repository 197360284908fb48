//! The `status` Lambda: EventBridge "ECS Task State Change" → run events. See
//! `shared::lambda::status`.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::adapters::ecs_events::EcsTaskStateChangeEvent;
use shared::lambda::status;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let (_config, app) = shared::lambda::from_env().await?;
    let app = &app;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<EcsTaskStateChangeEvent>| async move {
            status::handle(app, event.payload)
                .await
                .map_err(Error::from)
        },
    ))
    .await
}
