//! Who may call this server, checked before any route: the bearer tokens of
//! a token file (each naming a user), the `Host` names a request may carry
//! (so a page on another site cannot reach a local server through DNS
//! rebinding), and the `Origin`s a request that changes something may come
//! from (so a page on another site cannot post to it). The caller found is
//! put in the request's extensions as a [`Caller`] for the handlers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::domain::identity::Caller;
use crate::http::error::ApiError;

/// The tokens of a token file: one per line, `<token> <user> [admin]`;
/// `#` starts a comment. Only their SHA-256 digests are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenTable {
    path: PathBuf,
    entries: Vec<([u8; 32], Caller)>,
}

/// Why a token file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// It could not be read or made.
    #[error("could not {what} the token file {path}")]
    Io {
        /// The step.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A line is not `<token> <user> [admin]`.
    #[error("{path} line {line}: {problem}")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        problem: String,
    },
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Shortest token a file may hold: guessing one must be hopeless.
pub const MIN_TOKEN_CHARS: usize = 16;

impl TokenTable {
    /// Reads `path`; when it does not exist, makes it (mode 0600) with one
    /// random token for `user`, an admin. Says whether it made it.
    #[cfg(feature = "embedded")]
    pub fn load_or_create(path: &Path, user: &str) -> Result<(Self, bool), TokenFileError> {
        let io = |what| {
            let path = path.to_owned();
            move |source| TokenFileError::Io { what, path, source }
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Ok((Self::parse(path, &text)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let mut bytes = [0u8; 32];
                getrandom::fill(&mut bytes)
                    .map_err(|e| io("make a token for")(std::io::Error::other(e.to_string())))?;
                let token = hex::encode(bytes);
                let user = if user.trim().is_empty() {
                    "admin"
                } else {
                    user
                };
                let text = format!(
                    "# flotilla serve tokens, one per line: <token> <user> [admin]\n{token} {user} admin\n"
                );
                let mut file = std::fs::OpenOptions::new()
                    .create_new(true)
                    .write(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(io("create"))?;
                file.write_all(text.as_bytes()).map_err(io("write"))?;
                file.sync_all().map_err(io("write"))?;
                Ok((Self::parse(path, &text)?, true))
            }
            Err(e) => Err(io("read")(e)),
        }
    }

    /// The table of the lines of `text`, read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, TokenFileError> {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let problem = |problem: String| TokenFileError::Line {
                path: path.to_owned(),
                line: line_no,
                problem,
            };
            let words: Vec<&str> = line.split_whitespace().collect();
            let caller = match words.as_slice() {
                [_, user] => Caller::user(*user),
                [_, user, "admin"] => Caller::admin(*user),
                _ => {
                    return Err(problem(
                        "write `<token> <user>` or `<token> <user> admin`".into(),
                    ));
                }
            };
            let token = words.first().copied().unwrap_or_default();
            if token.chars().count() < MIN_TOKEN_CHARS {
                return Err(problem(format!(
                    "a token must be at least {MIN_TOKEN_CHARS} characters: use a random one, e.g. from `openssl rand -hex 32`"
                )));
            }
            entries.push((digest(token), caller));
        }
        if entries.is_empty() {
            return Err(TokenFileError::Line {
                path: path.to_owned(),
                line: 0,
                problem: "it holds no token: add a line `<token> <user> [admin]`".into(),
            });
        }
        Ok(Self {
            path: path.to_owned(),
            entries,
        })
    }

    /// The file the tokens came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The caller `token` names.
    pub fn caller(&self, token: &str) -> Option<&Caller> {
        let wanted = digest(token);
        self.entries
            .iter()
            .find(|(d, _)| *d == wanted)
            .map(|(_, c)| c)
    }
}

/// The `Host` names a request may carry: IP addresses always (a rebinding
/// page cannot make a browser send one for its own site), `localhost` and
/// its subdomains, and the names given.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostRule {
    names: Vec<String>,
}

impl HostRule {
    /// `localhost`, IP addresses and `names` (lower-cased; a leading `.`
    /// allows every subdomain).
    pub fn new(names: impl IntoIterator<Item = String>) -> Self {
        Self {
            names: names
                .into_iter()
                .map(|n| n.trim().to_ascii_lowercase())
                .filter(|n| !n.is_empty())
                .collect(),
        }
    }

    /// Whether a request may name `host` (a `Host` value, port and all).
    pub fn allows(&self, host: &str) -> bool {
        let name = host_name(host).to_ascii_lowercase();
        if name.parse::<std::net::IpAddr>().is_ok()
            || name == "localhost"
            || name.ends_with(".localhost")
        {
            return true;
        }
        self.names.iter().any(|allowed| {
            allowed == &name
                || allowed
                    .strip_prefix('.')
                    .is_some_and(|domain| name.ends_with(&format!(".{domain}")) || name == domain)
        })
    }
}

/// `host` without its port, IPv6 brackets removed.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

/// What the access layer checks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Access {
    /// Bearer tokens every API request needs, when set.
    pub tokens: Option<Arc<TokenTable>>,
    /// The `Host` names requests may carry, when checked.
    pub hosts: Option<HostRule>,
    /// Check that a request that changes something comes from this server's
    /// own pages or an allowed origin.
    pub check_origin: bool,
}

impl Access {
    /// Whether anything is checked at all.
    pub fn is_open(&self) -> bool {
        self.tokens.is_none() && self.hosts.is_none() && !self.check_origin
    }
}

/// The access layer's state: what to check and the CORS origins allowed.
#[derive(Debug, Clone)]
pub struct Guard {
    /// The checks.
    pub access: Access,
    /// Origins allowed by CORS (`*`: any).
    pub cors_allowed_origins: Vec<String>,
}

fn forbidden(message: String) -> Response {
    ApiError::new(StatusCode::FORBIDDEN, message).into_response()
}

/// The `Host` of a request: its header, else the URI's authority.
fn host_of(request: &Request) -> Option<String> {
    request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()))
}

/// The routes a caller may use without a credential, as API Gateway route
/// keys: [`is_public`]'s routes, and a run's report of its own status (which
/// carries the run's token instead). The stack gives each an unauthenticated
/// route; every other route needs the caller's JWT or SigV4 signature.
pub const PUBLIC_ROUTES: [&str; 8] = [
    "GET /",
    "GET /ui/{proxy+}",
    "GET /api/ui-config",
    "GET /api/openapi.json",
    "GET /api/v1/health",
    "GET /api/v6/health",
    "PUT /api/v1/{run_id}/status",
    "PUT /api/v6/{run_id}/status",
];

/// Routes any caller may use without a token: the UI's files and how it
/// signs in (it asks for the token), health and the API document.
fn is_public(method: &Method, path: &str) -> bool {
    method == Method::GET
        && (path == "/"
            || path.starts_with("/ui/")
            || path == "/api/openapi.json"
            || path == "/api/ui-config"
            || (path.starts_with("/api/v") && path.ends_with("/health")))
}

/// A run's own report of its status, which carries the run's token instead.
fn is_run_report(method: &Method, path: &str, headers: &HeaderMap) -> bool {
    method == Method::PUT
        && path.starts_with("/api/v")
        && path.ends_with("/status")
        && headers.contains_key(crate::http::runs::RUN_TOKEN_HEADER)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The layer: refuses a foreign `Host`, a cross-site change and a missing or
/// unknown token, and puts the [`Caller`] in the request's extensions.
pub async fn guard(State(guard): State<Arc<Guard>>, mut request: Request, next: Next) -> Response {
    let access = &guard.access;
    let host = host_of(&request);
    if let Some(rule) = &access.hosts {
        match host.as_deref() {
            Some(h) if rule.allows(h) => {}
            Some(h) => {
                return forbidden(format!(
                    "this server does not answer to the name `{}`: open it by its address or localhost, or start it with --allowed-hosts {}",
                    host_name(h),
                    host_name(h)
                ));
            }
            None => return forbidden("a request must say which Host it is for".into()),
        }
    }
    let method = request.method().clone();
    let changes = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    if access.check_origin
        && changes
        && let Some(origin) = request
            .headers()
            .get(header::ORIGIN)
            .map(|v| v.to_str().unwrap_or("?").to_owned())
    {
        let own = host
            .as_deref()
            .is_some_and(|h| origin_host(&origin).is_some_and(|o| o.eq_ignore_ascii_case(h)));
        let allowed = guard
            .cors_allowed_origins
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(&origin));
        if !own && !allowed {
            return forbidden(format!(
                "a page at {origin} may not change anything on this server: use this server's own UI, or start it with --cors-origins {origin}"
            ));
        }
    }
    let caller = match &access.tokens {
        None => Caller::Anyone,
        Some(table) => {
            let path = request.uri().path();
            match bearer(request.headers()).and_then(|t| table.caller(t)) {
                Some(caller) => caller.clone(),
                None if is_public(&method, path)
                    || is_run_report(&method, path, request.headers()) =>
                {
                    Caller::Anyone
                }
                None => {
                    let said = if bearer(request.headers()).is_some() {
                        "this token is not one of this server's"
                    } else {
                        "this server needs a token"
                    };
                    let mut response = ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        format!(
                            "{said}: send `Authorization: Bearer <token>` with a token from {} (ask whoever runs the server for one)",
                            table.path().display()
                        ),
                    )
                    .into_response();
                    response.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        axum::http::HeaderValue::from_static("Bearer realm=\"flotilla\""),
                    );
                    return response;
                }
            }
        }
    };
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// The caller of a request, as the access layer found them ([`Caller::Anyone`]
/// where no layer runs).
#[derive(Debug, Clone)]
pub struct Who(pub Caller);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Who {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<Caller>()
                .cloned()
                .unwrap_or(Caller::Anyone),
        ))
    }
}

/// `host[:port]` of an origin such as `https://ui.example.com:8443`.
fn origin_host(origin: &str) -> Option<&str> {
    let (_, rest) = origin.split_once("://")?;
    Some(rest.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateways_public_routes_are_exactly_the_ones_served_without_a_token() {
        let mut with_token = HeaderMap::new();
        with_token.insert(
            crate::http::runs::RUN_TOKEN_HEADER,
            axum::http::HeaderValue::from_static("t"),
        );
        for key in PUBLIC_ROUTES {
            let (method, path) = key.split_once(' ').unwrap();
            let method: Method = method.parse().unwrap();
            let path = path
                .replace("{proxy+}", "js/app.js")
                .replace("{run_id}", "r1");
            assert!(
                is_public(&method, &path) || is_run_report(&method, &path, &with_token),
                "{key} is public at the gateway but needs a token here"
            );
        }
        for (method, path) in [
            (Method::GET, "/api/v6/task"),
            (Method::GET, "/api/v6/history"),
            (Method::PUT, "/api/v6/task/t1/execute"),
            (Method::DELETE, "/api/v6/task/t1/history/r1"),
        ] {
            assert!(
                !is_public(&method, path) && !is_run_report(&method, path, &with_token),
                "{method} {path} must need a credential"
            );
        }
    }

    #[test]
    fn a_token_file_names_users_and_admins_and_refuses_weak_or_malformed_lines() {
        let path = Path::new("tokens");
        let table = TokenTable::parse(
            path,
            "# team\n0123456789abcdef0123 ana\nfedcba9876543210fedc root admin\n",
        )
        .unwrap();
        assert_eq!(
            table.caller("0123456789abcdef0123"),
            Some(&Caller::user("ana"))
        );
        assert_eq!(
            table.caller("fedcba9876543210fedc"),
            Some(&Caller::admin("root"))
        );
        assert_eq!(table.caller("nope"), None);
        let weak = TokenTable::parse(path, "short ana\n")
            .unwrap_err()
            .to_string();
        assert!(weak.contains("at least 16 characters"), "{weak}");
        let bad = TokenTable::parse(path, "0123456789abcdef0123 ana boss\n")
            .unwrap_err()
            .to_string();
        assert!(bad.contains("line 1"), "{bad}");
        assert!(TokenTable::parse(path, "# nothing\n").is_err());
    }

    #[cfg(feature = "embedded")]
    #[test]
    fn a_missing_token_file_is_made_private_with_one_admin_token() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        let (table, made) = TokenTable::load_or_create(&path, "ana").unwrap();
        assert!(made);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        let token = text.lines().nth(1).unwrap().split(' ').next().unwrap();
        assert_eq!(token.len(), 64);
        assert_eq!(table.caller(token), Some(&Caller::admin("ana")));
        let (again, made) = TokenTable::load_or_create(&path, "ana").unwrap();
        assert!(!made, "an existing file is read, not replaced");
        assert_eq!(again, table);
    }

    #[test]
    fn hosts_are_addresses_localhost_or_names_given() {
        let rule = HostRule::new(["flotilla.team.example".to_owned(), ".corp".to_owned()]);
        for ok in [
            "127.0.0.1:5000",
            "[::1]:5000",
            "10.0.0.7",
            "localhost:5000",
            "app.localhost",
            "flotilla.team.example:5000",
            "build.corp",
        ] {
            assert!(rule.allows(ok), "{ok}");
        }
        for refused in [
            "evil.example",
            "evil.example:5000",
            "127.0.0.1.evil.example",
        ] {
            assert!(!rule.allows(refused), "{refused}");
        }
    }
}
