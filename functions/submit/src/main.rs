//! The `submit` Lambda: SQS (one queue per cluster) → ECS tasks. See
//! `shared::lambda::submit`.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::adapters::aws::sdk_config;
use shared::lambda::{AwsClients, Config, build_app, submit};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let config = Config::from_env()?;
    let app = build_app(&config, &AwsClients::new(&sdk_config(&config.aws).await));
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<SqsBatchResponse, Error>(submit::handle(app, event.payload).await)
    }))
    .await
}
