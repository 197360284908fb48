//! Retry policies on the real binary: an exit code the policy lists runs
//! again after its backoff, another stands; an attempt that runs out of
//! memory runs again with more; a bad policy is refused when it is saved;
//! a run that does not run yet says why it waits, and where it stands in its
//! cluster's queue; a cluster's `max_concurrency` holds while another
//! cluster runs beside it; the queued runs of a cluster in maintenance wait
//! for it, and say so.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::Server;

fn id(run: &Value) -> String {
    run["run_id"].as_str().unwrap_or_default().to_owned()
}

/// The run's timeline entries.
async fn timeline(server: &Server, run_id: &str) -> Vec<Value> {
    let (status, events) = server.get(&format!("/api/v6/{run_id}/events")).await;
    assert_eq!(status, 200, "{events}");
    events["pod_events"].as_array().cloned().unwrap_or_default()
}

fn at(entry: &Value) -> chrono::DateTime<chrono::Utc> {
    entry["timestamp"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_else(|| panic!("no timestamp: {entry}"))
}

/// Polls until the run is STOPPED; retries wait for the server's sweep, so
/// the bound is wider than for one attempt.
async fn wait_stopped(server: &Server, run_id: &str) -> Value {
    server
        .wait_within(run_id, "STOPPED", Duration::from_secs(120), |r| {
            r["status"] == "STOPPED"
        })
        .await
        .0
}

async fn define(server: &Server, body: Value) {
    let (status, def) = server
        .send(reqwest::Method::POST, "/api/v6/task", &body.to_string())
        .await;
    assert_eq!(status, 200, "{def}");
}

#[tokio::test]
async fn an_exit_code_the_policy_lists_runs_again_after_its_backoff_and_then_succeeds() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let count = dir.path().join("count");
    let server = Server::start(&dir.path().join("data"), 2).await;
    // Fails with 3 the first time, succeeds the second.
    let command = format!(
        "n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; [ $n -ge 2 ] || exit 3",
        c = count.display()
    );
    define(
        &server,
        json!({
            "alias": "flaky",
            "image": "ubuntu:latest",
            "command": command,
            "retry": {"attempts": 3, "on_exit_codes": [3], "backoff_seconds": {"initial": 2}},
        }),
    )
    .await;
    let run_id = id(&server.execute("flaky", json!({})).await);
    let (waiting, _) = server
        .wait_for(&run_id, "NEEDS_RETRY", |r| r["status"] == "NEEDS_RETRY")
        .await;
    assert!(
        waiting["waiting_reason"]
            .as_str()
            .is_some_and(|r| r.contains("attempt 2 waits out its backoff until")),
        "while it waits it says why: {waiting}"
    );
    let run = wait_stopped(&server, &run_id).await;
    assert!(
        run.get("waiting_reason").is_none(),
        "an ended run waits for nothing: {run}"
    );
    assert_eq!(run["exit_code"], 0, "{run}");
    assert_eq!(run["attempt_count"], 2, "{run}");
    assert_eq!(
        run["retry"]["attempts"], 3,
        "the policy is on the run: {run}"
    );

    let events = timeline(&server, &run_id).await;
    let retried = events
        .iter()
        .find(|e| e["reason"] == "RunNeedsRetry")
        .unwrap_or_else(|| panic!("no retry in {events:#?}"));
    let message = retried["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("exited with 3") && message.contains("on_exit_codes"),
        "the timeline says why: {message}"
    );
    assert!(message.contains("waits 2 s"), "and how long: {message}");
    let requeued = events
        .iter()
        .find(|e| e["reason"] == "RunRequeued")
        .unwrap_or_else(|| panic!("no requeue in {events:#?}"));
    let waited = at(requeued) - at(retried);
    assert!(
        waited >= chrono::Duration::seconds(2),
        "attempt 2 was queued {waited} after attempt 1 failed, within its 2 s backoff"
    );
}

#[tokio::test]
async fn an_exit_code_the_policy_does_not_list_stands_after_one_attempt() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 2).await;
    define(
        &server,
        json!({
            "alias": "broken",
            "image": "ubuntu:latest",
            "command": "exit 4",
            "retry": {"attempts": 3, "on_exit_codes": [3]},
        }),
    )
    .await;
    let run_id = id(&server.execute("broken", json!({})).await);
    let run = wait_stopped(&server, &run_id).await;
    assert_eq!(run["exit_code"], 4, "{run}");
    assert_eq!(run["attempt_count"], 1, "{run}");
    // A launch's policy replaces the definition's: 4 is retried there.
    let run_id = id(&server
        .execute(
            "broken",
            json!({"retry": {"attempts": 2, "on_exit_codes": [4]}}),
        )
        .await);
    let run = wait_stopped(&server, &run_id).await;
    assert_eq!(run["attempt_count"], 2, "{run}");
    assert!(
        run["exit_reason"]
            .as_str()
            .is_some_and(|r| r.contains("attempt 2 of the 2")),
        "the last attempt says why it stands: {run}"
    );
}

#[tokio::test]
async fn a_run_out_of_memory_runs_again_with_half_as_much_again_and_the_next_run_of_its_job_starts_there()
 {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 2).await;
    define(
        &server,
        json!({
            "alias": "grows",
            "image": "python:3",
            "memory": 64,
            "max_memory": 1024,
            // About 80 MB in all: more than 64, less than 96.
            "command": "python3 -c 'x = bytearray(70 * 1024 * 1024); print(len(x))'",
            "retry": {"attempts": 3, "on_reasons": ["out of memory"]},
        }),
    )
    .await;
    let run_id = id(&server.execute("grows", json!({})).await);
    let run = wait_stopped(&server, &run_id).await;
    let events = timeline(&server, &run_id).await;
    let started = events
        .iter()
        .find(|e| e["reason"] == "RunStarted")
        .and_then(|e| e["message"].as_str())
        .unwrap_or_default()
        .to_owned();
    if !started.contains("by a cgroup") {
        println!("no cgroup can be made here, so nothing runs out of memory: {started}");
        return;
    }
    assert_eq!(run["exit_code"], 0, "{run}\n{events:#?}");
    assert_eq!(run["attempt_count"], 2, "{run}");
    assert_eq!(run["memory"], 96, "1.5 × 64 MB: {run}");
    assert_eq!(run["memory_limit"], 96, "{run}");
    assert!(
        run["resources_note"]
            .as_str()
            .is_some_and(|n| n.contains("up from 64 MB")),
        "the run says why its memory differs: {run}"
    );
    let second = events
        .iter()
        .filter(|e| e["reason"] == "RunStarted")
        .nth(1)
        .and_then(|e| e["message"].as_str())
        .unwrap_or_default();
    assert!(
        second.contains("96 MB"),
        "attempt 2 is held to 96 MB: {second}"
    );
    // The job learned: its next run starts with 96 MB, says why, and
    // succeeds at its first attempt.
    let next = server.execute("grows", json!({})).await;
    assert_eq!(next["memory"], 96, "{next}");
    let note = next["resources_note"].as_str().unwrap_or_default();
    assert!(
        note.contains(&format!(
            "run {run_id} of this job ran out of memory with 64 MB"
        )),
        "the run says why it starts with more: {next}"
    );
    let done = wait_stopped(&server, &id(&next)).await;
    assert_eq!(
        (done["exit_code"].as_i64(), done["attempt_count"].as_u64()),
        (Some(0), Some(1)),
        "{done}"
    );
    // Another command of the same definition is another job: it learned nothing.
    let other = server
        .execute("grows", json!({"command": "python3 -c 'print(1)'"}))
        .await;
    assert_eq!(other["memory"], 64, "{other}");
    assert!(other.get("resources_note").is_none(), "{other}");
    wait_stopped(&server, &id(&other)).await;
}

#[tokio::test]
async fn a_policy_that_cannot_be_kept_is_refused_when_saved_and_says_what_to_send() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 2).await;
    let body = json!({
        "alias": "bad",
        "image": "ubuntu:latest",
        "command": "true",
        "memory": 512,
        "max_memory": 256,
        "retry": {"attempts": 0, "on_exit_codes": [0], "memory_multiplier": 9},
    });
    let (status, answer) = server
        .send(reqwest::Method::POST, "/api/v6/task", &body.to_string())
        .await;
    assert_eq!(status, 400, "{answer}");
    let text = answer.to_string();
    for expected in [
        "retry.attempts is 0",
        "on_exit_codes holds 0",
        "memory_multiplier is 9",
    ] {
        assert!(text.contains(expected), "{expected}: {text}");
    }
    let body = json!({"alias": "bad", "image": "ubuntu:latest", "memory": 512, "max_memory": 256});
    let (status, answer) = server
        .send(reqwest::Method::POST, "/api/v6/task", &body.to_string())
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer
            .to_string()
            .contains("max_memory 256 MB is less than memory 512 MB"),
        "{answer}"
    );
    let body =
        json!({"alias": "bad", "image": "ubuntu:latest", "retry": {"on_reasons": ["bad luck"]}});
    let (status, answer) = server
        .send(reqwest::Method::POST, "/api/v6/task", &body.to_string())
        .await;
    assert_eq!(status, 400, "an unknown reason is refused: {answer}");
}

#[tokio::test]
async fn a_queued_run_says_it_waits_for_a_free_slot_until_the_run_ahead_ends() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 1).await;
    server.define("blocker", "sleep 60").await;
    server.define("next", "true").await;
    let blocker = id(&server.execute("blocker", json!({})).await);
    let (running, _) = server
        .wait_for(&blocker, "RUNNING", |r| r["status"] == "RUNNING")
        .await;
    assert!(running.get("waiting_reason").is_none(), "{running}");
    let next = id(&server.execute("next", json!({})).await);
    let (status, view) = server.get(&format!("/api/v6/{next}/status")).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["status"], "QUEUED", "parallelism 1 is taken: {view}");
    assert_eq!(
        view["waiting_reason"], "waiting for a free slot: parallelism 1, 1 running",
        "{view}"
    );
    assert!(view["waiting_since"].is_string(), "{view}");
    assert_eq!(view["queue_position"], 1, "{view}");
    let (status, _) = server
        .delete(&format!("/api/v6/task/x/history/{blocker}"), &[])
        .await;
    assert_eq!(status, 200);
    let run = wait_stopped(&server, &next).await;
    assert_eq!(run["exit_code"], 0, "{run}");
    assert!(run.get("waiting_reason").is_none(), "{run}");
}

#[tokio::test]
async fn a_cluster_with_max_concurrency_one_runs_its_runs_one_at_a_time_while_another_runs_in_parallel()
 {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 4).await;
    for body in [
        json!({"name": "single", "max_concurrency": 1}),
        json!({"name": "wide"}),
    ] {
        let (status, answer) = server
            .send(reqwest::Method::POST, "/api/v6/clusters", &body.to_string())
            .await;
        assert_eq!(status, 200, "{answer}");
    }
    let (status, answer) = server
        .send(
            reqwest::Method::POST,
            "/api/v6/clusters",
            &json!({"name": "bad", "max_concurrency": -2}).to_string(),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer.to_string().contains("max_concurrency -2"),
        "{answer}"
    );
    // Each run holds until its marker file is there.
    let gate = dir.path().join("gate");
    std::fs::create_dir_all(&gate).unwrap_or_else(|e| panic!("{e}"));
    let command = format!(
        "while [ ! -e {}/$FLOTILLA_RUN_ID ]; do sleep 0.1; done",
        gate.display()
    );
    server.define("held", &command).await;
    let launch = |cluster: &'static str| {
        let server = &server;
        async move { id(&server.execute("held", json!({"cluster": cluster})).await) }
    };
    let single: Vec<String> = vec![
        launch("single").await,
        launch("single").await,
        launch("single").await,
    ];
    let wide: Vec<String> = vec![launch("wide").await, launch("wide").await];
    for run in &wide {
        server
            .wait_for(run, "RUNNING", |r| r["status"] == "RUNNING")
            .await;
    }
    let (first, _) = server
        .wait_for(&single[0], "RUNNING", |r| r["status"] == "RUNNING")
        .await;
    assert_eq!(first["cluster"], "single", "{first}");
    // The cluster's other runs wait at its cap, in order, while the other
    // cluster's two run.
    for (n, run) in single[1..].iter().enumerate() {
        let (status, view) = server.get(&format!("/api/v6/{run}/status")).await;
        assert_eq!(status, 200, "{view}");
        assert_eq!(view["status"], "QUEUED", "{view}");
        assert_eq!(
            view["waiting_reason"], "cluster single is at its cap: 1 of 1 running",
            "{view}"
        );
        assert_eq!(view["queue_position"], n as u64 + 1, "{view}");
    }
    let (_, page) = server
        .get("/api/v6/history?cluster_name=single&status=QUEUED")
        .await;
    let listed = page["history"].as_array().cloned().unwrap_or_default();
    assert_eq!(listed.len(), 2, "{page}");
    assert!(
        listed
            .iter()
            .all(|r| r["waiting_reason"] == "cluster single is at its cap: 1 of 1 running"),
        "the list says why too: {page}"
    );
    // As each run ends the next takes its place, never two at once.
    let release = |run: &str| {
        std::fs::write(gate.join(run), b"").unwrap_or_else(|e| panic!("{e}"));
    };
    release(&single[0]);
    server.wait_stopped(&single[0]).await;
    server
        .wait_for(&single[1], "RUNNING", |r| r["status"] == "RUNNING")
        .await;
    let (_, view) = server.get(&format!("/api/v6/{}/status", single[2])).await;
    assert_eq!(view["queue_position"], 1, "it moved up: {view}");
    let (_, view) = server.get(&format!("/api/v6/history/{}", single[0])).await;
    assert!(view.get("queue_position").is_none(), "{view}");
    release(&single[1]);
    server.wait_stopped(&single[1]).await;
    server
        .wait_for(&single[2], "RUNNING", |r| r["status"] == "RUNNING")
        .await;
    for run in wide.iter().chain(&single[2..]) {
        release(run);
    }
    for run in wide.iter().chain(&single[2..]) {
        let (stopped, _) = server.wait_stopped(run).await;
        assert_eq!(stopped["exit_code"], 0, "{stopped}");
    }
    // Never more than one of the capped cluster's runs ran at once.
    let mut spans = Vec::new();
    for run in &single {
        let (_, view) = server.get(&format!("/api/v6/task/x/history/{run}")).await;
        let time = |field: &str| {
            view[field]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .unwrap_or_else(|| panic!("no {field}: {view}"))
        };
        spans.push((time("started_at"), time("finished_at")));
    }
    spans.sort();
    for pair in spans.windows(2) {
        assert!(pair[1].0 >= pair[0].1, "two ran at once: {spans:?}");
    }
}

#[tokio::test]
async fn the_queued_runs_of_a_cluster_in_maintenance_wait_and_say_so_until_it_is_active_again() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 4).await;
    let (status, answer) = server
        .send(
            reqwest::Method::POST,
            "/api/v6/clusters",
            &json!({"name": "upkeep"}).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let body = json!({"alias": "kept", "group_name": "tests", "image": "ubuntu:latest",
        "command": "echo kept", "target_cluster": "upkeep"});
    let (status, def) = server
        .send(reqwest::Method::POST, "/api/v6/task", &body.to_string())
        .await;
    assert_eq!(status, 200, "{def}");
    server.define("other", "echo other").await;
    let (status, answer) = server
        .send(
            reqwest::Method::PUT,
            "/api/v6/clusters/upkeep",
            &json!({"status": "maintenance", "status_reason": "node upgrade"}).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    // The definition routes its runs to the cluster; they queue there.
    let kept = id(&server.execute("kept", json!({})).await);
    // A run of another cluster, launched after it, runs and ends first.
    let other = id(&server.execute("other", json!({})).await);
    let (ended, _) = server.wait_stopped(&other).await;
    assert_eq!(ended["exit_code"], 0, "{ended}");
    let (status, view) = server.get(&format!("/api/v6/{kept}/status")).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["status"], "QUEUED", "{view}");
    assert_eq!(
        view["waiting_reason"],
        "cluster upkeep is in maintenance: its queued runs wait until it is active again",
        "{view}"
    );
    assert_eq!(view["queue_position"], 1, "{view}");
    let (status, answer) = server
        .send(
            reqwest::Method::PUT,
            "/api/v6/clusters/upkeep",
            &json!({"status": "active"}).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let (run, _) = server.wait_stopped(&kept).await;
    assert_eq!(run["exit_code"], 0, "{run}");
    assert_eq!(run["cluster"], "upkeep", "{run}");
}
