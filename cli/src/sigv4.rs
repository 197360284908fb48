//! Requests to a stack deployed with `ApiAuth=IAM`: each one signed with
//! AWS Signature Version 4 for the `execute-api` service, with credentials
//! from the AWS chain a person's tools use (variables, `~/.aws` profiles,
//! SSO, a role). The signing is the SDK's own signer (`aws-sigv4`); this
//! module only chooses the region and hands it each request.

use std::time::SystemTime;

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use reqwest::header::{HeaderName, HeaderValue};

use crate::client::{CliError, chain};

/// The service API Gateway's IAM authorization signs for.
pub const SERVICE: &str = "execute-api";

/// Signs requests for one region with one identity.
#[derive(Debug, Clone)]
pub struct Signer {
    region: String,
    credentials: SharedCredentialsProvider,
}

/// The region in an API Gateway URL's host
/// (`<api id>.execute-api.<region>.amazonaws.com`).
pub fn region_of_host(host: &str) -> Option<&str> {
    let rest = host.split_once(".execute-api.")?.1;
    let region = rest.split_once('.')?.0;
    (!region.is_empty()).then_some(region)
}

impl Signer {
    /// A signer with the AWS chain's credentials (of `aws_profile` when one
    /// is named), for `region`, else the one in `server`'s host, else the
    /// chain's.
    pub async fn from_chain(
        server: &reqwest::Url,
        region: Option<String>,
        aws_profile: Option<String>,
    ) -> Result<Self, CliError> {
        let region = region.or_else(|| {
            server
                .host_str()
                .and_then(region_of_host)
                .map(str::to_owned)
        });
        let config = shared::adapters::aws::user_sdk_config(aws_profile.as_deref(), region).await;
        let region = config.region().map(ToString::to_string).ok_or_else(|| {
            CliError::Usage(
                "signing for IAM needs a region: give --region (or a profile's region), or set AWS_REGION"
                    .into(),
            )
        })?;
        let credentials = config.credentials_provider().ok_or_else(|| {
            CliError::Usage(
                "signing for IAM needs AWS credentials, and the AWS chain has none".into(),
            )
        })?;
        Ok(Self {
            region,
            credentials,
        })
    }

    /// Adds the signature's headers (`authorization`, `x-amz-date`, and
    /// `x-amz-security-token` for temporary credentials) to `request`,
    /// signed at `now` over its method, URL, headers and body.
    pub async fn sign(
        &self,
        request: &mut reqwest::Request,
        now: SystemTime,
    ) -> Result<(), CliError> {
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            CliError::Transport(format!("cannot sign the request for IAM: {what}: {e}"))
        };
        let credentials = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|e| failed("no AWS credentials", &chain(&e)))?;
        let identity = credentials.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(SERVICE)
            .time(now)
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| failed("its parameters", &e))?
            .into();
        let body = request
            .body()
            .and_then(reqwest::Body::as_bytes)
            .unwrap_or_default();
        let headers: Vec<(&str, &str)> = request
            .headers()
            .iter()
            .filter_map(|(name, value)| value.to_str().ok().map(|v| (name.as_str(), v)))
            .collect();
        let signable = SignableRequest::new(
            request.method().as_str(),
            request.url().as_str(),
            headers.into_iter(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| failed("the request", &e))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| failed("signing", &e))?
            .into_parts();
        let (headers, _query) = instructions.into_parts();
        for header in headers {
            let value =
                HeaderValue::from_str(header.value()).map_err(|e| failed(header.name(), &e))?;
            request
                .headers_mut()
                .insert(HeaderName::from_static(header.name()), value);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_is_read_from_an_execute_api_host_only() {
        assert_eq!(
            region_of_host("abc123.execute-api.eu-west-1.amazonaws.com"),
            Some("eu-west-1")
        );
        assert_eq!(region_of_host("flotilla.example.com"), None);
        assert_eq!(region_of_host("127.0.0.1"), None);
    }
}
