//! The bearer token EKS takes from an IAM identity, in the scheme of
//! aws-iam-authenticator: an STS `GetCallerIdentity` request presigned with
//! the caller's credentials (SigV4 in the query string, 60 s), with the
//! cluster's name in the signed `x-k8s-aws-id` header, base64url-encoded
//! behind `k8s-aws-v1.`. The API server sends the URL to STS, which answers
//! with the role's ARN; EKS maps that ARN to a Kubernetes user through an
//! access entry (or the `aws-auth` ConfigMap). Signing is the SDK's own
//! signer (`aws-sigv4`), not ours.

use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::config::Credentials;
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use base64::Engine as _;

use crate::error::EngineError;

/// What every token starts with.
pub const TOKEN_PREFIX: &str = "k8s-aws-v1.";
/// The header that names the cluster a token is for.
pub const CLUSTER_ID_HEADER: &str = "x-k8s-aws-id";
/// How long a presigned URL is valid: EKS refuses longer ones.
pub const PRESIGN_SECONDS: u64 = 60;
/// How long a token is used before a new one is made (EKS accepts one for
/// 15 minutes after signing; this leaves a margin).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(10 * 60);

/// A token for `cluster` in `region`, signed at `now` with `credentials`.
pub fn eks_token(
    credentials: &Credentials,
    region: &str,
    cluster: &str,
    now: SystemTime,
) -> Result<String, EngineError> {
    let failed = |what: &str, e: &dyn std::fmt::Display| EngineError::Permanent {
        message: format!("could not sign an EKS token for cluster {cluster}: {what}: {e}"),
        source: None,
    };
    let host = format!("sts.{region}.amazonaws.com");
    let url = format!("https://{host}/?Action=GetCallerIdentity&Version=2011-06-15");
    let identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(Duration::from_secs(PRESIGN_SECONDS));
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| failed("signing parameters", &e))?
        .into();
    let headers = [("host", host.as_str()), (CLUSTER_ID_HEADER, cluster)];
    let signable = SignableRequest::new("GET", &url, headers.into_iter(), SignableBody::Bytes(&[]))
        .map_err(|e| failed("the request", &e))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| failed("signing", &e))?
        .into_parts();
    let mut request = http::Request::builder()
        .method("GET")
        .uri(&url)
        .body(())
        .map_err(|e| failed("the request", &e))?;
    instructions.apply_to_request_http1x(&mut request);
    let presigned = request.uri().to_string();
    Ok(format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(presigned)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::sigv4::{canonical_query, sha256_hex, signature};
    use std::collections::BTreeMap;

    /// Verifies a presigned URL by SigV4's published steps
    /// ([`crate::testing::sigv4`]), independently of the signer.
    fn verify(url: &str, secret: &str, cluster: &str) -> Result<(), String> {
        let (origin, query) = url.split_once("/?").ok_or("no query")?;
        let host = origin.trim_start_matches("https://");
        let params: BTreeMap<String, String> = form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let given = params.get("X-Amz-Signature").ok_or("no signature")?;
        let amz_date = params.get("X-Amz-Date").ok_or("no date")?;
        let credential = params.get("X-Amz-Credential").ok_or("no credential")?;
        let scope = credential.split_once('/').ok_or("no scope")?.1;
        let signed_headers = params.get("X-Amz-SignedHeaders").ok_or("no headers")?;
        let canonical_request = format!(
            "GET\n/\n{}\nhost:{host}\n{CLUSTER_ID_HEADER}:{cluster}\n\n{signed_headers}\n{}",
            canonical_query(query, &["X-Amz-Signature"]),
            sha256_hex(b"")
        );
        let expected = signature(secret, amz_date, scope, &canonical_request)?;
        if &expected == given {
            Ok(())
        } else {
            Err(format!("signature {given}, expected {expected}"))
        }
    }

    fn decoded(token: &str) -> String {
        let body = token.strip_prefix(TOKEN_PREFIX).unwrap();
        String::from_utf8(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(body)
                .unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn a_token_is_a_get_caller_identity_url_presigned_for_the_cluster_and_verifiable_by_sigv4() {
        let credentials = Credentials::new(
            "ASIAEXAMPLEKEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            Some("session/token+with=odd chars".to_owned()),
            None,
            "test",
        );
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600); // 2026-01-01
        let token = eks_token(&credentials, "eu-west-1", "data-science", at).unwrap();
        let url = decoded(&token);
        assert!(
            url.starts_with(
                "https://sts.eu-west-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&"
            ),
            "{url}"
        );
        let params: BTreeMap<String, String> =
            form_urlencoded::parse(url.split_once('?').unwrap().1.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        assert_eq!(params["X-Amz-Algorithm"], "AWS4-HMAC-SHA256");
        assert_eq!(params["X-Amz-Expires"], "60");
        assert_eq!(params["X-Amz-Date"], "20260101T000000Z");
        assert_eq!(
            params["X-Amz-Credential"],
            "ASIAEXAMPLEKEY/20260101/eu-west-1/sts/aws4_request"
        );
        assert_eq!(params["X-Amz-SignedHeaders"], "host;x-k8s-aws-id");
        assert_eq!(
            params["X-Amz-Security-Token"],
            "session/token+with=odd chars"
        );
        verify(
            &url,
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "data-science",
        )
        .unwrap();

        // The check can fail: the URL signed for one cluster is not valid for
        // another, nor with another secret.
        assert!(verify(&url, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "other").is_err());
        assert!(verify(&url, "another-secret", "data-science").is_err());
        assert!(!token.contains('='), "base64url without padding: {token}");
    }
}
