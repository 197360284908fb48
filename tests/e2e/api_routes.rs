//! Flotilla's routes beyond the life cycle: list filters and envelopes, the
//! status ETag, runs reporting their own status, a run's timeline, groups and
//! tags, CORS and the web UI's files, over the real binary on the embedded
//! backend.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::Server;

fn ids(list: &Value) -> Vec<String> {
    list["history"]
        .as_array()
        .map(|runs| {
            runs.iter()
                .map(|r| r["run_id"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn run_lists_filter_by_env_owner_image_command_and_time_and_echo_the_filters() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 2).await;
    server.define("train", "exit 0").await;
    let a = server
        .execute(
            "train",
            json!({"env": [{"name": "MODEL", "value": "v2"}, {"name": "STAGE", "value": "dev"}]}),
        )
        .await;
    let b = server
        .execute(
            "train",
            json!({"run_tags": {"owner_id": "ana"}, "command": "echo other; exit 3"}),
        )
        .await;
    let a_id = a["run_id"].as_str().unwrap_or_default().to_owned();
    let b_id = b["run_id"].as_str().unwrap_or_default().to_owned();
    server.wait_stopped(&a_id).await;
    server.wait_stopped(&b_id).await;

    let (status, list) = server
        .get("/api/v6/history?env=MODEL%7Cv2&env=STAGE%7Cdev&page=3")
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(ids(&list), [a_id.as_str()], "env filters are ANDed: {list}");
    assert_eq!(list["env_filters"], json!({"MODEL": "v2", "STAGE": "dev"}));
    assert_eq!(
        list["ignored"],
        json!(["page"]),
        "an unknown key is ignored and named: {list}"
    );
    let (_, list) = server.get("/api/v6/history?env=MODEL%7Cv1").await;
    assert!(ids(&list).is_empty(), "{list}");

    let (_, list) = server.get("/api/v6/history?owner_id=ana").await;
    assert_eq!(ids(&list), [b_id.as_str()], "{list}");
    assert_eq!(list["owner_id"], json!(["ana"]), "filters are echoed");
    let (_, list) = server.get("/api/v6/history?command=other").await;
    assert_eq!(ids(&list), [b_id.as_str()], "command substring: {list}");
    let (_, list) = server.get("/api/v6/history?image=ubuntu").await;
    assert_eq!(list["total"], 2, "image substring: {list}");

    let started = a["queued_at"].as_str().unwrap_or_default().to_owned();
    let (_, list) = server
        .get(&format!(
            "/api/v6/history?queued_at_since={started}&sort_by=queued_at&order=asc"
        ))
        .await;
    assert_eq!(list["total"], 2, "since is inclusive: {list}");
    let (_, list) = server
        .get(&format!("/api/v6/history?queued_at_until={started}"))
        .await;
    assert_eq!(list["total"], 0, "until is exclusive: {list}");
    let (_, list) = server
        .get("/api/v6/history?finished_at_since=2000-01-01&finished_at_until=2999-01-01")
        .await;
    assert_eq!(list["total"], 2, "date-only bounds: {list}");

    let (status, answer) = server.get("/api/v6/history?env=MODEL").await;
    assert_eq!(status, 400);
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("NAME|VALUE")
    );
    let (status, answer) = server.get("/api/v6/history?started_at_since=soon").await;
    assert_eq!(status, 400);
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("started_at_since"),
        "{answer}"
    );

    let (status, defs) = server.get("/api/v6/task?alias=tra&image=ubuntu").await;
    assert_eq!(status, 200);
    assert_eq!(defs["total"], 1, "{defs}");
    assert_eq!(defs["alias"], json!(["tra"]));
}

#[tokio::test]
async fn the_status_route_answers_304_until_the_run_changes() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 1).await;
    server.define("sleepy", "sleep 30").await;
    let run = server.execute("sleepy", json!({})).await;
    let id = run["run_id"].as_str().unwrap_or_default().to_owned();
    server
        .wait_for(&id, "RUNNING", |r| r["status"] == "RUNNING")
        .await;

    let path = server.url(&format!("/api/v6/{id}/status"));
    let first = server
        .http()
        .get(&path)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first.status().as_u16(), 200);
    let etag = first
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(etag.starts_with("\"RUNNING-unknown-"), "{etag}");
    let body: Value = first.json().await.unwrap_or_default();
    assert_eq!(body["cluster_name"], "default", "{body}");
    assert_eq!(body["status"], "RUNNING");

    let again = server
        .http()
        .get(&path)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.status().as_u16(), 304);
    assert_eq!(again.text().await.unwrap_or_default(), "");

    // The run reports its own end, with its token: the report is recorded
    // (so the ETag changes) and the process is stopped; the run ends with the
    // exit code the process really had, and the report's reason.
    let token = server.run_token(&id, 1).await;
    let report = r#"{"status":"STOPPED","exit_code":2,"run_exceptions":["KeyError: 'user_id'"]}"#;
    let (status, answer) = server.report(&id, report, None).await;
    assert_eq!(status, 403, "a report without the run's token: {answer}");
    let (status, answer) = server.report(&id, report, Some("0123abcd")).await;
    assert_eq!(status, 403, "a report with another token: {answer}");
    let (status, answer) = server.report(&id, report, Some(&token)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, json!({"updated": true, "status": "RUNNING"}));
    let after = server
        .http()
        .get(&path)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(after.status().as_u16(), 200, "a changed run has a new ETag");
    let (body, _) = server.wait_stopped(&id).await;
    assert_eq!(
        body["exit_code"], 143,
        "the real exit code, of bash ended by SIGTERM: {body}"
    );
    assert_eq!(body["exit_reason"], "Data or argument error", "{body}");

    // A report that would move the run backwards changes nothing.
    let (status, answer) = server
        .report(&id, r#"{"status":"RUNNING"}"#, Some(&token))
        .await;
    assert_eq!(status, 200);
    assert_eq!(answer, json!({"updated": false, "status": "STOPPED"}));

    let bad = [
        (r#"{"status":"DONE"}"#, 400, "status \"DONE\" is invalid"),
        (r#"{}"#, 400, "is invalid"),
        (
            r#"{"status":"RUNNING","exit_code":1}"#,
            400,
            "exit_code goes with status STOPPED",
        ),
    ];
    for (body, code, needle) in bad {
        let (status, answer) = server.report(&id, body, Some(&token)).await;
        assert_eq!(status, code, "{body}: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap_or_default()
                .contains(needle),
            "{answer}"
        );
    }
    let (status, _) = server
        .send(
            Method::PUT,
            "/api/v6/local-nope/status",
            r#"{"status":"RUNNING"}"#,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = server.get("/api/v6/local-nope/status").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_runs_events_are_its_timeline_in_order_with_timestamps() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 1).await;
    server.define("quick", "echo hi").await;
    let run = server.execute("quick", json!({})).await;
    let id = run["run_id"].as_str().unwrap_or_default().to_owned();
    server.wait_stopped(&id).await;

    for v in ["v1", "v6"] {
        let (status, events) = server.get(&format!("/api/{v}/{id}/events")).await;
        assert_eq!(status, 200, "{events}");
        let reasons: Vec<&str> = events["pod_events"]
            .as_array()
            .map(|e| e.iter().filter_map(|x| x["reason"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(
            reasons,
            [
                "RunQueued",
                "RunSubmitted",
                "RunStarted",
                "RunUsageRecorded",
                "RunStopped"
            ],
            "{events}"
        );
        assert_eq!(events["total"], 5);
        let first = &events["pod_events"][0];
        assert!(first["timestamp"].as_str().is_some_and(|t| t.contains('T')));
        assert!(
            first["message"]
                .as_str()
                .unwrap_or_default()
                .contains("queued on cluster default by tester"),
            "{first}"
        );
        assert_eq!(events["pod_events"][3]["event_type"], "Normal");
    }
    let (status, _) = server.get("/api/v6/local-nope/events").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn groups_and_tags_list_what_definitions_hold() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 1).await;
    for (alias, group, tags) in [
        ("a", "science", json!(["nightly", "ml"])),
        ("b", "finance", json!(["ml"])),
        ("c", "science", json!([])),
    ] {
        let body = json!({"alias": alias, "group_name": group, "image": "i", "tags": tags});
        let (status, _) = server
            .send(Method::POST, "/api/v6/task", &body.to_string())
            .await;
        assert_eq!(status, 200);
    }
    let (_, groups) = server.get("/api/v1/groups").await;
    assert_eq!(
        groups,
        json!({"total": 2, "groups": ["finance", "science"]})
    );
    let (_, tags) = server.get("/api/v6/tags").await;
    assert_eq!(tags, json!({"total": 2, "tags": ["ml", "nightly"]}));
    let (_, groups) = server.get("/api/v6/groups?name=sci").await;
    assert_eq!(groups, json!({"total": 1, "groups": ["science"]}));
}

#[tokio::test]
async fn a_browser_on_an_allowed_origin_may_call_the_api_and_others_may_not() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start_with(
        &dir.path().join("data"),
        1,
        &["--cors-origins", "http://ui.example:3000"],
    )
    .await;
    let preflight = |origin: &'static str| {
        server
            .http()
            .request(Method::OPTIONS, server.url("/api/v6/task"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let allowed = preflight("http://ui.example:3000")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(allowed.status().is_success());
    let h = allowed.headers();
    assert_eq!(
        h.get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("http://ui.example:3000")
    );
    let methods = h
        .get("access-control-allow-methods")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    for m in ["GET", "POST", "PUT", "DELETE"] {
        assert!(methods.contains(m), "{methods}");
    }
    let other = preflight("http://evil.example")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(other.headers().get("access-control-allow-origin").is_none());

    let get = server
        .http()
        .get(server.url("/api/v6/task"))
        .header("origin", "http://ui.example:3000")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(get.status().as_u16(), 200);
    assert!(get.headers().get("access-control-allow-origin").is_some());
}

#[tokio::test]
async fn the_web_ui_is_served_at_the_root_and_revalidates_by_etag() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 1).await;
    let page = server
        .http()
        .get(server.url("/"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(page.status(), 200);
    assert_eq!(
        page.headers()["content-type"].to_str().unwrap_or_default(),
        "text/html; charset=utf-8"
    );
    let body = page.text().await.unwrap_or_default();
    assert!(body.contains("ui/js/app.js"), "{body}");

    let script = server
        .http()
        .get(server.url("/ui/js/run.js"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(script.status(), 200);
    assert!(
        script.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/javascript")
    );
    let etag = script.headers()["etag"].clone();
    let again = server
        .http()
        .get(server.url("/ui/js/run.js"))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.status(), 304, "an unchanged asset is not sent again");

    let (status, missing) = server.get("/ui/js/nothing.js").await;
    assert_eq!(status, 404);
    assert!(
        missing["error"]
            .as_str()
            .unwrap_or_default()
            .contains("nothing.js")
    );
    let (status, refused) = server
        .send(Method::POST, "/api/v6/task", r#"{"memory": 0}"#)
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        refused["problems"].as_array().map(Vec::len),
        Some(3),
        "a 400 lists each problem: {refused}"
    );
}

#[tokio::test]
async fn next_token_walks_every_run_once_in_order_and_a_token_of_another_list_is_refused() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 2).await;
    server.define("quick", "true").await;
    let mut launched = Vec::new();
    for _ in 0..7 {
        let run = server.execute("quick", json!({})).await;
        launched.push(run["run_id"].as_str().unwrap_or_default().to_owned());
    }
    for run_id in &launched {
        server.wait_stopped(run_id).await;
    }
    for sort in [
        "queued_at&order=desc",
        "started_at&order=asc",
        "run_id&order=desc",
    ] {
        let (_, whole) = server
            .get(&format!("/api/v6/history?sort_by={sort}&limit=100"))
            .await;
        assert!(whole.get("next_token").is_none(), "one page: {whole}");
        let mut walked = Vec::new();
        let mut path = format!("/api/v6/history?sort_by={sort}&limit=3");
        let mut pages = 0;
        loop {
            let (status, page) = server.get(&path).await;
            assert_eq!(status, 200, "{page}");
            assert_eq!(page["total"], 7, "{page}");
            walked.extend(ids(&page));
            pages += 1;
            match page["next_token"].as_str() {
                Some(token) => {
                    path = format!("/api/v6/history?sort_by={sort}&limit=3&next_token={token}");
                }
                None => break,
            }
            assert!(pages < 10, "pages forever");
        }
        assert_eq!(pages, 3, "7 runs in pages of 3");
        assert_eq!(walked, ids(&whole), "sorted by {sort}");
    }

    let (_, first) = server.get("/api/v6/history?limit=3").await;
    let token = first["next_token"].as_str().unwrap_or_default().to_owned();
    for (path, says) in [
        (
            format!("/api/v6/history?limit=3&status=STOPPED&next_token={token}"),
            "other filters",
        ),
        (
            format!("/api/v6/history?limit=3&sort_by=alias&next_token={token}"),
            "other filters or another sort",
        ),
        (
            format!("/api/v6/history?limit=3&offset=3&next_token={token}"),
            "either offset or next_token",
        ),
        (
            "/api/v6/history?limit=3&next_token=7b7d".to_owned(),
            "not one this service made",
        ),
        (
            "/api/v6/history?limit=3&next_token=zz".to_owned(),
            "not one this service made",
        ),
    ] {
        let (status, answer) = server.get(&path).await;
        assert_eq!(status, 400, "{path}: {answer}");
        assert!(
            answer["error"].as_str().unwrap_or_default().contains(says),
            "{path}: {answer}"
        );
    }

    let (_, definitions) = server.get("/api/v6/task?limit=1").await;
    assert!(definitions.get("next_token").is_none(), "{definitions}");
}
