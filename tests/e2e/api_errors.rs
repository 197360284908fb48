//! Every bad input is a 4xx with a message that says what to fix, and loses nothing.

use reqwest::Method;
use serde_json::Value;

use crate::support::Server;

fn message(body: &Value) -> String {
    body["error"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn bad_requests_get_a_4xx_whose_message_says_what_to_fix() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 2).await;
    server.define("exists", "true").await;

    let cases: Vec<(Method, &str, &str, u16, &str)> = vec![
        (
            Method::POST,
            "/api/v6/task",
            "{not json",
            400,
            "not valid JSON",
        ),
        (Method::POST, "/api/v6/task", "[1,2]", 400, "JSON object"),
        (
            Method::POST,
            "/api/v6/task",
            r#"{"alias":"x"}"#,
            400,
            "image is required",
        ),
        (
            Method::POST,
            "/api/v6/task",
            r#"{"alias":"a b","image":"i"}"#,
            400,
            "alias",
        ),
        (
            Method::POST,
            "/api/v6/task",
            r#"{"alias":"m","image":"i","memory":"big"}"#,
            400,
            "\"memory\"",
        ),
        (
            Method::POST,
            "/api/v6/task",
            r#"{"alias":"exists","image":"i"}"#,
            409,
            "already exists",
        ),
        (
            Method::PUT,
            "/api/v6/task/alias/missing/execute",
            r#"{"run_tags":{"owner_id":"a"}}"#,
            404,
            "missing not found",
        ),
        (
            Method::PUT,
            "/api/v6/task/alias/exists/execute",
            r#"{"run_tags":{"owner_id":"a"},"node_lifecycle":"cheap"}"#,
            400,
            "node_lifecycle",
        ),
        (
            Method::PUT,
            "/api/v6/task/alias/exists/execute",
            r#"{"run_tags":{"owner_id":"a"},"env":[{"name":"FLOTILLA_RUN_ID","value":"x"}]}"#,
            400,
            "reserved",
        ),
        (
            Method::PUT,
            "/api/v6/task/alias/exists/execute",
            r#"{"run_tags":{"owner_id":"a"},"cluster":"no/such"}"#,
            400,
            "cluster",
        ),
        (
            Method::PUT,
            "/api/v6/task/alias/exists/execute",
            r#"{"run_tags":{"owner_id":"a"},"engine":"spark"}"#,
            400,
            "engine",
        ),
        (
            Method::PUT,
            "/api/v6/task/nope/execute",
            r#"{"run_tags":{"owner_id":"a"}}"#,
            404,
            "Definition with ID nope not found",
        ),
        (
            Method::PUT,
            "/api/v6/task/nope",
            r#"{"image":"x"}"#,
            404,
            "not found",
        ),
    ];
    for (method, path, body, status, needle) in cases {
        let (got, answer) = server.send(method.clone(), path, body).await;
        assert_eq!(got, status, "{method} {path} {body}: {answer}");
        assert!(
            message(&answer).contains(needle),
            "{method} {path} {body}: {answer}"
        );
    }

    let gets = [
        ("/api/v6/history?sort_by=password", 400, "sort_by"),
        ("/api/v6/history?order=sideways", 400, "order"),
        ("/api/v6/history?alias=%00", 400, "NUL"),
        ("/api/v6/history?status=DONE", 400, "invalid status [DONE]"),
        ("/api/v6/task?sort_by=command", 400, "sort_by"),
        (
            "/api/v6/history/local-unknown",
            404,
            "Run with id local-unknown not found",
        ),
        ("/api/v6/local-unknown/logs", 404, "not found"),
        (
            "/api/v6/task/nope/history",
            404,
            "Definition with ID nope not found",
        ),
        (
            "/api/v6/task/alias/nope",
            404,
            "Definition with alias nope not found",
        ),
        ("/api/v9/whatever", 404, "no route"),
    ];
    for (path, status, needle) in gets {
        let (got, answer) = server.get(path).await;
        assert_eq!(got, status, "GET {path}: {answer}");
        assert!(message(&answer).contains(needle), "GET {path}: {answer}");
    }
    let (status, answer) = server.send(Method::PATCH, "/api/v6/task", "{}").await;
    assert_eq!(status, 405, "{answer}");

    let (_, list) = server.get("/api/v6/task").await;
    assert_eq!(list["total"], 1, "refused requests created nothing: {list}");
    let (_, runs) = server.get("/api/v6/history").await;
    assert_eq!(runs["total"], 0, "refused executes created no run: {runs}");
    let (status, _) = server
        .get("/api/v6/history?unknown_ui_param=1&page=2")
        .await;
    assert_eq!(status, 200, "unknown query keys are ignored");
    // As Flotilla reads them (its own UI sends offset=NaN for a hand-typed
    // page): a paging value that is not a whole number is the default.
    for path in [
        "/api/v6/history?limit=ten&offset=NaN",
        "/api/v6/task?offset=-1",
    ] {
        let (status, list) = server.get(path).await;
        assert_eq!(status, 200, "{path}: {list}");
        assert_eq!(list["offset"], 0, "{path}: {list}");
        assert_eq!(list["limit"], 1024, "{path}: {list}");
        assert!(
            list["ignored"].as_array().is_some_and(|i| i
                .iter()
                .any(|v| v.as_str().is_some_and(|v| v.contains('=')))),
            "the values read as defaults are named: {list}"
        );
    }
}

#[tokio::test]
async fn the_health_route_answers_on_v1_and_v6() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 1).await;
    for v in ["v1", "v6"] {
        let (status, body) = server.get(&format!("/api/{v}/health")).await;
        assert_eq!(status, 200);
        assert_eq!(body["status"], "healthy");
    }
}

#[tokio::test]
async fn a_second_server_on_the_same_data_directory_refuses_to_start_and_says_why() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let data = dir.path().join("data");
    let _first = Server::start(&data, 1).await;
    let out = std::process::Command::new(crate::support::flotilla_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("in use by another flotilla serve"),
        "{stderr}"
    );
}
