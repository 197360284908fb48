//! The service's own routes: health, how the UI signs in, and the OpenAPI
//! document of every route.

use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::http::routes::{Operation, V1_AND_V6, object_of};
use crate::http::{ApiResult, ok, openapi};

/// `/health` under v1 and v6.
pub fn routes() -> Vec<Operation> {
    let mut ops: Vec<Operation> = V1_AND_V6
        .into_iter()
        .map(|v| {
            Operation::get(format!("{v}/health"), health)
                .doc("service", "Health")
                .returns_shape(|_| {
                    object_of(&[
                        ("status", json!({"type": "string"})),
                        ("message", json!({"type": "string"})),
                    ])
                })
        })
        .collect();
    ops.push(
        Operation::get("/api/ui-config", crate::http::sign_in::ui_config)
            .doc("service", "How the web UI signs in here")
            .returns::<crate::http::sign_in::UiConfig>(),
    );
    ops
}

async fn health() -> ApiResult {
    ok(json!({ "status": "healthy", "message": "Service is up and running" }))
}

/// `GET /api/openapi.json`: the OpenAPI 3.1 document of every route, built
/// once per process.
pub async fn openapi_document() -> ApiResult {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    ok(DOCUMENT.get_or_init(openapi::document))
}
