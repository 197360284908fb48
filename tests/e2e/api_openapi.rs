//! The OpenAPI document: served, self-consistent, and the same set of
//! operations as the router answers.

use reqwest::Method;
use serde_json::Value;

use crate::support::Server;

fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    if let Some(r) = v.as_str() {
                        out.push(r.to_owned());
                    }
                } else {
                    refs(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn every_documented_operation_is_routed_and_no_other_method_is() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 1).await;
    let (status, doc) = server.get("/api/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");

    let schemas = doc["components"]["schemas"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(!found.is_empty());
    for r in found {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or_default();
        assert!(schemas.contains_key(name), "{r} does not resolve");
    }

    let paths = doc["paths"].as_object().cloned().unwrap_or_default();
    assert!(paths.len() >= 40, "{} paths", paths.len());
    let mut operations = 0;
    for (path, methods) in &paths {
        let url: String = path
            .split('/')
            .map(|s| if s.starts_with('{') { "zz-none" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        let declared: Vec<String> = methods
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        for (name, op) in methods.as_object().cloned().unwrap_or_default() {
            let params: Vec<&str> = op["parameters"]
                .as_array()
                .map(|p| {
                    p.iter()
                        .filter(|x| x["in"] == "path")
                        .filter_map(|x| x["name"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            let expected: Vec<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            assert_eq!(params, expected, "{name} {path}: path parameters");
            assert!(op["operationId"].is_string() && op["responses"]["200"].is_object());
        }
        for method in [Method::GET, Method::POST, Method::PUT, Method::DELETE] {
            let (status, body) = server.send(method.clone(), &url, "{}").await;
            let message = body["error"].as_str().unwrap_or_default().to_owned();
            let routed = status != 405 && !message.starts_with("no route");
            let documented = declared.contains(&method.as_str().to_lowercase());
            assert_eq!(
                routed, documented,
                "{method} {path}: routed {routed} ({status} {body}), documented {documented}"
            );
            if documented {
                operations += 1;
            }
        }
    }
    assert!(operations >= 60, "{operations} operations");
}
