//! The quick-start and the life cycle of runs.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Server, eventually, process_exists};

fn quick_start_definition() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/hello-world.json");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn env_names(run: &Value) -> Vec<String> {
    run["env"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| v["name"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn the_readme_quick_start_runs_hello_world_to_stopped_with_its_output_in_the_logs() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 2).await;

    let (status, def) = server
        .send(Method::POST, "/api/v6/task", &quick_start_definition())
        .await;
    assert_eq!(status, 200, "{def}");
    assert_eq!(def["alias"], "hello-flotilla");
    assert!(
        def["definition_id"]
            .as_str()
            .unwrap_or_default()
            .starts_with("examples-")
    );

    let body = r#"{"cluster":"default","env":[{"name":"USERNAME","value":"yourusername"}],"run_tags":{"owner_id":"youruser"}}"#;
    let (status, run) = server
        .send(
            Method::PUT,
            "/api/v6/task/alias/hello-flotilla/execute",
            body,
        )
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "QUEUED");
    assert_eq!(run["cluster"], "default");
    assert_eq!(run["user"], "youruser");
    assert_eq!(
        run["description"], "hello-flotilla",
        "description defaults to the alias"
    );
    assert!(
        run["instance"].is_object(),
        "the run always has an instance object: {run}"
    );
    assert_eq!(
        env_names(&run),
        [
            "FLOTILLA_RUN_ID",
            "FLOTILLA_SERVER_MODE",
            "FLOTILLA_RUN_OWNER_ID",
            "USERNAME"
        ]
    );
    let run_id = run["run_id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(run["env"][0]["value"], run_id.as_str());
    assert_eq!(run["env"][2]["value"], "youruser");

    let (done, seen) = server.wait_stopped(&run_id).await;
    assert_eq!(done["exit_code"], 0, "{done}");
    for key in ["queued_at", "started_at", "finished_at"] {
        assert!(
            done[key].is_string(),
            "{key} is set on a finished run: {done}"
        );
    }
    assert!(
        done["instance"]["dns_name"]
            .as_str()
            .is_some_and(|h| !h.is_empty())
    );
    assert!(
        seen.iter()
            .all(|s| ["QUEUED", "PENDING", "RUNNING", "STOPPED"].contains(&s.as_str())),
        "{seen:?}"
    );

    let (status, same) = server.get(&format!("/api/v6/task/history/{run_id}")).await;
    assert_eq!(status, 200);
    assert_eq!(same["run_id"], run_id.as_str());
    let (status, same) = server.get(&format!("/api/v1/history/{run_id}")).await;
    assert_eq!((status, same["status"].clone()), (200, json!("STOPPED")));

    let (status, logs) = server.get(&format!("/api/v6/{run_id}/logs")).await;
    assert_eq!(status, 200, "{logs}");
    assert_eq!(logs["log"], "hello yourusername\n");
    let last_seen = logs["last_seen"].as_str().unwrap_or_default().to_owned();
    let (_, next) = server
        .get(&format!("/api/v6/{run_id}/logs?last_seen={last_seen}"))
        .await;
    assert_eq!(next["log"], "", "nothing after the last page");
    assert_eq!(
        next["last_seen"],
        last_seen.as_str(),
        "the cursor stays put at the end"
    );
    let (status, raw) = server
        .get_text(&format!("/api/v6/{run_id}/logs?raw_text=true"))
        .await;
    assert_eq!((status, raw.as_str()), (200, "hello yourusername\n"));
}

#[tokio::test]
async fn execute_needs_an_owner_id_and_accepts_it_in_upper_case_as_flotillas_ui_sends_it() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 2).await;
    let def = server.define("owned", "true").await;
    let id = def["definition_id"].as_str().unwrap_or_default();

    let (status, err) = server
        .send(
            Method::PUT,
            "/api/v6/task/alias/owned/execute",
            r#"{"cluster":"default"}"#,
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"]
            .as_str()
            .unwrap_or_default()
            .contains("owner_id"),
        "{err}"
    );
    let (status, _) = server
        .send(Method::PUT, &format!("/api/v6/task/{id}/execute"), "{}")
        .await;
    assert_eq!(status, 400);

    let (status, run) = server
        .send(
            Method::PUT,
            "/api/v6/task/alias/owned/execute",
            r#"{"run_tags":{"OWNER_ID":"ui-user"}}"#,
        )
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["user"], "ui-user");

    let (status, run) = server
        .send(Method::PUT, &format!("/api/v1/task/{id}/execute"), "")
        .await;
    assert_eq!(status, 200, "v1 needs no owner: {run}");
    assert_eq!(run["user"], "v1-unknown");

    let (status, err) = server
        .send(
            Method::PUT,
            &format!("/api/v2/task/{id}/execute"),
            r#"{"run_tags":{"owner_email":"a@b.c"}}"#,
        )
        .await;
    assert_eq!(status, 400, "v2 needs a team too: {err}");
    let body = r#"{"run_tags":{"owner_email":"a@b.c","team_name":"data"}}"#;
    let (status, run) = server
        .send(Method::PUT, &format!("/api/v2/task/{id}/execute"), body)
        .await;
    assert_eq!((status, run["user"].clone()), (200, json!("a@b.c")));
}

#[tokio::test]
async fn a_failing_command_ends_stopped_with_its_exit_code() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 2).await;
    server
        .define("fails", "echo about to fail >&2; exit 3")
        .await;
    let run = server.execute("fails", json!({})).await;
    let (done, _) = server
        .wait_stopped(run["run_id"].as_str().unwrap_or_default())
        .await;
    assert_eq!(done["exit_code"], 3, "{done}");
    let (_, logs) = server
        .get(&format!(
            "/api/v6/{}/logs",
            done["run_id"].as_str().unwrap_or_default()
        ))
        .await;
    assert_eq!(logs["log"], "about to fail\n", "stderr is captured too");
}

#[tokio::test]
async fn the_process_sees_definition_env_then_run_env_then_the_reserved_variables() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 2).await;
    let body = json!({
        "alias": "envs", "image": "ubuntu", "group_name": "g",
        "env": [{"name": "A", "value": "from-definition"}, {"name": "B", "value": "from-definition"}],
        "command": "echo \"$A $B $FLOTILLA_RUN_OWNER_ID $FLOTILLA_SERVER_MODE\"; [ \"$FLOTILLA_RUN_ID\" ] && pwd"
    });
    let (status, _) = server
        .send(Method::POST, "/api/v6/task", &body.to_string())
        .await;
    assert_eq!(status, 200);
    let run = server
        .execute("envs", json!({"env": [{"name": "B", "value": "from-run"}]}))
        .await;
    let run_id = run["run_id"].as_str().unwrap_or_default();
    let (done, _) = server.wait_stopped(run_id).await;
    assert_eq!(done["exit_code"], 0, "{done}");
    let (_, logs) = server.get(&format!("/api/v6/{run_id}/logs")).await;
    let log = logs["log"].as_str().unwrap_or_default();
    assert!(
        log.starts_with("from-definition from-run tester local\n"),
        "{log}"
    );
    assert!(
        log.contains(&format!("{run_id}/work")),
        "each run works in its own directory: {log}"
    );
}

#[tokio::test]
async fn stopping_a_running_run_signals_its_whole_process_group_and_says_who_stopped_it() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 2).await;
    let def = server
        .define("sleeper", "sleep 60 & echo started; wait")
        .await;
    let run = server.execute("sleeper", json!({})).await;
    let run_id = run["run_id"].as_str().unwrap_or_default().to_owned();
    let (running, _) = server
        .wait_for(&run_id, "RUNNING", |r| r["status"] == "RUNNING")
        .await;
    let pid = running["task_id"].as_str().unwrap_or_default().to_owned();
    assert!(
        process_exists(&pid),
        "the run's process is alive while RUNNING"
    );

    let path = format!(
        "/api/v6/task/{}/history/{run_id}",
        def["definition_id"].as_str().unwrap_or_default()
    );
    let (status, ack) = server
        .delete(&path, &[("X-Forwarded-Email", "jane@example.com")])
        .await;
    assert_eq!((status, ack), (200, json!({"terminated": true})));
    let (done, _) = server.wait_stopped(&run_id).await;
    assert_eq!(done["exit_reason"], "stopped by jane@example.com", "{done}");
    assert_eq!(done["exit_code"], 143, "bash ended by SIGTERM: {done}");
    eventually("the run's process is gone", || !process_exists(&pid)).await;

    let (status, _) = server.delete(&path, &[]).await;
    assert_eq!(status, 200, "stopping a stopped run is harmless");
    let (status, err) = server
        .delete("/api/v6/task/x/history/local-nope", &[])
        .await;
    assert_eq!(status, 404, "stopping an unknown run is a 404: {err}");
}

#[tokio::test]
async fn a_queued_run_stopped_before_launch_never_runs() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 1).await;
    let marker = dir.path().join("ran");
    server.define("blocker", "sleep 60").await;
    server
        .define("waiter", &format!("touch {}", marker.display()))
        .await;
    let blocker = server.execute("blocker", json!({})).await;
    let blocker_id = blocker["run_id"].as_str().unwrap_or_default().to_owned();
    server
        .wait_for(&blocker_id, "RUNNING", |r| r["status"] == "RUNNING")
        .await;
    let waiter = server.execute("waiter", json!({})).await;
    let waiter_id = waiter["run_id"].as_str().unwrap_or_default().to_owned();
    let (status, _) = server
        .delete(&format!("/api/v1/task/x/history/{waiter_id}"), &[])
        .await;
    assert_eq!(status, 200);
    let (done, _) = server.wait_stopped(&waiter_id).await;
    assert!(
        done["exit_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("before it was launched"),
        "{done}"
    );
    server
        .delete(&format!("/api/v1/task/x/history/{blocker_id}"), &[])
        .await;
    server.wait_stopped(&blocker_id).await;
    // Give the queue consumer every chance to (wrongly) launch the stopped run.
    let third = server.execute("blocker", json!({"command": "true"})).await;
    server
        .wait_stopped(third["run_id"].as_str().unwrap_or_default())
        .await;
    assert!(
        !marker.exists(),
        "a run stopped while QUEUED must never launch"
    );
}

#[tokio::test]
async fn a_run_past_its_active_deadline_is_stopped_with_a_reason_that_says_so() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 2).await;
    server.define("slow", "sleep 60").await;
    let run = server
        .execute("slow", json!({"active_deadline_seconds": 1}))
        .await;
    let (done, _) = server
        .wait_stopped(run["run_id"].as_str().unwrap_or_default())
        .await;
    let reason = done["exit_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("active_deadline_seconds (1 s)"), "{done}");
}

#[tokio::test]
async fn logs_follow_a_running_run_page_by_page_without_losing_or_repeating_a_byte() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 2).await;
    server
        .define(
            "talker",
            "for i in 1 2 3 4 5; do echo \"line $i héllo\"; sleep 0.2; done",
        )
        .await;
    let run = server.execute("talker", json!({})).await;
    let run_id = run["run_id"].as_str().unwrap_or_default().to_owned();
    let mut text = String::new();
    let mut last_seen = String::new();
    let mut pages = 0;
    loop {
        let (status, page) = server
            .get(&format!("/api/v6/{run_id}/logs?last_seen={last_seen}"))
            .await;
        assert_eq!(status, 200, "{page}");
        text.push_str(page["log"].as_str().unwrap_or_default());
        last_seen = page["last_seen"].as_str().unwrap_or_default().to_owned();
        pages += 1;
        let (_, run) = server.get(&format!("/api/v6/history/{run_id}")).await;
        if run["status"] == "STOPPED" && page["log"] == "" {
            break;
        }
        assert!(pages < 2000, "log paging never finished");
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    let expected: String = (1..=5).map(|i| format!("line {i} héllo\n")).collect();
    assert_eq!(text, expected);
    assert!(
        pages > 2,
        "the log was read while the run was still writing it"
    );
    let (status, err) = server
        .get(&format!("/api/v6/{run_id}/logs?last_seen=banana"))
        .await;
    assert_eq!(status, 400, "{err}");
}

#[tokio::test]
async fn history_lists_filter_by_repeated_status_and_echo_the_filters() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 2).await;
    let ok = server.define("ok-job", "true").await;
    server.define("bad-job", "false").await;
    let (status, _) = server
        .send(
            reqwest::Method::POST,
            "/api/v6/clusters",
            r#"{"name":"team-b"}"#,
        )
        .await;
    assert_eq!(status, 200);
    let a = server.execute("ok-job", json!({})).await;
    let b = server
        .execute("bad-job", json!({"cluster": "team-b"}))
        .await;
    for r in [&a, &b] {
        server
            .wait_stopped(r["run_id"].as_str().unwrap_or_default())
            .await;
    }
    let (status, list) = server
        .get("/api/v6/history?status=STOPPED&status=QUEUED&cluster=team-b")
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["total"], 1);
    assert_eq!(list["history"][0]["run_id"], b["run_id"]);
    assert_eq!(list["status"], json!(["STOPPED", "QUEUED"]));
    assert_eq!(list["cluster"], json!(["team-b"]));
    assert_eq!(list["env_filters"], json!({}));

    let (_, list) = server
        .get("/api/v1/history?sort_by=alias&order=asc&limit=1&offset=1")
        .await;
    assert_eq!(
        (
            list["total"].clone(),
            list["limit"].clone(),
            list["offset"].clone()
        ),
        (json!(2), json!(1), json!(1))
    );
    assert_eq!(list["history"][0]["alias"], "ok-job");

    let id = ok["definition_id"].as_str().unwrap_or_default();
    let (_, list) = server.get(&format!("/api/v6/task/{id}/history")).await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["definition_id"], json!([id]));

    let (_, defs) = server
        .get("/api/v6/task?alias=job&sort_by=alias&order=desc")
        .await;
    assert_eq!(defs["total"], 2);
    assert_eq!(defs["definitions"][0]["alias"], "ok-job");
    assert_eq!(defs["alias"], json!(["job"]));
}

#[tokio::test]
async fn definitions_are_created_read_updated_and_deleted_without_losing_run_history() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 2).await;
    let body = json!({"alias": "crud", "image": "ubuntu", "group_name": "g1", "tags": ["x"], "ports": [8080], "command": "true"});
    let (_, def) = server
        .send(Method::POST, "/api/v1/task", &body.to_string())
        .await;
    let id = def["definition_id"].as_str().unwrap_or_default().to_owned();
    let (status, got) = server.get(&format!("/api/v6/task/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        (got["tags"].clone(), got["ports"].clone()),
        (json!(["x"]), json!([8080])),
        "tags and ports read back"
    );
    let (_, by_alias) = server.get("/api/v6/task/alias/crud").await;
    assert_eq!(by_alias["definition_id"], id.as_str());

    let (status, updated) = server
        .send(
            Method::PUT,
            &format!("/api/v6/task/{id}"),
            r#"{"group_name":"g2","memory":2048}"#,
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    let (_, got) = server.get(&format!("/api/v6/task/{id}")).await;
    assert_eq!(
        (
            got["group_name"].clone(),
            got["memory"].clone(),
            got["image"].clone()
        ),
        (json!("g2"), json!(2048), json!("ubuntu"))
    );

    let run = server.execute("crud", json!({})).await;
    let run_id = run["run_id"].as_str().unwrap_or_default().to_owned();
    server.wait_stopped(&run_id).await;
    let (status, deleted) = server.delete(&format!("/api/v6/task/{id}"), &[]).await;
    assert_eq!((status, deleted), (200, json!({"deleted": true})));
    let (status, _) = server.get(&format!("/api/v6/task/{id}")).await;
    assert_eq!(status, 404);
    let (status, _) = server.delete(&format!("/api/v6/task/{id}"), &[]).await;
    assert_eq!(status, 404, "deleting an unknown definition is a 404");
    let (status, run) = server.get(&format!("/api/v6/history/{run_id}")).await;
    assert_eq!(
        (status, run["status"].clone()),
        (200, json!("STOPPED")),
        "run history outlives its definition"
    );
}
