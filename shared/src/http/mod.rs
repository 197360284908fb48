//! Flotilla's REST API as one axum [`Router`], built by [`router`].
//!
//! `flotilla serve` serves it with hyper; the `api` Lambda hands the same
//! router to `lambda_http::run`. Routes keep Flotilla's paths and version
//! prefixes (v1 and v6 for definitions, history, logs and health; v2/v4/v6
//! execute bodies) and its JSON field names.
//!
//! One file per resource holds its routes and handlers: [`definitions`],
//! [`runs`] (execute, history, stop, status, timelines), [`logs`],
//! [`clusters`], [`templates`], [`service`] (health, the OpenAPI document) and
//! [`ui`] (the web UI's files). [`routes`] gathers every operation once; both
//! the router and the OpenAPI document ([`openapi`]) are built from it.
//! Handlers only translate: they parse the request ([`input`]), call one use
//! case, and shape the answer ([`views`]). Errors become responses in
//! [`error`] and nowhere else.

pub mod clusters;
pub mod definitions;
pub mod error;
pub mod input;
pub mod logs;
pub mod openapi;
pub mod routes;
pub mod runs;
pub mod service;
pub mod templates;
pub mod ui;
pub mod views;

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
    match options.cors() {
        Some(cors) => router.layer(cors),
        None => router,
    }
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
