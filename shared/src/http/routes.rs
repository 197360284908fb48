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
use serde_json::{Value, json};

use super::AppState;

/// Makes the schema of a body type.
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// Makes the schema of a 200 answer.
pub type ReplyFn = Box<dyn Fn(&mut SchemaGenerator) -> Value + Send + Sync>;

fn schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

fn value_of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Value {
    generator.subschema_for::<T>().to_value()
}

/// Flotilla's list envelope around rows of `T` under `key`: the total, the
/// paging and sort used, the filters echoed and the query keys ignored.
pub fn page_schema<T: JsonSchema>(key: &'static str, generator: &mut SchemaGenerator) -> Value {
    let strings = json!({"type": "array", "items": {"type": "string"}});
    json!({
        "type": "object",
        "required": [key, "total", "limit", "offset", "sort_by", "order"],
        "properties": {
            key: {"type": "array", "items": value_of::<T>(generator)},
            "total": {"type": "integer", "minimum": 0},
            "limit": {"type": "integer", "minimum": 0},
            "offset": {"type": "integer", "minimum": 0},
            "sort_by": {"type": "string"},
            "order": {"type": "string", "enum": ["asc", "desc"]},
            "env_filters": {"type": "object", "additionalProperties": {"type": "string"}},
            "next_token": {"type": "string", "description": "Rows follow: pass it as ?next_token= with the same filters and sort for the next page"},
            "total_is_lower_bound": {"type": "boolean", "description": "The total is a bound: at least this many rows match"},
            "latest_only": {"type": "boolean"},
            "ignored": strings.clone(),
        },
        "additionalProperties": strings,
    })
}

/// `{"total": n, key: [T, ...]}`: every item, unpaged.
pub fn all_schema<T: JsonSchema>(key: &'static str, generator: &mut SchemaGenerator) -> Value {
    json!({
        "type": "object",
        "required": [key, "total"],
        "properties": {
            key: {"type": "array", "items": value_of::<T>(generator)},
            "total": {"type": "integer", "minimum": 0},
        },
    })
}

/// An object of the named fields, each with its schema, all present.
pub fn object_of(fields: &[(&str, Value)]) -> Value {
    let required: Vec<&str> = fields.iter().map(|(name, _)| *name).collect();
    let properties: serde_json::Map<String, Value> = fields
        .iter()
        .map(|(name, schema)| ((*name).to_owned(), schema.clone()))
        .collect();
    json!({"type": "object", "required": required, "properties": properties})
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
    pub response: ReplyFn,
    /// It may answer plain text as well as JSON.
    pub text: bool,
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
            response: Box::new(|_| json!({"type": "object"})),
            text: false,
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
    pub fn returns<R: JsonSchema + 'static>(mut self) -> Self {
        self.response = Box::new(value_of::<R>);
        self
    }

    /// Its 200 answer, as `shape` makes it.
    pub fn returns_shape(
        mut self,
        shape: impl Fn(&mut SchemaGenerator) -> Value + Send + Sync + 'static,
    ) -> Self {
        self.response = Box::new(shape);
        self
    }

    /// Its 200 answer is a page of `T` under `key` in Flotilla's envelope.
    pub fn returns_page<T: JsonSchema + 'static>(self, key: &'static str) -> Self {
        self.returns_shape(move |g| page_schema::<T>(key, g))
    }

    /// Its 200 answer is every `T` under `key`, with their number.
    pub fn returns_all<T: JsonSchema + 'static>(self, key: &'static str) -> Self {
        self.returns_shape(move |g| all_schema::<T>(key, g))
    }

    /// Its 200 answer is `{flag: true}`.
    pub fn returns_flag(self, flag: &'static str) -> Self {
        self.returns_shape(move |_| object_of(&[(flag, json!({"type": "boolean"}))]))
    }

    /// It may also answer plain text (when asked to).
    pub fn or_text(mut self) -> Self {
        self.text = true;
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
        super::insights::routes(),
        super::schedules::routes(),
    ]
    .into_iter()
    .flatten()
    .collect()
}
