//! The OpenAPI 3.1 document, generated from the route table and the body
//! types (their JSON Schemas come from `schemars` derives), and served at
//! `/api/openapi.json`.

use serde_json::{Map, Value, json};

use super::routes::operations;

/// Path parameters of a path template, in order.
pub fn path_parameters(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .collect()
}

/// The whole document.
pub fn document() -> Value {
    let settings = schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "#/components/schemas/".into());
    let mut generator = settings.into_generator();
    let mut paths = Map::new();
    for op in operations() {
        let mut parameters: Vec<Value> = path_parameters(&op.path)
            .into_iter()
            .map(|name| {
                json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
            })
            .collect();
        parameters.extend(op.query.iter().map(|name| {
            json!({"name": name, "in": "query", "required": false, "schema": {"type": "string"}})
        }));
        let response = (op.response)(&mut generator);
        let mut content = json!({"application/json": {"schema": response}});
        if op.text {
            content["text/plain"] = json!({"schema": {"type": "string"}});
        }
        let mut responses = json!({
            "200": {"description": "OK", "content": content},
            "4XX": {"description": "The request cannot be served; the message says what to fix", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        });
        let error = json!({"$ref": "#/components/schemas/Error"});
        responses["414"] = json!({"description": format!("The path and query are longer than {} bytes", super::MAX_URI_BYTES), "content": {"application/json": {"schema": error}}});
        responses["401"] = json!({"description": "This server asks for a bearer token (a token file's, or the issuer's JWT) and the request sent none it knows", "content": {"application/json": {"schema": error}}});
        responses["403"] = json!({"description": "The caller may not do this: another user owns the run or definition, or the request's Host or Origin is not this server's", "content": {"application/json": {"schema": error}}});
        if op.body.is_some() {
            responses["413"] = json!({"description": format!("The body is larger than {} bytes", super::MAX_BODY_BYTES), "content": {"application/json": {"schema": error}}});
        }
        if op.path.ends_with("/status") && op.method == axum::http::Method::GET {
            responses["304"] =
                json!({"description": "Not modified since the ETag sent in If-None-Match"});
        }
        let method = op.method.as_str().to_lowercase();
        let id: String = format!("{method}{}", op.path)
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let mut operation = json!({
            "operationId": id,
            "summary": op.summary,
            "tags": [op.tag],
            "parameters": parameters,
            "responses": responses,
        });
        if let Some(body) = op.body {
            operation["requestBody"] = json!({
                "required": false,
                "content": {"application/json": {"schema": body(&mut generator)}},
            });
        }
        let entry = paths
            .entry(op.path.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(methods) = entry {
            methods.insert(method, operation);
        }
    }
    paths.insert(
        "/api/openapi.json".into(),
        json!({"get": {"operationId": "get_api_openapi_json", "summary": "This document", "tags": ["service"], "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}}}}),
    );
    let mut schemas: Map<String, Value> = generator.take_definitions(true).into_iter().collect();
    schemas.insert(
        "Error".into(),
        json!({"type": "object", "required": ["error"], "properties": {
            "error": {"type": "string", "description": "What went wrong and what to change"},
            "problems": {"type": "array", "items": {"type": "string"}, "description": "A 400's problems one by one, each starting with the field it is about"},
        }}),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Flotilla on Lambda",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Define jobs, launch runs, follow their state, logs and history. Flotilla's wire contract: its paths, version prefixes, field names and envelopes.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "A token from the server's token file (flotilla serve --auth-token-file), or on AWS with ApiAuth=JWT an ID token from the stack's issuer (GET /api/ui-config says which); a server on loopback without a token file asks for none"},
            },
        },
        "security": [{}, {"bearer": []}],
    })
}
