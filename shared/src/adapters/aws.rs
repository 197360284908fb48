//! AWS SDK configuration shared by the AWS adapters (feature `aws`): the
//! HTTPS client, the timeouts every client gets, and the emulator set-up.
//!
//! In a deployment the SDK's default chain supplies region and credentials.
//! Against an emulator (moto's server mode) an endpoint URL is given; then the
//! credentials are static test values, and the SDK tries each call once
//! (an emulator's internal error is an HTML 500 that retrying cannot fix).
//!
//! Every client has a connect, an attempt and an operation timeout
//! ([`SdkTimeouts`]), all below the shortest function timeout, so that an
//! endpoint that accepts a connection and never answers costs one request an
//! error, not a whole invocation. The HTTPS client is rustls over ring.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};

/// How long an SDK call may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdkTimeouts {
    /// To open a connection.
    pub connect: Duration,
    /// One attempt, from sending the request to reading the whole answer.
    pub attempt: Duration,
    /// The whole call, retries included.
    pub operation: Duration,
}

impl SdkTimeouts {
    /// Defaults: a connection in 3 s, an attempt in 10 s, a call with its
    /// retries in 20 s; the shortest function timeout is 30 s.
    pub const DEFAULT: Self = Self {
        connect: Duration::from_secs(3),
        attempt: Duration::from_secs(10),
        operation: Duration::from_secs(20),
    };
}

impl Default for SdkTimeouts {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Where the AWS APIs are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsTarget {
    /// An emulator's endpoint, e.g. `http://127.0.0.1:5000`; `None` for AWS itself.
    pub endpoint_url: Option<String>,
    /// Region; the SDK's default chain when `None`.
    pub region: Option<String>,
    /// Timeouts of every call.
    pub timeouts: SdkTimeouts,
}

/// Loads the SDK configuration for `target`.
pub async fn sdk_config(target: &AwsTarget) -> SdkConfig {
    let https = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(target.timeouts.connect)
        .operation_attempt_timeout(target.timeouts.attempt)
        .operation_timeout(target.timeouts.operation)
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(https)
        .timeout_config(timeouts);
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
