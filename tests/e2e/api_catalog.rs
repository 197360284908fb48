//! Clusters and tier routing, idempotence keys and v7 templates, over the
//! real binary on the embedded backend.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::Server;

fn error(body: &Value) -> String {
    body["error"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn clusters_are_managed_and_execute_routes_by_tier_to_an_active_one() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 2).await;
    server.define("job", "true").await;

    let (_, names) = server.get("/api/v1/clusters").await;
    assert_eq!(
        names,
        json!({"total": 1, "clusters": ["default"]}),
        "the default cluster exists without registration"
    );
    let (status, created) = server
        .send(
            Method::POST,
            "/api/v6/clusters",
            r#"{"name":"gpu","allowed_tiers":["1"],"region":"eu-west-1"}"#,
        )
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["cluster"]["status"], "active");
    let (status, _) = server
        .send(Method::POST, "/api/v6/clusters", r#"{"name":"gpu"}"#)
        .await;
    assert_eq!(status, 409, "a cluster name is unique");
    for (body, needle) in [
        (r#"{"name":"bad name"}"#, "not valid"),
        (
            r#"{"name":"x","status":"ACTIVE"}"#,
            "active, maintenance or offline",
        ),
        (r#"{}"#, "name is required"),
        (r#"{"name":7}"#, "\"name\""),
    ] {
        let (status, answer) = server.send(Method::POST, "/api/v6/clusters", body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(error(&answer).contains(needle), "{body}: {answer}");
    }

    let run = server.execute("job", json!({"tier": "1"})).await;
    assert_eq!(
        run["cluster"], "gpu",
        "tier 1 routes to the cluster allowing it"
    );
    let run = server.execute("job", json!({"tier": "9"})).await;
    assert_eq!(run["cluster"], "default", "no cluster allows tier 9");
    let run = server.execute("job", json!({"cluster": "gpu"})).await;
    assert_eq!(run["cluster"], "gpu");

    let (status, updated) = server
        .send(
            Method::PUT,
            "/api/v6/clusters/gpu",
            r#"{"status":"maintenance","status_reason":"driver upgrade"}"#,
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        updated["cluster"]["allowed_tiers"],
        json!(["1"]),
        "fields left out stay"
    );
    let (status, answer) = server
        .send(
            Method::PUT,
            "/api/v6/task/alias/job/execute",
            r#"{"run_tags":{"owner_id":"a"},"cluster":"gpu"}"#,
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        error(&answer).contains("maintenance") && error(&answer).contains("driver upgrade"),
        "{answer}"
    );
    let (status, answer) = server
        .send(
            Method::PUT,
            "/api/v6/task/alias/job/execute",
            r#"{"run_tags":{"owner_id":"a"},"cluster":"nowhere"}"#,
        )
        .await;
    assert_eq!(status, 400);
    assert!(error(&answer).contains("does not exist"), "{answer}");
    let run = server.execute("job", json!({"tier": "1"})).await;
    assert_eq!(
        run["cluster"], "default",
        "a cluster in maintenance gets no tier traffic"
    );

    let (_, names) = server.get("/api/v1/clusters").await;
    assert_eq!(
        names["clusters"],
        json!(["default"]),
        "only active clusters take runs"
    );
    let (_, all) = server.get("/api/v7/clusters").await;
    assert_eq!(all["total"], 2);
    assert_eq!(all["clusters"][1]["status"], "maintenance", "{all}");
    let (_, names) = server.get("/api/v6/clusters").await;
    assert_eq!(
        names["clusters"],
        json!(["default"]),
        "v6 answers names, as Flotilla's UI renders them"
    );
    let (status, one) = server.get("/api/v6/clusters/gpu").await;
    assert_eq!((status, one["status"].clone()), (200, json!("maintenance")));
    let (status, _) = server.delete("/api/v6/clusters/gpu", &[]).await;
    assert_eq!(status, 200);
    let (status, _) = server.delete("/api/v6/clusters/gpu", &[]).await;
    assert_eq!(status, 404);
    let (status, _) = server.get("/api/v6/clusters/gpu").await;
    assert_eq!(status, 404);
    let (status, answer) = server
        .send(
            Method::PUT,
            "/api/v6/clusters/default",
            r#"{"name":"other"}"#,
        )
        .await;
    assert_eq!(status, 400);
    assert!(error(&answer).contains("renamed"), "{answer}");
}

#[tokio::test]
async fn the_same_idempotence_key_returns_the_same_run_unless_it_failed() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 2).await;
    server.define("ok", "true").await;
    server.define("fails", "exit 4").await;

    let first = server
        .execute("ok", json!({"idempotence_key": "nightly-1"}))
        .await;
    let again = server
        .execute("ok", json!({"idempotence_key": "nightly-1"}))
        .await;
    assert_eq!(first["run_id"], again["run_id"]);
    let id = first["run_id"].as_str().unwrap_or_default().to_owned();
    server.wait_stopped(&id).await;
    let after = server
        .execute("ok", json!({"idempotence_key": "nightly-1"}))
        .await;
    assert_eq!(
        after["run_id"], first["run_id"],
        "a successful run is returned"
    );
    let other = server
        .execute("ok", json!({"idempotence_key": "nightly-2"}))
        .await;
    assert_ne!(other["run_id"], first["run_id"]);

    let failed = server
        .execute("fails", json!({"idempotence_key": "k-f"}))
        .await;
    let failed_id = failed["run_id"].as_str().unwrap_or_default().to_owned();
    server.wait_stopped(&failed_id).await;
    let retried = server
        .execute("fails", json!({"idempotence_key": "k-f"}))
        .await;
    assert_ne!(
        retried["run_id"], failed["run_id"],
        "a failed run is run again"
    );
    let (_, list) = server.get("/api/v6/history").await;
    assert_eq!(list["total"], 4, "{list}");
}

#[tokio::test]
async fn templates_version_validate_their_payload_and_render_the_command() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 2).await;
    let body = json!({
        "template_name": "train",
        "image": "python:3.12",
        "command_template": "echo epochs={{ .epochs }}{{ if .gpu }} gpu{{ end }} name={{ .name | default \"anon\" }}",
        "schema": {
            "type": "object",
            "required": ["epochs"],
            "properties": {"epochs": {"type": "integer", "minimum": 1}, "gpu": {"type": "boolean"}, "name": {"type": "string"}}
        },
        "defaults": {"gpu": false}
    });
    let (status, created) = server
        .send(Method::POST, "/api/v7/template", &body.to_string())
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["did_create"], true);
    assert_eq!(created["template"]["version"], 1);
    assert_eq!(created["template"]["memory"], 512, "default memory");
    let id = created["template"]["template_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(id.starts_with("tpl-"), "{id}");
    let (_, same) = server
        .send(Method::POST, "/api/v7/template", &body.to_string())
        .await;
    assert_eq!(
        same["did_create"], false,
        "the same content is not a new version"
    );
    assert_eq!(same["template"]["template_id"], id.as_str());
    let mut changed = body.clone();
    changed["defaults"] = json!({"gpu": true});
    let (_, v2) = server
        .send(Method::POST, "/api/v7/template", &changed.to_string())
        .await;
    assert_eq!(
        (v2["did_create"].clone(), v2["template"]["version"].clone()),
        (json!(true), json!(2))
    );

    let (_, list) = server.get("/api/v7/template").await;
    assert_eq!(list["total"], 1, "latest only by default: {list}");
    assert_eq!(list["templates"][0]["version"], 2);
    let (_, list) = server
        .get("/api/v7/template?latest_only=false&sort_by=version&order=desc")
        .await;
    assert_eq!(list["total"], 2);
    assert_eq!(list["templates"][0]["version"], 2);
    // Paged one at a time by next_token: version 2, then 1, then no token;
    // a token is refused by a list sorted another way.
    let (_, first) = server
        .get("/api/v7/template?latest_only=false&sort_by=version&order=desc&limit=1")
        .await;
    assert_eq!(first["templates"][0]["version"], 2);
    let token = first["next_token"].as_str().unwrap_or_default().to_owned();
    assert!(
        !token.is_empty(),
        "a page with rows after it has a next_token: {first}"
    );
    let (status, second) = server
        .get(&format!(
            "/api/v7/template?latest_only=false&sort_by=version&order=desc&limit=1&next_token={token}"
        ))
        .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["templates"][0]["version"], 1);
    assert!(
        second.get("next_token").is_none(),
        "the last page has none: {second}"
    );
    let (status, other) = server
        .get(&format!(
            "/api/v7/template?latest_only=false&sort_by=version&order=asc&limit=1&next_token={token}"
        ))
        .await;
    assert_eq!(status, 400, "{other}");
    assert!(error(&other).contains("same filters"), "{other}");

    let (status, run) = server
        .send(
            Method::PUT,
            &format!("/api/v7/template/{id}/execute"),
            r#"{"owner_id":"ana","template_payload":{"epochs":3,"name":"x"}}"#,
        )
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["command"], "echo epochs=3 name=x");
    assert_eq!(run["executable_type"], "template");
    assert_eq!(run["executable_id"], id.as_str());
    assert_eq!(
        run["execution_request_custom"]["template_payload"]["epochs"],
        3
    );
    let run_id = run["run_id"].as_str().unwrap_or_default().to_owned();
    let (done, _) = server.wait_stopped(&run_id).await;
    assert_eq!(done["exit_code"], 0);
    let (_, logs) = server.get(&format!("/api/v6/{run_id}/logs")).await;
    assert_eq!(logs["log"], "epochs=3 name=x\n");

    let (status, latest) = server
        .send(
            Method::PUT,
            "/api/v7/template/name/train/version/latest/execute",
            r#"{"owner_id":"ana","template_payload":{"epochs":1},"dry_run":true}"#,
        )
        .await;
    assert_eq!(status, 200, "{latest}");
    assert_eq!(
        latest["command"], "echo epochs=1 gpu name=anon",
        "v2's defaults"
    );
    let (status, _) = server
        .get(&format!(
            "/api/v6/history/{}",
            latest["run_id"].as_str().unwrap_or_default()
        ))
        .await;
    assert_eq!(status, 404, "a dry run is not recorded");

    let (_, history) = server.get(&format!("/api/v7/template/{id}/history")).await;
    assert_eq!(history["total"], 1, "{history}");
    let (_, history) = server.get("/api/v7/template/name/train/history").await;
    assert_eq!(history["total"], 1, "{history}");
    let (status, one) = server
        .get(&format!("/api/v7/template/history/{run_id}"))
        .await;
    assert_eq!((status, one["run_id"].clone()), (200, json!(run_id)));

    let bad: [(&str, String, u16, &str); 6] = [
        (
            "PUT",
            format!("/api/v7/template/{id}/execute"),
            400,
            "owner_id",
        ),
        (
            "PUT",
            "/api/v7/template/tpl-nope/execute".to_owned(),
            404,
            "Template with ID tpl-nope not found",
        ),
        (
            "PUT",
            "/api/v7/template/name/nope/version/1/execute".to_owned(),
            404,
            "not found",
        ),
        (
            "PUT",
            "/api/v7/template/name/train/version/7/execute".to_owned(),
            404,
            "version 7",
        ),
        (
            "POST",
            "/api/v7/template".to_owned(),
            400,
            "template_name is required",
        ),
        (
            "GET",
            "/api/v7/template?sort_by=image".to_owned(),
            400,
            "sort_by",
        ),
    ];
    for (method, path, code, needle) in bad {
        let method: Method = method.parse().unwrap_or(Method::GET);
        // An execute body to the execute routes; a template body (missing its
        // name) to create.
        let body = if method == Method::POST {
            r#"{"image":"python:3"}"#
        } else {
            r#"{"template_payload":{"epochs":1}}"#
        };
        let (status, answer) = server.send(method, &path, body).await;
        assert_eq!(status, code, "{path}: {answer}");
        assert!(error(&answer).contains(needle), "{path}: {answer}");
    }
    let (status, answer) = server
        .send(
            Method::PUT,
            &format!("/api/v7/template/{id}/execute"),
            r#"{"owner_id":"ana","template_payload":{"epochs":0,"gpu":"yes"}}"#,
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    let message = error(&answer);
    assert!(
        message.contains("/epochs") && message.contains("/gpu"),
        "every violation: {message}"
    );
    let (_, runs) = server.get("/api/v6/history").await;
    assert_eq!(runs["total"], 1, "refused template runs created nothing");
}
