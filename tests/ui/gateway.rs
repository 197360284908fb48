//! What stands in front of the API on AWS with `ApiAuth=JWT`, on a loopback
//! port: a sign-in service (an OAuth 2.0 issuer with discovery, an
//! authorization endpoint that signs the user in at once, and a token
//! endpoint that checks the PKCE verifier against the challenge), and a
//! gateway that lets the UI's files and its sign-in settings through and
//! forwards every other request to the real `flotilla serve` only with a
//! bearer token the issuer gave (API Gateway's JWT authorizer does that
//! check on AWS; no Cognito runs here). It counts what it saw.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use sha2::Digest;

/// The UI's client id at the issuer.
pub const CLIENT_ID: &str = "flotilla-ui";

/// What the gateway and its issuer saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Codes handed out and not yet used: code → (challenge, redirect URI).
    codes: HashMap<String, (String, String)>,
    /// Tokens issued.
    pub tokens: Vec<String>,
    /// Token requests.
    pub token_requests: usize,
    /// Why token requests were refused.
    pub refused: Vec<String>,
    /// API requests forwarded with an issued token.
    pub forwarded: usize,
    /// API requests turned away for want of one.
    pub unauthorized: usize,
}

struct Gateway {
    base: String,
    api: String,
    http: reqwest::Client,
    seen: Mutex<Seen>,
}

/// A running gateway: its address and what it saw.
pub struct Running {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    gateway: Arc<Gateway>,
}

impl Running {
    /// Reads what was seen.
    pub fn seen<T>(&self, read: impl FnOnce(&Seen) -> T) -> T {
        read(&self.gateway.seen.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Binds the gateway's port now (the server needs the issuer's address to
/// start); [`serve`] starts it in front of the API.
pub async fn bind() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Serves the issuer and the gateway on `listener`, forwarding to `api`.
pub fn serve(listener: tokio::net::TcpListener, api: &str) -> Running {
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let gateway = Arc::new(Gateway {
        base: base.clone(),
        api: api.trim_end_matches('/').to_owned(),
        http: flotilla_tests::http_client(),
        seen: Mutex::default(),
    });
    let router = Router::new()
        .route("/issuer/.well-known/openid-configuration", get(discovery))
        .route("/issuer/authorize", get(authorize))
        .route("/issuer/token", post(token))
        .fallback(forward)
        .with_state(Arc::clone(&gateway));
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Running { base, gateway }
}

async fn discovery(State(g): State<Arc<Gateway>>) -> Response {
    Json(json!({
        "issuer": format!("{}/issuer", g.base),
        "authorization_endpoint": format!("{}/issuer/authorize", g.base),
        "token_endpoint": format!("{}/issuer/token", g.base),
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
    }))
    .into_response()
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

fn refuse(status: StatusCode, error: &str) -> Response {
    (status, Json(json!({"error": error}))).into_response()
}

/// Signs the user in at once, as a user who is already signed in at the
/// issuer would be, and sends the browser back with a code.
async fn authorize(
    State(g): State<Arc<Gateway>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let field = |name: &str| q.get(name).cloned().unwrap_or_default();
    if field("response_type") != "code"
        || field("client_id") != CLIENT_ID
        || field("code_challenge_method") != "S256"
        || field("code_challenge").len() != 43
        || !field("scope").split(' ').any(|s| s == "openid")
    {
        return refuse(StatusCode::BAD_REQUEST, "invalid_request");
    }
    let redirect = field("redirect_uri");
    if redirect != format!("{}/", g.base) {
        return refuse(StatusCode::BAD_REQUEST, "redirect_uri is not registered");
    }
    let code = format!("code-{}", next_number());
    g.seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .codes
        .insert(code.clone(), (field("code_challenge"), redirect.clone()));
    let state = form_urlencoded::byte_serialize(field("state").as_bytes()).collect::<String>();
    Redirect::to(&format!("{redirect}?code={code}&state={state}")).into_response()
}

/// The next of the issuer's codes and tokens, each used once.
fn next_number() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Exchanges a code, once, for tokens, when the verifier hashes to the
/// code's challenge.
async fn token(State(g): State<Arc<Gateway>>, body: Bytes) -> Response {
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| form.get(name).cloned().unwrap_or_default();
    let mut seen = g.seen.lock().unwrap_or_else(|e| e.into_inner());
    seen.token_requests += 1;
    let problem = match seen.codes.remove(&field("code")) {
        _ if field("grant_type") != "authorization_code" => Some("grant_type"),
        _ if field("client_id") != CLIENT_ID => Some("client_id"),
        None => Some("the code is unknown or used"),
        Some((_, redirect)) if redirect != field("redirect_uri") => Some("redirect_uri"),
        Some((challenge, _))
            if base64url(&sha2::Sha256::digest(field("code_verifier").as_bytes())) != challenge =>
        {
            Some("the verifier does not match the challenge")
        }
        Some(_) => None,
    };
    if let Some(problem) = problem {
        seen.refused.push(problem.to_owned());
        return refuse(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    let id_token = format!("id-{}", next_number());
    seen.tokens.push(id_token.clone());
    Json(json!({"id_token": id_token, "access_token": format!("access-{id_token}"), "token_type": "Bearer", "expires_in": 3600}))
        .into_response()
}

/// The UI's files and how it signs in pass; every other request needs an
/// issued ID token, and is forwarded to the API.
async fn forward(
    State(g): State<Arc<Gateway>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    let public = method == Method::GET
        && (path == "/" || path.starts_with("/ui/") || path == "/api/ui-config");
    if !public {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned);
        let mut seen = g.seen.lock().unwrap_or_else(|e| e.into_inner());
        if !bearer.is_some_and(|t| seen.tokens.contains(&t)) {
            seen.unauthorized += 1;
            return refuse(StatusCode::UNAUTHORIZED, "Unauthorized");
        }
        seen.forwarded += 1;
    }
    let target = format!(
        "{}{}",
        g.api,
        uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut request = g.http.request(method, target).body(body);
    for name in [header::CONTENT_TYPE, header::ACCEPT, header::IF_NONE_MATCH] {
        if let Some(value) = headers.get(&name) {
            request = request.header(name, value);
        }
    }
    let answer = match request.send().await {
        Ok(answer) => answer,
        Err(e) => return refuse(StatusCode::BAD_GATEWAY, &e.to_string()),
    };
    let status = answer.status();
    let mut out = HeaderMap::new();
    for name in [header::CONTENT_TYPE, header::ETAG, header::CACHE_CONTROL] {
        if let Some(value) = answer.headers().get(&name) {
            out.insert(name, value.clone());
        }
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    (status, out, bytes).into_response()
}
