//! Usage, cost and leaderboards against the real server: a run's usage is
//! measured from its processes, its cost estimated at the server's rates,
//! and the leaderboard orders what ran by what it cost.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::Server;

fn number(value: &Value) -> f64 {
    value.as_f64().unwrap_or(f64::NAN)
}

#[tokio::test]
async fn a_runs_usage_is_the_cpu_its_command_burned_and_the_memory_it_held_and_its_cost_is_estimated()
 {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // One dollar per vCPU-second: a 1-vCPU run costs its duration.
    let server = Server::start_with(
        &dir.path().join("data"),
        1,
        &["--price-vcpu-hour", "3600", "--price-gb-hour", "0"],
    )
    .await;
    // 100 MB written (so resident), then CPU burned until the process has
    // used 1.2 s of it.
    let command = "python3 -c \"import time; b = b'x' * (100 << 20); exec('while time.process_time() < 1.2: pass')\"";
    server.define("burner", command).await;
    let run = server
        .execute("burner", json!({"cpu": 1024, "memory": 1024}))
        .await;
    let run_id = run["run_id"].as_str().unwrap_or_default().to_owned();
    let (done, _) = server.wait_stopped(&run_id).await;
    assert_eq!(done["exit_code"], 0, "{done}");
    let usage = &done["usage"];
    assert_eq!(usage["basis"], "measured", "{done}");
    let cpu = number(&usage["cpu_seconds"]);
    assert!(
        (1.15..3.0).contains(&cpu),
        "the command burned about 1.2 CPU seconds, the usage says {cpu}: {done}"
    );
    let peak = number(&usage["peak_memory_mb"]);
    assert!(
        (100.0..260.0).contains(&peak),
        "the command held 100 MB, the usage says it peaked at {peak} MB: {done}"
    );
    let duration = number(&usage["duration_s"]);
    assert!(duration >= 1.0, "{done}");
    let cost = number(&done["cost_usd"]);
    assert!(
        (cost - duration).abs() < 0.01,
        "1 vCPU at $3600 an hour costs its {duration} s in dollars, not {cost}: {done}"
    );
    assert!(
        done["cost_basis"]
            .as_str()
            .is_some_and(|b| b.starts_with("estimate")),
        "the cost is labelled an estimate: {done}"
    );
    let (_, timeline) = server.get(&format!("/api/v6/{run_id}/events")).await;
    assert!(
        timeline.to_string().contains("CPU seconds"),
        "the timeline says what the attempt used: {timeline}"
    );
}

#[tokio::test]
async fn the_leaderboard_orders_definitions_owners_and_groups_by_what_their_runs_cost() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server =
        Server::start_with(&dir.path().join("data"), 2, &["--price-vcpu-hour", "3600"]).await;
    for (alias, group) in [("small", "etl"), ("large", "ml")] {
        let body = json!({"alias": alias, "group_name": group, "image": "ubuntu:latest", "command": "sleep 0.1"});
        let (status, def) = server
            .send(Method::POST, "/api/v6/task", &body.to_string())
            .await;
        assert_eq!(status, 200, "{def}");
    }
    let launches = [
        ("small", 256, "sleep 0.1", "ann"),
        ("small", 256, "exit 3", "ann"),
        ("large", 4096, "sleep 1", "bob"),
    ];
    let mut ids = Vec::new();
    for (alias, cpu, command, owner) in launches {
        let run = server
            .execute(
                alias,
                json!({"cpu": cpu, "command": command, "run_tags": {"owner_id": owner}}),
            )
            .await;
        ids.push(run["run_id"].as_str().unwrap_or_default().to_owned());
    }
    for id in &ids {
        server.wait_stopped(id).await;
    }
    let (status, board) = server.get("/api/v6/insights/top?by=definition").await;
    assert_eq!(status, 200, "{board}");
    let labels: Vec<&str> = board["top"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["label"].as_str())
        .collect();
    assert_eq!(labels, ["large", "small"], "most expensive first: {board}");
    assert_eq!(board["top"][0]["runs"], 1, "{board}");
    assert_eq!(board["top"][1]["runs"], 2, "{board}");
    assert_eq!(board["top"][1]["failed"], 1, "{board}");
    assert_eq!(board["top"][1]["failure_rate"], 0.5, "{board}");
    assert!(number(&board["top"][0]["cost_usd"]) >= 4.0, "{board}");
    assert!(number(&board["top"][0]["compute_hours"]) > 0.0, "{board}");
    let days = board["days"].as_array().map_or(0, Vec::len);
    assert_eq!(days, 7, "a week by default, a total per day: {board}");
    let runs_by_day: u64 = board["days"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["runs"].as_u64())
        .sum();
    assert_eq!(runs_by_day, 3, "{board}");

    let (_, owners) = server
        .get("/api/v6/insights/top?by=owner&window=30d&limit=1")
        .await;
    assert_eq!(owners["top"].as_array().map_or(0, Vec::len), 1, "{owners}");
    assert_eq!(owners["top"][0]["key"], "bob", "{owners}");
    assert_eq!(owners["days"].as_array().map_or(0, Vec::len), 30);
    let (_, groups) = server.get("/api/v6/insights/top?by=group").await;
    assert_eq!(groups["top"][0]["key"], "ml", "{groups}");

    let (status, refused) = server
        .get("/api/v6/insights/top?by=colour&window=9y&limit=0")
        .await;
    assert_eq!(status, 400, "{refused}");
    let problems = refused["problems"].to_string();
    for field in ["by must", "window must", "limit must"] {
        assert!(problems.contains(field), "{field}: {refused}");
    }
}

/// A webhook receiver on a loopback port: every JSON body posted to it.
async fn webhook() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    use axum::routing::post;
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |axum::Json(body): axum::Json<Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let url = format!(
        "http://{}/hook",
        listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

fn running_long_events(timeline: &Value) -> usize {
    timeline["pod_events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["reason"] == "RunRunningLong")
        .count()
}

#[tokio::test]
async fn a_run_slower_than_its_jobs_history_is_flagged_once_and_the_webhook_receives_it_once() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (url, received) = webhook().await;
    let mut server = Server::start_with(
        &dir.path().join("data"),
        4,
        &["--alert-webhook", &url, "--long-run-minimum-seconds", "2"],
    )
    .await;
    // The same command (so the same job) each time; how long it naps is
    // the run's own variable.
    server.define("nightly", "sleep $NAP").await;
    let nap = |seconds: &str| json!({"env": [{"name": "NAP", "value": seconds}]});
    for _ in 0..5 {
        let run = server.execute("nightly", nap("0.1")).await;
        let id = run["run_id"].as_str().unwrap_or_default().to_owned();
        let (done, _) = server.wait_stopped(&id).await;
        assert_eq!(done["exit_code"], 0, "{done}");
    }
    let slow = server.execute("nightly", nap("120")).await;
    let slow_id = slow["run_id"].as_str().unwrap_or_default().to_owned();
    let (flagged, _) = server
        .wait_within(
            &slow_id,
            "flagged as running long",
            std::time::Duration::from_secs(90),
            |r| r["running_long"].is_string(),
        )
        .await;
    let note = flagged["running_long"].as_str().unwrap_or_default();
    assert!(
        note.contains("longer than usual") && note.contains("last 5 successful runs"),
        "{flagged}"
    );
    crate::support::eventually("the webhook receives the alert", || {
        !received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    })
    .await;

    // A kill -9 and a restart: the sweeps of the new server must not flag
    // the same attempt again. A second slow run, flagged after the restart,
    // shows such a sweep has run.
    server.kill9();
    server.restart().await;
    let second = server.execute("nightly", nap("120")).await;
    let second_id = second["run_id"].as_str().unwrap_or_default().to_owned();
    server
        .wait_within(
            &second_id,
            "flagged as running long",
            std::time::Duration::from_secs(90),
            |r| r["running_long"].is_string(),
        )
        .await;
    crate::support::eventually("the webhook receives the second alert", || {
        received.lock().unwrap_or_else(|e| e.into_inner()).len() >= 2
    })
    .await;
    let bodies = received.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let for_slow: Vec<&Value> = bodies
        .iter()
        .filter(|b| b["detail"]["run_id"] == slow_id.as_str())
        .collect();
    assert_eq!(for_slow.len(), 1, "one alert per attempt: {bodies:?}");
    assert_eq!(for_slow[0]["detail-type"], "Flotilla Run Running Long");
    assert_eq!(for_slow[0]["source"], "flotilla");
    assert_eq!(for_slow[0]["detail"]["alias"], "nightly");
    assert_eq!(for_slow[0]["detail"]["usual_of_runs"], 5);
    let (_, timeline) = server.get(&format!("/api/v6/{slow_id}/events")).await;
    assert_eq!(running_long_events(&timeline), 1, "{timeline}");
    let (_, fast) = server.get("/api/v6/history?status=STOPPED&limit=1").await;
    assert!(
        fast["history"][0]["running_long"].is_null(),
        "a run that was not slow is not flagged: {fast}"
    );
}
