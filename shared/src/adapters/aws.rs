//! AWS SDK configuration shared by the AWS adapters (feature `aws`): the
//! HTTPS client, the timeouts every client gets, and the emulator set-up.
//!
//! Two ways in. A Lambda function ([`lambda_sdk_config`]) takes its region
//! and its role's credentials from the variables Lambda sets, and nothing
//! else: the SDK's default chain (profiles, SSO, web identity through STS,
//! container and instance metadata) is never linked into a function, which
//! keeps each bootstrap a few hundred kilobytes smaller and its cold start
//! free of lookups. `flotilla serve --backend aws` and the tests
//! ([`sdk_config`]) use the default chain, as any AWS tool on a laptop does.
//! Against an emulator (moto's server mode) an endpoint URL is given; then the
//! SDK tries each call once (an emulator's internal error is an HTML 500 that
//! retrying cannot fix), and [`sdk_config`] signs with static test values.
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
use aws_sdk_dynamodb::config::SharedCredentialsProvider;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

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
    /// The credentials Lambda gives a function's process (its role's, in
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`);
    /// their `Debug` hides the secret.
    pub credentials: Option<Credentials>,
}

/// What a Lambda function's SDK configuration cannot do without.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LambdaSdkMissing {
    /// No region.
    Region,
    /// No credentials.
    Credentials,
}

/// The HTTPS client every SDK client shares: rustls over ring.
fn https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

fn timeout_config(timeouts: SdkTimeouts) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(timeouts.connect)
        .operation_attempt_timeout(timeouts.attempt)
        .operation_timeout(timeouts.operation)
        .build()
}

/// A Lambda function's SDK configuration: `target`'s region and
/// credentials as they are, the shared HTTPS client and timeouts, standard
/// retries (one try against an emulator). No provider chain runs, and none
/// is linked: Lambda always sets the region and the role's credentials.
pub fn lambda_sdk_config(target: &AwsTarget) -> Result<SdkConfig, LambdaSdkMissing> {
    let region = target.region.clone().ok_or(LambdaSdkMissing::Region)?;
    let credentials = target
        .credentials
        .clone()
        .ok_or(LambdaSdkMissing::Credentials)?;
    let retries = match target.endpoint_url {
        Some(_) => RetryConfig::standard().with_max_attempts(1),
        None => RetryConfig::standard(),
    };
    let mut builder = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .http_client(https_client())
        .timeout_config(timeout_config(target.timeouts))
        .retry_config(retries);
    if let Some(url) = &target.endpoint_url {
        builder = builder.endpoint_url(url);
    }
    Ok(builder.build())
}

/// Loads the SDK configuration for `target` through the SDK's default
/// chain (for `flotilla serve --backend aws` and the tests; functions use
/// [`lambda_sdk_config`]).
pub async fn sdk_config(target: &AwsTarget) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .timeout_config(timeout_config(target.timeouts));
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

/// The SDK configuration of a person's own AWS tools: the default chain
/// (variables, `~/.aws` profiles, SSO, a role), of `profile` when one is
/// named, in `region` when one is given, with the shared HTTPS client and
/// timeouts (for `flotilla`'s client commands, which sign their requests
/// to a stack deployed with `ApiAuth=IAM`).
pub async fn user_sdk_config(profile: Option<&str>, region: Option<String>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .timeout_config(timeout_config(SdkTimeouts::DEFAULT));
    if let Some(profile) = profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = region {
        loader = loader.region(Region::new(region));
    }
    loader.load().await
}
