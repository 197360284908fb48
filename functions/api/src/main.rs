//! The `api` Lambda: API Gateway (HTTP API) → the same router `flotilla serve`
//! uses, over the AWS adapters.

use std::sync::Arc;

use lambda_http::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let (config, app) = shared::lambda::api_from_env().await?;
    lambda_http::run(shared::lambda::api_router(Arc::new(app), &config)).await
}
