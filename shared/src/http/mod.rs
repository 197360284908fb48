//! Flotilla's REST API as one axum [`Router`], built by [`router`].
//!
//! `flotilla serve` serves it with hyper; the `api` Lambda hands the same
//! router to `lambda_http::run`. Routes keep Flotilla's paths and version
//! prefixes (v1 and v6 for definitions, history, logs and health; v2/v4/v6
//! execute bodies) and its JSON field names.
//!
//! One file per resource holds its routes and handlers: [`definitions`],
//! [`runs`] (execute, history, stop, status, timelines), [`logs`],
//! [`clusters`], [`templates`], [`insights`] (leaderboards), [`schedules`],
//! [`service`] (health, the OpenAPI document) and
//! [`ui`] (the web UI's files). [`routes`] gathers every operation once; both
//! the router and the OpenAPI document ([`openapi`]) are built from it.
//! Handlers only translate: they parse the request ([`input`]), call one use
//! case, and shape the answer ([`views`]). Errors become responses in
//! [`error`] and nowhere else.

pub mod access;
pub mod clusters;
pub mod definitions;
pub mod error;
pub mod input;
pub mod insights;
pub mod logs;
pub mod openapi;
pub mod routes;
pub mod runs;
pub mod schedules;
pub mod service;
pub mod sign_in;
pub mod templates;
pub mod ui;
pub mod views;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::http::{Method, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::app::App;
use crate::http::error::ApiError;

/// Handler state: the use cases.
pub type AppState = Arc<App>;

/// What a handler answers.
pub type ApiResult = Result<Response, ApiError>;

/// Settings of the HTTP edge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpOptions {
    /// Origins a browser may call the API from (CORS); `*` allows any. Empty:
    /// same origin only.
    pub cors_allowed_origins: Vec<String>,
    /// Who may call (tokens, hosts, origins); open by default.
    pub access: access::Access,
    /// How the UI signs in; [`sign_in::SignIn::Open`] means "as the access
    /// rules imply" (a token when they need one).
    pub sign_in: sign_in::SignIn,
}

impl HttpOptions {
    /// Reads a comma-separated origin list such as
    /// `https://ui.example.com,http://localhost:3000`.
    pub fn with_cors_origins(list: &str) -> Self {
        Self {
            cors_allowed_origins: list
                .split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(str::to_owned)
                .collect(),
            ..Self::default()
        }
    }

    fn cors(&self) -> Option<tower_http::cors::CorsLayer> {
        use tower_http::cors::{AllowOrigin, CorsLayer};
        if self.cors_allowed_origins.is_empty() {
            return None;
        }
        let origin = if self.cors_allowed_origins.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(
                self.cors_allowed_origins
                    .iter()
                    .filter_map(|o| axum::http::HeaderValue::from_str(o).ok()),
            )
        };
        Some(
            CorsLayer::new()
                .allow_origin(origin)
                .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
                .allow_headers([
                    header::CONTENT_TYPE,
                    header::IF_NONE_MATCH,
                    header::AUTHORIZATION,
                ])
                .expose_headers([header::ETAG])
                .max_age(std::time::Duration::from_secs(600)),
        )
    }
}

/// The whole API with default options (no cross-origin access).
pub fn router(app: AppState) -> Router {
    router_with(app, &HttpOptions::default())
}

/// The whole API.
pub fn router_with(app: AppState, options: &HttpOptions) -> Router {
    let mut router: Router<AppState> = Router::new();
    let mut paths: Vec<(String, axum::routing::MethodRouter<AppState>)> = Vec::new();
    for op in routes::operations() {
        match paths.iter_mut().find(|(p, _)| *p == op.path) {
            Some((_, handlers)) => *handlers = std::mem::take(handlers).merge(op.handler),
            None => paths.push((op.path, op.handler)),
        }
    }
    for (path, handlers) in paths {
        router = router.route(&path, handlers);
    }
    let router = router
        .route("/api/openapi.json", get(service::openapi_document))
        .route("/", get(ui::index))
        .route("/ui/{*path}", get(ui::file))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .with_state(app);
    let sign_in = match &options.sign_in {
        sign_in::SignIn::Open if options.access.tokens.is_some() => sign_in::SignIn::Token,
        other => other.clone(),
    };
    let mut router = guarded(router.layer(axum::Extension(Arc::new(sign_in))));
    if !options.access.is_open() {
        let guard = Arc::new(access::Guard {
            access: options.access.clone(),
            cors_allowed_origins: options.cors_allowed_origins.clone(),
        });
        router = router.layer(axum::middleware::from_fn_with_state(guard, access::guard));
    }
    match options.cors() {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// Longest request target the API reads; a longer one is a 414 with a JSON
/// body. (The HTTP parser itself answers an empty 414 past 64 KiB, and an
/// empty 431 for headers too large, before any of this code runs.)
pub const MAX_URI_BYTES: usize = 16 * 1024;
/// Largest request body the API reads (axum's default limit, named).
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// The layers every answer goes through: a panic in a handler becomes a
/// 500 JSON answer with a request id (and the panic is logged with it) where
/// panics unwind, as in `flotilla serve` (the Lambda bootstraps are built to
/// abort: Lambda answers 500 and reports the invocation failed),
/// and any other error answer that is not JSON (a body over the limit, a
/// path that is not UTF-8) is made one, saying what to fix.
pub fn guarded(router: Router) -> Router {
    router
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .layer(axum::middleware::from_fn(json_errors))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
}

fn panicked(cause: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let what = cause
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| cause.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message");
    tracing::error!(request_id = %request_id, panic = %what, "a request handler panicked");
    let body = serde_json::json!({
        "error": format!("internal error (request {request_id}): see the server log"),
        "request_id": request_id,
    });
    (axum::http::StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
}

async fn json_errors(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use axum::http::StatusCode;
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if target > MAX_URI_BYTES {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            format!(
                "the request's path and query are {target} bytes, more than the {MAX_URI_BYTES} this API reads: send fewer or shorter filters"
            ),
        )
        .into_response();
    }
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => format!(
            "the request body is larger than the {} MB this API reads: send less",
            MAX_BODY_BYTES / (1024 * 1024)
        ),
        _ if text.is_empty() => status
            .canonical_reason()
            .unwrap_or("the request could not be served")
            .to_owned(),
        _ => format!("{text}: check the request's path, query and body"),
    };
    ApiError::new(status, message).into_response()
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!(
        "no route for {method} {}: see the API section of the README",
        uri.path()
    ))
}

async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::method_not_allowed(format!(
        "{method} is not allowed on {}: see the API section of the README",
        uri.path()
    ))
}

/// A 200 with `value` as JSON.
pub fn ok<T: serde::Serialize>(value: T) -> ApiResult {
    Ok(Json(value).into_response())
}

/// A 200 with `value` (a JSON object) and, when the request sent Flotilla
/// fields this service does not use, their names under `ignored_fields`.
pub fn ok_ignoring<T: serde::Serialize>(value: T, ignored: Vec<String>) -> ApiResult {
    let mut value = serde_json::to_value(value).map_err(|e| {
        error::ApiError::from(crate::error::AppError::internal(
            crate::error::Dependency::Rules,
            e,
        ))
    })?;
    if let (serde_json::Value::Object(map), false) = (&mut value, ignored.is_empty()) {
        map.insert("ignored_fields".into(), serde_json::json!(ignored));
    }
    Ok(Json(value).into_response())
}

/// Whether a request's `If-None-Match` names `etag` (weak or strong) or `*`.
pub(crate) fn etag_matches(headers: &axum::http::HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|candidate| {
            candidate == etag || candidate == "*" || candidate.strip_prefix("W/") == Some(etag)
        })
}
