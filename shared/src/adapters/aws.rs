//! AWS SDK configuration shared by the AWS adapters (feature `aws`).
//!
//! In a deployment the SDK's default chain supplies region and credentials.
//! Against an emulator (moto's server mode) an endpoint URL is given; then the
//! credentials are static test values, and the SDK tries each call once
//! (an emulator's internal error is an HTML 500 that retrying cannot fix).

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;

/// Where the AWS APIs are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsTarget {
    /// An emulator's endpoint, e.g. `http://127.0.0.1:5000`; `None` for AWS itself.
    pub endpoint_url: Option<String>,
    /// Region; the SDK's default chain when `None`.
    pub region: Option<String>,
}

/// Loads the SDK configuration for `target`.
pub async fn sdk_config(target: &AwsTarget) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &target.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &target.endpoint_url {
        loader = loader
            .endpoint_url(url)
            .credentials_provider(Credentials::new("test", "test", None, None, "emulator"))
            .retry_config(RetryConfig::standard().with_max_attempts(1));
        if target.region.is_none() {
            loader = loader.region(Region::new("us-east-1"));
        }
    }
    loader.load().await
}
