//! Bad input never hurts, tried as a careless user (and an adversary) would:
//! template bombs, huge and NUL-holding commands, typos in field names, a
//! gigabyte of log read whole, limits everywhere. Each is a 4xx that says
//! what to fix, nothing is stored, and the server stays small.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::Server;

fn error(answer: &Value) -> String {
    answer["error"].as_str().unwrap_or_default().to_owned()
}

/// The server's resident memory, in MB.
fn rss_mb(server: &Server) -> u64 {
    let pid = server.pid().unwrap_or_default();
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

async fn template(server: &Server, name: &str, command: &str) -> (u16, Value) {
    let body = json!({
        "template_name": name,
        "image": "ubuntu:latest",
        "command_template": command,
        "schema": {"type": "object"},
        "defaults": {"items": [1, 2, 3]},
    });
    server
        .send(Method::POST, "/api/v7/template", &body.to_string())
        .await
}

#[tokio::test]
async fn template_bombs_are_refused_with_the_limit_they_hit_and_the_server_stays_small() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 1).await;

    let (status, answer) = template(&server, "wide", r#"{{ printf "%065536d" 1 }}"#).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        error(&answer).contains("printf width or precision over 256"),
        "{answer}"
    );
    let (status, answer) = template(&server, "star", r#"{{ printf "%*d" 100000 1 }}"#).await;
    assert_eq!(status, 400, "a width given as an argument: {answer}");
    let (status, answer) = template(
        &server,
        "recursive",
        r#"{{ define "x" }}{{ template "x" }}{{ end }}{{ template "x" }}"#,
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(error(&answer).contains("may not use `define`"), "{answer}");

    // Four nested loops over a 100-item payload: 100 MB of command.
    let nested = "{{ range .items }}{{ range $.items }}{{ range $.items }}{{ range $.items }}echo {{ . }};{{ end }}{{ end }}{{ end }}{{ end }}";
    let (status, created) = template(&server, "nested", nested).await;
    assert_eq!(status, 200, "its defaults render small: {created}");
    let id = created["template"]["template_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let items: Vec<u32> = (0..100).collect();
    let execute = json!({"owner_id": "ana", "template_payload": {"items": items}}).to_string();
    let (status, answer) = server
        .send(
            Method::PUT,
            &format!("/api/v7/template/{id}/execute"),
            &execute,
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(error(&answer).contains("over 64 KiB"), "{answer}");

    // Loops that write nothing do not stop the server either.
    let silent = "{{ range .items }}{{ range $.items }}{{ range $.items }}{{ range $.items }}{{ range $.items }}{{ end }}{{ end }}{{ end }}{{ end }}{{ end }}";
    let (status, created) = template(&server, "silent", silent).await;
    assert_eq!(status, 200, "{created}");
    let id = created["template"]["template_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (status, answer) = server
        .send(
            Method::PUT,
            &format!("/api/v7/template/{id}/execute"),
            &execute,
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(error(&answer).contains("took over 2 s"), "{answer}");
    let (status, _) = server.get("/api/v6/health").await;
    assert_eq!(status, 200, "the server answers while the render goes on");

    let (_, runs) = server.get("/api/v6/history").await;
    assert_eq!(runs["total"], 0, "no refused execute made a run: {runs}");
    let rss = rss_mb(&server);
    assert!(rss < 100, "the server holds {rss} MB after the bombs");
}

#[tokio::test]
async fn commands_and_env_an_engine_cannot_take_are_refused_at_every_door() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 1).await;
    let huge = "x".repeat(200 * 1024);
    let definitions = [
        (
            json!({"alias": "huge", "image": "i", "command": huge}),
            "command is 204800 bytes, more than the 131071",
        ),
        (
            json!({"alias": "nul", "image": "i", "command": "echo \u{0}"}),
            "command holds a NUL byte",
        ),
        (
            json!({"alias": "env", "image": "i", "command": "true", "env": [{"name": "A", "value": "\u{0}"}]}),
            "env A holds a NUL byte",
        ),
        (
            json!({"alias": "reserved", "image": "i", "command": "true", "env": [{"name": "FLOTILLA_RUN_ID", "value": "x"}]}),
            "FLOTILLA_RUN_ID is reserved",
        ),
    ];
    server
        .assert_refused(Method::POST, "/api/v6/task", definitions)
        .await;
    server.define("ok", "true").await;
    let executes = [
        (
            json!({"run_tags": {"owner_id": "a"}, "command": huge}),
            "command is 204800 bytes",
        ),
        (
            json!({"run_tags": {"owner_id": "a\u{0}b"}}),
            "owner holds a NUL byte",
        ),
        (
            json!({"run_tags": {"owner_id": "a"}, "env": [{"name": "B", "value": "x\u{0}"}]}),
            "env B holds a NUL byte",
        ),
    ];
    server
        .assert_refused(Method::PUT, "/api/v6/task/alias/ok/execute", executes)
        .await;
    let (_, list) = server.get("/api/v6/task").await;
    assert_eq!(list["total"], 1, "no refused definition was stored: {list}");
    let (_, runs) = server.get("/api/v6/history").await;
    assert_eq!(runs["total"], 0, "no refused execute made a run: {runs}");
}

#[tokio::test]
async fn a_misspelt_field_is_refused_with_the_nearest_and_flotillas_unused_fields_are_named() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 1).await;
    let (status, answer) = server
        .send(
            Method::POST,
            "/api/v6/task",
            r#"{"alias":"t","image":"i","command":"true","max_attempts":3}"#,
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        error(&answer).contains("unknown field `max_attempts`"),
        "{answer}"
    );
    let (status, created) = server
        .send(
            Method::POST,
            "/api/v6/task",
            r#"{"alias":"t","image":"i","command":"true","privileged":false}"#,
        )
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(
        created["ignored_fields"],
        json!(["privileged"]),
        "{created}"
    );
    let id = created["definition_id"].as_str().unwrap_or_default();
    assert!(!id.starts_with('-'), "no id starts with a separator: {id}");

    let (status, answer) = server
        .send(
            Method::PUT,
            "/api/v6/task/alias/t/execute",
            r#"{"run_tags":{"owner_id":"a"},"comand":"echo mine","memroy":64}"#,
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    let problems = answer["problems"].to_string();
    assert!(problems.contains("did you mean `command`?"), "{answer}");
    assert!(problems.contains("did you mean `memory`?"), "{answer}");
    let (status, run) = server
        .send(
            Method::PUT,
            "/api/v6/task/alias/t/execute",
            r#"{"run_tags":{"owner_id":"a"},"spark_extension":{},"memory":64}"#,
        )
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["ignored_fields"], json!(["spark_extension"]), "{run}");
    assert_eq!(
        run["memory_limit"], 64,
        "Flotilla's UI reads memory_limit: {run}"
    );
    let (_, runs) = server.get("/api/v6/history").await;
    assert_eq!(runs["total"], 1, "only the good execute made a run: {runs}");
}

#[tokio::test]
async fn a_gigabyte_of_log_is_streamed_whole_while_the_server_stays_small() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 1).await;
    server
        .define("loud", "head -c 1073741824 /dev/zero | tr '\\0' 'x'")
        .await;
    let run = server.execute("loud", json!({})).await;
    let run_id = run["run_id"].as_str().unwrap_or_default().to_owned();
    server.wait_stopped(&run_id).await;

    let mut response = server
        .http()
        .get(server.url(&format!("/api/v6/{run_id}/logs?raw_text=true")))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status().as_u16(), 200);
    let mut read: u64 = 0;
    let mut peak = 0;
    while let Some(chunk) = response.chunk().await.unwrap_or_else(|e| panic!("{e}")) {
        read += chunk.len() as u64;
        if read % (64 * 1024 * 1024) < chunk.len() as u64 {
            peak = peak.max(rss_mb(&server));
        }
    }
    assert_eq!(read, 1 << 30, "the whole log arrives");
    peak = peak.max(rss_mb(&server));
    assert!(peak < 100, "the server held {peak} MB while sending 1 GB");
}

#[tokio::test]
async fn oversized_bodies_and_paths_get_a_json_answer_from_the_real_server() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 1).await;
    let big = format!(r#"{{"alias":"{}"}}"#, "x".repeat(3 * 1024 * 1024));
    // A connection of its own: the server answers before reading the whole
    // body and closes that connection, which a pooled client might reuse.
    let response = flotilla_tests::http_client()
        .post(server.url("/api/v6/task"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = response.status().as_u16();
    let answer: Value = response.json().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 413, "{answer}");
    assert!(error(&answer).contains("larger than the 2 MB"), "{answer}");
    let long = format!("/api/v6/history?alias={}", "x".repeat(20 * 1024));
    let (status, answer) = server.get(&long).await;
    assert_eq!(status, 414, "{answer}");
    assert!(error(&answer).contains("more than the 16384"), "{answer}");
    let (status, answer) = server.get("/api/v6/history/%ff%fe").await;
    assert_eq!(status, 400, "{answer}");
    assert!(error(&answer).contains("UTF-8"), "{answer}");
}

#[tokio::test]
async fn oversized_fields_and_lists_are_refused_so_nothing_stored_can_bloat_a_list() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 1).await;
    let mega = "x".repeat(1024 * 1024);
    let many: Vec<String> = (0..1000).map(|i| format!("t{i}")).collect();
    let definitions = [
        (
            json!({"alias": "a", "image": mega, "command": "true"}),
            "image is 1048576 bytes, more than the 1024",
        ),
        (
            json!({"alias": "b", "group_name": mega, "image": "i", "command": "true"}),
            "group_name is 1048576 bytes, more than the 255",
        ),
        (
            json!({"alias": "c", "image": "i", "command": "true", "tags": many}),
            "tags has 1000 items, more than the 256",
        ),
    ];
    server
        .assert_refused(Method::POST, "/api/v6/task", definitions)
        .await;
    let (status, answer) = server
        .send(
            Method::POST,
            "/api/v7/template",
            &json!({
                "template_name": "big",
                "image": "i",
                "command_template": format!("{{{{ if false }}}}{mega}{{{{ end }}}}"),
                "schema": {"type": "object"},
            })
            .to_string(),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        error(&answer).contains("command_template is 1048599 bytes, more than the 65536"),
        "{answer}"
    );

    server.define("ok", "true").await;
    let executes = [
        (
            json!({"run_tags": {"owner_id": mega}}),
            "run_tags owner is 1048576 bytes, more than the 255",
        ),
        (
            json!({"run_tags": {"owner_id": "a"}, "description": mega}),
            "description is 1048576 bytes, more than the 4096",
        ),
        (
            json!({"run_tags": {"owner_id": "a"}, "idempotence_key": mega}),
            "idempotence_key is 1048576 bytes",
        ),
    ];
    server
        .assert_refused(Method::PUT, "/api/v6/task/alias/ok/execute", executes)
        .await;
    let (_, list) = server.get("/api/v6/task").await;
    assert_eq!(
        list["total"], 1,
        "only the good definition is stored: {list}"
    );
    let (_, runs) = server.get("/api/v6/history").await;
    assert_eq!(runs["total"], 0, "no refused execute made a run: {runs}");
}
