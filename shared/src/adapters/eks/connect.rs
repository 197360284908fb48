//! Clients of Kubernetes clusters' API servers, one per registered cluster.
//!
//! [`KubeConnect`] is what the engine, the reconciler and the log reader
//! ask for a cluster's client. [`IamConnector`] is the one the functions
//! use: it reaches the API server at the registry's `endpoint`, trusts the
//! registry's `certificate_authority`, and presents the IAM bearer token of
//! [`super::token`] made from the function's own credentials (the EKS
//! access entry, or the aws-auth mapping, gives that role its Kubernetes
//! user). A client is kept for [`TOKEN_LIFETIME`] and then made again with
//! a fresh token, and made again at once when the cluster's settings
//! change. Tests connect through kube-rs's `tower-test` mock instead.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};

use super::token::{TOKEN_LIFETIME, eks_token};
use crate::domain::cluster::Cluster;
use crate::error::EngineError;

/// Gives the API server client of a Kubernetes cluster.
#[async_trait]
pub trait KubeConnect: Send + Sync {
    /// A client of `cluster`'s API server.
    async fn client(&self, cluster: &Cluster) -> Result<kube::Client, EngineError>;
}

/// A cached client, with what it was made from.
struct Kept {
    settings: String,
    made: Instant,
    client: kube::Client,
}

/// Connects to EKS clusters with IAM bearer tokens.
pub struct IamConnector {
    credentials: Option<SharedCredentialsProvider>,
    region: String,
    kept: Mutex<HashMap<String, Kept>>,
}

impl std::fmt::Debug for IamConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IamConnector")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl IamConnector {
    /// A connector signing with `credentials` (none: every connection
    /// fails, saying so); a cluster that names no region is in `region`.
    pub fn new(credentials: Option<SharedCredentialsProvider>, region: &str) -> Self {
        Self {
            credentials,
            region: region.to_owned(),
            kept: Mutex::new(HashMap::new()),
        }
    }

    fn kept(&self, cluster: &str, settings: &str) -> Option<kube::Client> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.get(cluster)
            .filter(|k| k.settings == settings && k.made.elapsed() < TOKEN_LIFETIME)
            .map(|k| k.client.clone())
    }
}

/// What refuses to connect to `cluster`: settings that cannot make a client.
fn unusable(cluster: &str, what: impl std::fmt::Display) -> EngineError {
    EngineError::Permanent {
        message: format!(
            "cannot connect to Kubernetes cluster {cluster}: {what}: fix its \"kubernetes\" settings in the cluster registry"
        ),
        source: None,
    }
}

/// How long a connection to an API server may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request may wait for its answer's head (a watch's events
/// then stream for as long as it lasts).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

/// The roots a client trusts: the registry's CA (base64 of its PEM, as
/// `aws eks describe-cluster` gives `certificateAuthority.data`).
fn trusted_roots(cluster: &str, ca: &str) -> Result<rustls::RootCertStore, EngineError> {
    use base64::Engine as _;
    use rustls::pki_types::{CertificateDer, pem::PemObject as _};
    let compact: String = ca.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.is_empty() {
        return Err(unusable(
            cluster,
            "it has no certificate_authority: give its CA's PEM base64-encoded, as `aws eks describe-cluster` gives certificateAuthority.data",
        ));
    }
    let pem = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|e| unusable(cluster, format!("certificate_authority is not base64: {e}")))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| {
            unusable(
                cluster,
                format!("certificate_authority is not a PEM certificate: {e}"),
            )
        })?;
        roots.add(cert).map_err(|e| {
            unusable(
                cluster,
                format!("certificate_authority is not a CA certificate: {e}"),
            )
        })?;
    }
    if roots.is_empty() {
        return Err(unusable(
            cluster,
            "certificate_authority holds no PEM certificate",
        ));
    }
    Ok(roots)
}

/// A client of the API server at `settings.endpoint`, trusting the
/// registry's CA alone and presenting `token`: HTTPS by hyper and rustls
/// (ring), the endpoint as every request's base, the bearer token on each,
/// and kube's typed requests over that. No kubeconfig is read or made, so
/// none of kube's kubeconfig machinery (exec plugins, auth providers, the
/// platform's roots) is in the functions.
pub fn client_with_token(cluster: &Cluster, token: &str) -> Result<kube::Client, EngineError> {
    let Some(settings) = &cluster.kubernetes else {
        return Err(unusable(&cluster.name, "it has no kubernetes settings"));
    };
    let base: http::Uri = settings
        .endpoint
        .trim()
        .parse()
        .map_err(|e| unusable(&cluster.name, format!("endpoint is not a URL: {e}")))?;
    let roots = trusted_roots(&cluster.name, &settings.certificate_authority)?;
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| unusable(&cluster.name, e))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut tcp = hyper_util::client::legacy::connect::HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .wrap_connector(tcp);
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, kube::client::Body>(https);
    let mut bearer = http::HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| {
        unusable(
            &cluster.name,
            format!("the token is not a header value: {e}"),
        )
    })?;
    bearer.set_sensitive(true);
    let service = tower::ServiceBuilder::new()
        .layer(kube::client::middleware::BaseUriLayer::new(base))
        .map_request(move |mut request: http::Request<kube::client::Body>| {
            request
                .headers_mut()
                .insert(http::header::AUTHORIZATION, bearer.clone());
            request
        })
        .timeout(ANSWER_TIMEOUT)
        .service(http);
    Ok(kube::Client::new(service, cluster.job_namespace()))
}

#[async_trait]
impl KubeConnect for IamConnector {
    async fn client(&self, cluster: &Cluster) -> Result<kube::Client, EngineError> {
        let Some(settings) = &cluster.kubernetes else {
            return Err(unusable(&cluster.name, "it has no kubernetes settings"));
        };
        let key = serde_json::to_string(&(settings, &cluster.namespace, &cluster.region))
            .unwrap_or_default();
        if let Some(client) = self.kept(&cluster.name, &key) {
            return Ok(client);
        }
        let Some(provider) = &self.credentials else {
            return Err(EngineError::Permanent {
                message: format!(
                    "no AWS credentials to sign the EKS token of cluster {} with: the function has none configured",
                    cluster.name
                ),
                source: None,
            });
        };
        let credentials =
            provider
                .provide_credentials()
                .await
                .map_err(|e| EngineError::Retryable {
                    message: format!(
                        "no AWS credentials to sign the EKS token of cluster {} with: {e}",
                        cluster.name
                    ),
                    source: Some(Box::new(e)),
                })?;
        let region = if cluster.region.is_empty() {
            &self.region
        } else {
            &cluster.region
        };
        let token = eks_token(
            &credentials,
            region,
            settings.eks_cluster(&cluster.name),
            SystemTime::now(),
        )?;
        let client = client_with_token(cluster, &token)?;
        self.kept.lock().unwrap_or_else(|e| e.into_inner()).insert(
            cluster.name.clone(),
            Kept {
                settings: key,
                made: Instant::now(),
                client: client.clone(),
            },
        );
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    //! The client's HTTPS stack against a TLS server of the test's own, with
    //! a CA and a server certificate made here: only the registry's CA is
    //! trusted, the endpoint's path is every request's base, and the bearer
    //! token is on each request.

    use std::sync::{Arc, Mutex};

    use base64::Engine as _;
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, ListParams};
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::domain::cluster::KubernetesSettings;

    /// A CA, and an API server certificate for 127.0.0.1 it signed.
    fn certificates() -> (String, rustls::ServerConfig) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::from_params(&ca, &ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let server = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![server.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
        let ca_data = base64::engine::general_purpose::STANDARD.encode(ca_cert.pem());
        (ca_data, config)
    }

    /// Serves TLS with `config` on a free port, answering every request
    /// with an empty pod list and recording its request line and
    /// Authorization header.
    async fn api_server(config: rustls::ServerConfig) -> (u16, Arc<Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, record) = (acceptor.clone(), record.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n")
                        && tls.read(&mut byte).await.unwrap_or(0) == 1
                    {
                        head.push(byte[0]);
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let line = head.lines().next().unwrap_or_default().to_owned();
                    let auth = head
                        .lines()
                        .find_map(|l| l.strip_prefix("authorization: "))
                        .unwrap_or("none")
                        .to_owned();
                    record.lock().unwrap().push(format!("{line} | {auth}"));
                    let body = r#"{"apiVersion":"v1","kind":"PodList","metadata":{"resourceVersion":"7"},"items":[]}"#;
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tls.write_all(answer.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        (port, seen)
    }

    fn cluster(endpoint: String, ca: String) -> Cluster {
        Cluster::create(
            crate::domain::cluster::ClusterInput {
                name: Some("gpu".into()),
                engine: Some("eks".into()),
                namespace: Some("flotilla".into()),
                kubernetes: Some(KubernetesSettings {
                    endpoint,
                    certificate_authority: ca,
                    ..KubernetesSettings::default()
                }),
                ..Default::default()
            },
            chrono::DateTime::UNIX_EPOCH,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn the_client_trusts_the_registrys_ca_keeps_the_endpoints_path_and_sends_the_token() {
        let (ca, config) = certificates();
        let (port, seen) = api_server(config).await;
        let gpu = cluster(format!("https://127.0.0.1:{port}/k8s"), ca);
        let client = client_with_token(&gpu, "k8s-aws-v1.token").unwrap();
        let pods: Api<Pod> = Api::namespaced(client, "flotilla");
        let list = pods
            .list(&ListParams::default().labels("flotilla.run_id"))
            .await
            .unwrap();
        assert_eq!(list.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(
            seen.lock().unwrap().as_slice(),
            [
                "GET /k8s/api/v1/namespaces/flotilla/pods?&labelSelector=flotilla.run_id HTTP/1.1 | Bearer k8s-aws-v1.token"
            ]
        );
    }

    #[tokio::test]
    async fn a_server_whose_certificate_another_ca_signed_is_not_trusted() {
        let (_, config) = certificates();
        let (other_ca, _) = certificates();
        let (port, seen) = api_server(config).await;
        let gpu = cluster(format!("https://127.0.0.1:{port}"), other_ca);
        let client = client_with_token(&gpu, "secret-token").unwrap();
        let pods: Api<Pod> = Api::namespaced(client, "flotilla");
        let e = pods.list(&ListParams::default()).await.unwrap_err();
        assert!(
            format!("{e:?}").contains("InvalidCertificate"),
            "refused for the certificate: {e:?}"
        );
        assert!(seen.lock().unwrap().is_empty(), "no request, no token sent");
    }

    #[test]
    fn a_certificate_authority_that_is_not_a_pem_certificate_is_refused_saying_so() {
        let empty = trusted_roots("gpu", "").unwrap_err();
        assert!(
            empty.to_string().contains("has no certificate_authority"),
            "{empty}"
        );
        let text = base64::engine::general_purpose::STANDARD.encode("not a certificate");
        let none = trusted_roots("gpu", &text).unwrap_err();
        assert!(
            none.to_string().contains("holds no PEM certificate"),
            "{none}"
        );
    }
}
