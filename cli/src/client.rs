//! The API client the `flotilla` commands share: where the server is, how a
//! request is authenticated, and the one place an answer becomes a
//! [`CliError`] (the server's message and `problems`, or what failed on
//! the way there).

use std::time::{Duration, SystemTime};

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::config::{AuthChoice, Target};
use crate::sigv4::Signer;

/// The server `flotilla` talks to when neither `--server` nor
/// `FLOTILLA_URL` names one: `flotilla serve`'s default address.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:5000";

/// What went wrong in a command, and the exit code it gives.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command was used wrongly; the message says how to use it.
    #[error("{0}")]
    Usage(String),
    /// The server answered with an error.
    #[error("{message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The server's message.
        message: String,
        /// The server's problems, one per field.
        problems: Vec<String>,
    },
    /// What was given was checked here, by the server's own rules, and
    /// refused before anything was sent.
    #[error("{message}")]
    Checked {
        /// What was refused.
        message: String,
        /// The problems, one per field.
        problems: Vec<String>,
    },
    /// The server could not be reached, or its answer read.
    #[error("{0}")]
    Transport(String),
}

impl CliError {
    /// 2 for a wrong use of the command, 1 for anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => 2,
            Self::Api { .. } | Self::Checked { .. } | Self::Transport(_) => 1,
        }
    }

    /// The lines to print on stderr.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![match self {
            Self::Api {
                status, message, ..
            } => format!("error ({status}): {message}"),
            other => format!("error: {other}"),
        }];
        if let Self::Api { problems, .. } | Self::Checked { problems, .. } = self {
            // A 400 about one field says it twice: as the message and as its
            // only problem.
            let repeated =
                matches!(&problems[..], [only] if self.to_string().starts_with(only.as_str()));
            if !repeated {
                lines.extend(problems.iter().map(|p| format!("  - {p}")));
            }
        }
        lines
    }
}

/// How requests prove who sends them.
#[derive(Debug, Clone, Default)]
pub enum Auth {
    /// No credentials: `flotilla serve` on loopback without a token file.
    #[default]
    None,
    /// `Authorization: Bearer <token>`: a token of `flotilla serve
    /// --auth-token-file`, or a JWT the stack's authorizer takes.
    Bearer(String),
    /// SigV4 with AWS credentials, for a stack deployed with `ApiAuth=IAM`.
    Iam(Signer),
}

impl Auth {
    /// Whether requests name their caller.
    pub fn names_caller(&self) -> bool {
        matches!(self, Self::Bearer(_) | Self::Iam(_))
    }
}

/// `e` and each of its sources, joined by `: `.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

/// One server, with its credentials.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    auth: Auth,
    owner: Option<String>,
}

impl Client {
    /// A client of `target`'s server (`http://host:port` or `https://…`,
    /// with or without a trailing slash), authenticated as it says.
    pub async fn new(target: Target) -> Result<Self, CliError> {
        let server = target.server;
        let base = server.trim().trim_end_matches('/').to_owned();
        let parsed = reqwest::Url::parse(&base).map_err(|e| {
            CliError::Usage(format!(
                "--server {server:?} is not a URL ({e}); give one like {DEFAULT_SERVER}"
            ))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(CliError::Usage(format!(
                "--server {server:?} must be an http:// or https:// URL"
            )));
        }
        let auth = match target.auth {
            AuthChoice::None => Auth::None,
            AuthChoice::Bearer(token) => Auth::Bearer(token),
            AuthChoice::Iam {
                region,
                aws_profile,
            } => Auth::Iam(Signer::from_chain(&parsed, region, aws_profile).await?),
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("flotilla-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::Transport(format!("cannot make an HTTP client: {e}")))?;
        Ok(Self {
            http,
            base,
            auth,
            owner: target.owner,
        })
    }

    /// The credentials in use.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// The owner of launched runs the profile (or `--owner`) names.
    pub fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(String, String)],
    ) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .query(query);
        if let Auth::Bearer(token) = &self.auth {
            request = request.bearer_auth(token);
        }
        request
    }

    /// `GET path?query`.
    pub async fn get(&self, path: &str, query: &[(String, String)]) -> Result<Value, CliError> {
        self.send(self.request(Method::GET, path, query)).await
    }

    /// `method path` with a JSON body.
    pub async fn call(&self, method: Method, path: &str, body: &Value) -> Result<Value, CliError> {
        self.send(self.request(method, path, &[]).json(body)).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Result<Value, CliError> {
        self.send(self.request(Method::DELETE, path, &[])).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, CliError> {
        let mut request = request
            .build()
            .map_err(|e| CliError::Usage(format!("cannot make the request: {}", chain(&e))))?;
        if let Auth::Iam(signer) = &self.auth {
            signer.sign(&mut request, SystemTime::now()).await?;
        }
        let response = self
            .http
            .execute(request)
            .await
            .map_err(|e| self.unreachable(&e))?;
        self.body(response).await
    }

    fn unreachable(&self, e: &reqwest::Error) -> CliError {
        let mut message = format!("cannot reach {}: {}", self.base, chain(e));
        if e.is_connect() {
            message.push_str(" (is `flotilla serve` running there? --server or FLOTILLA_URL names another server)");
        }
        CliError::Transport(message)
    }

    async fn body(&self, response: reqwest::Response) -> Result<Value, CliError> {
        let status = response.status();
        let text = response.text().await.map_err(|e| {
            CliError::Transport(format!("cannot read the answer of {}: {e}", self.base))
        })?;
        let value: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_success() {
            return Ok(value);
        }
        let message = value
            .get("error")
            .or_else(|| value.get("message"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| value.as_str().map(str::to_owned))
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
        let problems = value
            .get("problems")
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let message = match (status, &self.auth) {
            (StatusCode::UNAUTHORIZED, Auth::None) => format!(
                "{message} (give a token with --token, FLOTILLA_TOKEN, --token-file or a profile; --auth iam for a stack deployed with ApiAuth=IAM)"
            ),
            (StatusCode::FORBIDDEN, Auth::Iam(_)) => format!(
                "{message} (the request was signed for IAM: do these AWS credentials and region belong to the stack's account, and may they call execute-api:Invoke?)"
            ),
            _ => message,
        };
        Err(CliError::Api {
            status: status.as_u16(),
            message,
            problems,
        })
    }
}

/// `s` as one path segment.
pub fn segment(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
