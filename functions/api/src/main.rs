//! The `api` Lambda: API Gateway (HTTP API) → the same router `flotilla serve`
//! uses, over the AWS adapters.

use std::sync::Arc;

use lambda_http::Error;
use shared::adapters::aws::sdk_config;
use shared::lambda::{AwsClients, Config, build_app};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let config = Config::from_env()?;
    let app = build_app(&config, &AwsClients::new(&sdk_config(&config.aws).await));
    lambda_http::run(shared::http::router(Arc::new(app))).await
}
