//! The route table: every operation of the API with its handler and what the
//! OpenAPI document says of it. Each resource module (`definitions`, `runs`,
//! `logs`, `clusters`, `templates`, `service`) lists its own operations with
//! the small builder here; [`operations`] gathers them, [`super::router_with`]
//! builds the router from them and [`super::openapi::document`] the document,
//! so a route cannot exist undocumented.

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodRouter, on};
use schemars::{JsonSchema, Schema, SchemaGenerator};

use super::AppState;

/// Makes the schema of a body type.
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// One method on one path.
pub struct Operation {
    /// HTTP method.
    pub method: Method,
    /// Path, with `{name}` parameters.
    pub path: String,
    /// What it does.
    pub summary: String,
    /// Group in the document.
    pub tag: &'static str,
    /// Query parameters it reads.
    pub query: Vec<&'static str>,
    /// Its JSON body, if it takes one.
    pub body: Option<SchemaFn>,
    /// Its 200 answer.
    pub response: SchemaFn,
    /// The handler.
    pub handler: MethodRouter<AppState>,
}

impl Operation {
    /// `method path`, served by `handler`, in document group `tag`, doing
    /// `summary`; no query, no body, any JSON answer until said otherwise.
    fn new<H, T>(method: Method, path: impl Into<String>, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = axum::routing::MethodFilter::try_from(method.clone())
            .unwrap_or(axum::routing::MethodFilter::GET);
        Self {
            method,
            path: path.into(),
            summary: String::new(),
            tag: "service",
            query: Vec::new(),
            body: None,
            response: schema::<serde_json::Value>,
            handler: on(filter, handler),
        }
    }

    /// A GET.
    pub fn get<H: Handler<T, AppState>, T: 'static>(path: impl Into<String>, handler: H) -> Self {
        Self::new(Method::GET, path, handler)
    }

    /// A POST.
    pub fn post<H: Handler<T, AppState>, T: 'static>(path: impl Into<String>, handler: H) -> Self {
        Self::new(Method::POST, path, handler)
    }

    /// A PUT.
    pub fn put<H: Handler<T, AppState>, T: 'static>(path: impl Into<String>, handler: H) -> Self {
        Self::new(Method::PUT, path, handler)
    }

    /// A DELETE.
    pub fn delete<H: Handler<T, AppState>, T: 'static>(
        path: impl Into<String>,
        handler: H,
    ) -> Self {
        Self::new(Method::DELETE, path, handler)
    }

    /// Its group in the document and what it does.
    pub fn doc(mut self, tag: &'static str, summary: &str) -> Self {
        self.tag = tag;
        self.summary = summary.to_owned();
        self
    }

    /// The query keys it reads.
    pub fn query(mut self, keys: &[&'static str]) -> Self {
        self.query = keys.to_vec();
        self
    }

    /// The query keys of a list: paging and sort, then `filters`.
    pub fn list_query(self, filters: &[&'static str]) -> Self {
        let keys: Vec<&'static str> = super::input::PAGING_KEYS
            .iter()
            .chain(filters)
            .copied()
            .collect();
        self.query(&keys)
    }

    /// The JSON body it takes.
    pub fn body<B: JsonSchema>(mut self) -> Self {
        self.body = Some(schema::<B>);
        self
    }

    /// The JSON body of its 200 answer.
    pub fn returns<R: JsonSchema>(mut self) -> Self {
        self.response = schema::<R>;
        self
    }
}

/// The path prefixes Flotilla serves its definition, history, log and health
/// routes under.
pub const V1_AND_V6: [&str; 2] = ["/api/v1", "/api/v6"];

/// Every operation of the API.
pub fn operations() -> Vec<Operation> {
    [
        super::definitions::routes(),
        super::runs::routes(),
        super::logs::routes(),
        super::clusters::routes(),
        super::templates::routes(),
        super::service::routes(),
    ]
    .into_iter()
    .flatten()
    .collect()
}
