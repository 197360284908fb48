//! The `submit` Lambda: SQS (one queue per cluster) → ECS tasks. See
//! `shared::lambda::submit`.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::lambda::submit;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let (_config, app) = shared::lambda::from_env().await?;
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline = submit::deadline_of(event.context.deadline());
        Ok::<SqsBatchResponse, Error>(submit::handle(app, event.payload, deadline).await)
    }))
    .await
}
