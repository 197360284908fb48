//! The run log archive's objects on S3, over signed HTTP requests: a HEAD,
//! a ranged GET and a PUT of one object at a time. Each request is signed
//! with SigV4 by the SDK's signer (`aws-sigv4`, as S3 wants it: the path
//! encoded once, the payload's SHA-256 in `x-amz-content-sha256`) with the
//! function's credentials, and sent with hyper over rustls trusting the
//! machine's root certificates (`rustls-native-certs`, as the SDK's own
//! client does).
//!
//! These three calls are all the archive needs; the S3 SDK would add about
//! 0.8 MB to each function zip that reads or writes the archive. Objects
//! are addressed by virtual host (`https://<bucket>.s3.<region>.amazonaws.com/<key>`),
//! or by path under an endpoint given (an emulator).

use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// How long one request may take, its answer's body included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Most bytes of an error answer kept, for its message.
const ERROR_BYTES: usize = 4096;

/// One bucket's objects.
#[derive(Clone)]
pub struct S3Objects {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    credentials: Option<SharedCredentialsProvider>,
    region: String,
    endpoint: Option<String>,
    bucket: String,
}

impl std::fmt::Debug for S3Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Objects")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// An answer: its status and (at most the bytes asked for of) its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Body.
    pub body: Vec<u8>,
}

impl Answer {
    /// The answer as an error message: its status and S3's `<Code>`.
    pub fn problem(&self, what: &str) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let code = text
            .split_once("<Code>")
            .and_then(|(_, rest)| rest.split_once("</Code>"))
            .map_or("", |(code, _)| code);
        format!("S3 answered {} to {what} {code}", self.status)
            .trim_end()
            .to_owned()
    }
}

/// A path segment encoded as S3 signs it: everything but RFC 3986's
/// unreserved characters percent-encoded.
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl S3Objects {
    /// The objects of `bucket` in `region`, at `endpoint` when given (by
    /// path), signed with `credentials` (none: every request fails, saying
    /// so).
    pub fn new(
        bucket: &str,
        region: &str,
        endpoint: Option<&str>,
        credentials: Option<SharedCredentialsProvider>,
    ) -> Result<Self, String> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| format!("cannot read this machine's root certificates: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(https),
            credentials,
            region: region.to_owned(),
            endpoint: endpoint.map(|e| e.trim_end_matches('/').to_owned()),
            bucket: bucket.to_owned(),
        })
    }

    /// The URL of `key`.
    pub fn url(&self, key: &str) -> String {
        let path = key
            .split('/')
            .map(encode_segment)
            .collect::<Vec<_>>()
            .join("/");
        match &self.endpoint {
            Some(endpoint) => format!("{endpoint}/{}/{path}", self.bucket),
            None => format!(
                "https://{}.s3.{}.amazonaws.com/{path}",
                self.bucket, self.region
            ),
        }
    }

    /// Sends `method` on `key` with `headers` and `body`, signed; keeps at
    /// most `limit` bytes of a successful answer's body.
    pub async fn send(
        &self,
        method: &str,
        key: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
        limit: usize,
    ) -> Result<Answer, String> {
        let provider = self
            .credentials
            .as_ref()
            .ok_or("the function has no AWS credentials to sign with")?;
        let credentials = provider
            .provide_credentials()
            .await
            .map_err(|e| format!("cannot get AWS credentials: {e}"))?;
        let identity = credentials.into();
        let url = self.url(key);
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("{url} is not a URL: {e}"))?;
        let host = uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .ok_or_else(|| format!("{url} has no host"))?;
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| format!("cannot sign: {e}"))?
            .into();
        let mut all: Vec<(&str, &str)> = vec![("host", host.as_str())];
        all.extend(headers.iter().map(|(k, v)| (*k, v.as_str())));
        let signable = SignableRequest::new(
            method,
            &url,
            all.iter().copied(),
            SignableBody::Bytes(&body),
        )
        .map_err(|e| format!("cannot sign: {e}"))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| format!("cannot sign: {e}"))?
            .into_parts();
        let mut request = http::Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        let mut request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("cannot make the request: {e}"))?;
        instructions.apply_to_request_http1x(&mut request);
        let exchange = async {
            let answer = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("{method} {url}: {e}"))?;
            let status = answer.status().as_u16();
            let keep = if (200..300).contains(&status) {
                limit
            } else {
                ERROR_BYTES
            };
            let body = Limited::new(answer.into_body(), keep.max(1))
                .collect()
                .await
                .map_err(|e| format!("{method} {url}: reading the answer: {e}"))?
                .to_bytes()
                .to_vec();
            Ok::<_, String>(Answer { status, body })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| {
                format!(
                    "{method} {url} took longer than {} s",
                    REQUEST_TIMEOUT.as_secs()
                )
            })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_addressed_by_virtual_host_on_aws_and_by_path_at_an_endpoint() {
        let aws = S3Objects::new("run-logs", "eu-west-1", None, None).unwrap();
        assert_eq!(
            aws.url("logs/r 1/1.log"),
            "https://run-logs.s3.eu-west-1.amazonaws.com/logs/r%201/1.log"
        );
        let moto = S3Objects::new(
            "run-logs",
            "us-east-1",
            Some("http://127.0.0.1:5000/"),
            None,
        )
        .unwrap();
        assert_eq!(
            moto.url("logs/r-1/2.log"),
            "http://127.0.0.1:5000/run-logs/logs/r-1/2.log"
        );
    }

    /// An S3 stand-in on a loopback port that checks every request's
    /// signature as S3 does (with `shared::testing::sigv4`, written out
    /// apart from the SDK's signer) and answers a GET with `hello, world`.
    async fn checking_server() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use axum::body::Bytes as Body;
        use axum::http::{HeaderMap, Method, Uri};
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Body| {
                let log = log.clone();
                async move {
                    let headers: Vec<(String, String)> = headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
                        .collect();
                    let received = crate::testing::sigv4::Received {
                        method: method.as_str(),
                        path: uri.path(),
                        query: uri.query().unwrap_or_default(),
                        headers: &headers,
                        body: &body,
                    };
                    let verdict = crate::testing::sigv4::verify_s3_signed(&received, "sekrit");
                    let line = match &verdict {
                        Ok(v) => format!("{} {} ok {} {}", method, uri.path(), v.service, v.region),
                        Err(e) => format!("{} {} refused: {e}", method, uri.path()),
                    };
                    log.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                    match verdict {
                        Err(_) => (
                            axum::http::StatusCode::FORBIDDEN,
                            "<Error><Code>SignatureDoesNotMatch</Code></Error>".to_owned(),
                        ),
                        Ok(_) if method == Method::GET => (
                            axum::http::StatusCode::PARTIAL_CONTENT,
                            "hello, world".to_owned(),
                        ),
                        Ok(_) => (axum::http::StatusCode::OK, String::new()),
                    }
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, seen)
    }

    fn signer(secret: &str) -> Option<SharedCredentialsProvider> {
        Some(SharedCredentialsProvider::new(
            aws_credential_types::Credentials::new("AKIDEXAMPLE", secret, None, None, "test"),
        ))
    }

    #[tokio::test]
    async fn every_request_is_signed_as_s3_checks_it_and_another_secret_is_refused() {
        let (endpoint, seen) = checking_server().await;
        let objects =
            S3Objects::new("run-logs", "eu-west-1", Some(&endpoint), signer("sekrit")).unwrap();
        let range = [("range", "bytes=0-11".to_owned())];
        let got = objects
            .send("GET", "logs/run 1/1.log", &range, Vec::new(), 64)
            .await
            .unwrap();
        assert_eq!(
            (got.status, got.body.as_slice()),
            (206, &b"hello, world"[..])
        );
        let headers = [("content-type", "text/plain; charset=utf-8".to_owned())];
        let put = objects
            .send("PUT", "logs/r-1/2.log", &headers, b"the log\n".to_vec(), 64)
            .await
            .unwrap();
        assert_eq!(put.status, 200);
        let head = objects
            .send("HEAD", "logs/r-1/2.log", &[], Vec::new(), 0)
            .await
            .unwrap();
        assert_eq!(head.status, 200);

        let forged =
            S3Objects::new("run-logs", "eu-west-1", Some(&endpoint), signer("guess")).unwrap();
        let refused = forged
            .send("GET", "logs/r-1/2.log", &[], Vec::new(), 64)
            .await
            .unwrap();
        assert_eq!(refused.status, 403);
        assert!(refused.problem("GET").ends_with("SignatureDoesNotMatch"));
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen[..3],
            [
                "GET /run-logs/logs/run%201/1.log ok s3 eu-west-1",
                "PUT /run-logs/logs/r-1/2.log ok s3 eu-west-1",
                "HEAD /run-logs/logs/r-1/2.log ok s3 eu-west-1",
            ]
        );
        assert!(seen[3].contains("refused"), "{seen:?}");
    }

    #[tokio::test]
    async fn without_credentials_a_request_fails_saying_so() {
        let objects = S3Objects::new("b", "us-east-1", Some("http://127.0.0.1:9"), None).unwrap();
        let error = objects
            .send("GET", "k", &[], Vec::new(), 1)
            .await
            .err()
            .unwrap_or_default();
        assert!(error.contains("no AWS credentials"), "{error}");
    }

    #[test]
    fn an_error_answer_names_its_status_and_s3s_code() {
        let answer = Answer {
            status: 403,
            body: b"<Error><Code>AccessDenied</Code><Message>no</Message></Error>".to_vec(),
        };
        assert_eq!(
            answer.problem("GET logs/r/1.log"),
            "S3 answered 403 to GET logs/r/1.log AccessDenied"
        );
    }
}
