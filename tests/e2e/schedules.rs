//! Schedules against the real server: a per-second schedule fires runs on
//! its own; `kill -9` during its fires, again and again, never makes two
//! runs of one fire; bad schedules are refused field by field.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::Server;

const FIRE_LABEL: &str = "flotilla.scheduled_for";

/// The runs of `alias`, by the fire time they were launched for.
async fn fires(server: &Server, alias: &str) -> BTreeMap<String, Vec<String>> {
    let (status, page) = server
        .get(&format!("/api/v6/history?alias={alias}&limit=1000"))
        .await;
    assert_eq!(status, 200, "{page}");
    let mut by_fire: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for run in page["history"].as_array().into_iter().flatten() {
        let fire = run["labels"][FIRE_LABEL]
            .as_str()
            .unwrap_or("none")
            .to_owned();
        let id = run["run_id"].as_str().unwrap_or_default().to_owned();
        by_fire.entry(fire).or_default().push(id);
    }
    by_fire
}

async fn wait_for_fires(
    server: &Server,
    alias: &str,
    at_least: usize,
) -> BTreeMap<String, Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = fires(server, alias).await;
        if seen.len() >= at_least {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "{alias} did not fire {at_least} times within a minute: {seen:?}\n{}",
            server.server_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_per_second_schedule_fires_on_its_own_and_kills_during_its_fires_never_double_one() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut server = Server::start(&dir.path().join("data"), 4).await;
    server.define("ticker", "echo tick").await;
    let body = json!({
        "name": "every second",
        "alias": "ticker",
        "cron": "* * * * * *",
        "time_zone": "Europe/Paris",
        "launch": {"run_tags": {"owner_id": "tester"}, "env": [{"name": "FROM", "value": "schedule"}]}
    });
    let (status, created) = server
        .send(Method::POST, "/api/v6/schedules", &body.to_string())
        .await;
    assert_eq!(status, 200, "{created}");
    let id = created["schedule"]["schedule_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let next: Vec<&str> = created["schedule"]["next_fires"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(next.len(), 5, "{created}");
    assert!(next.windows(2).all(|w| w[0] < w[1]), "{created}");

    wait_for_fires(&server, "ticker", 3).await;
    // Kill the server at moments spread over its fires, and start it again.
    for round in 0..4u64 {
        tokio::time::sleep(Duration::from_millis(150 + 170 * round)).await;
        server.kill9();
        server.restart().await;
        let before = fires(&server, "ticker").await.len();
        wait_for_fires(&server, "ticker", before + 2).await;
    }
    let (status, paused) = server
        .send(Method::POST, &format!("/api/v6/schedules/{id}/pause"), "")
        .await;
    assert_eq!(status, 200, "{paused}");
    assert_eq!(paused["schedule"]["enabled"], false);
    assert_eq!(paused["schedule"]["next_fires"], json!([]));

    let seen = fires(&server, "ticker").await;
    let doubled: Vec<_> = seen.iter().filter(|(_, runs)| runs.len() > 1).collect();
    assert!(doubled.is_empty(), "one run per fire, got: {doubled:?}");
    assert!(
        !seen.contains_key("none"),
        "every run names its fire: {seen:?}"
    );
    assert!(seen.len() >= 11, "{} fires", seen.len());
    let (_, read) = server.get(&format!("/api/v6/schedules/{id}")).await;
    assert_eq!(read["pending"], Value::Null, "{read}");
    let fired = read["fires"].as_u64().unwrap_or_default();
    assert!(
        fired as usize <= seen.len(),
        "the schedule counts each fire it recorded once: {fired} fires, {} runs",
        seen.len()
    );
    let (_, run) = server
        .get(&format!(
            "/api/v6/history/{}",
            read["last_run_id"].as_str().unwrap_or_default()
        ))
        .await;
    assert_eq!(run["user"], "tester", "{run}");
    assert_eq!(run["labels"]["flotilla.schedule_id"], id.as_str(), "{run}");
    assert!(
        run["env"].to_string().contains("schedule"),
        "the launch body's env reaches the run: {run}"
    );
}

#[tokio::test]
async fn a_bad_schedule_is_refused_field_by_field_and_nothing_is_saved() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 1).await;
    server.define("nightly", "echo hi").await;
    let bad = json!({
        "alias": "nightly",
        "cron": "61 25 * * *",
        "time_zone": "Mars/Olympus",
        "catch_up": "sometimes",
        "launch": {"run_tags": {"owner_id": "tester"}, "memroy": 512}
    });
    let (status, refused) = server
        .send(Method::POST, "/api/v6/schedules", &bad.to_string())
        .await;
    assert_eq!(status, 400, "{refused}");
    let problems = refused.to_string();
    assert!(problems.contains("catch_up"), "{refused}");
    let fixed = json!({
        "alias": "nightly",
        "cron": "61 25 * * *",
        "time_zone": "Mars/Olympus",
        "launch": {"run_tags": {"owner_id": "tester"}, "memroy": 512}
    });
    let (status, refused) = server
        .send(Method::POST, "/api/v6/schedules", &fixed.to_string())
        .await;
    assert_eq!(status, 400, "{refused}");
    let problems: Vec<String> = refused["problems"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_str().map(str::to_owned))
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("launch") && p.contains("memroy") && p.contains("memory")),
        "an unknown launch field is named: {refused}"
    );
    let in_place = json!({
        "alias": "nightly", "cron": "61 25 * * *", "time_zone": "Mars/Olympus",
        "launch": {"run_tags": {"owner_id": "tester"}}
    });
    let (status, refused) = server
        .send(Method::POST, "/api/v6/schedules", &in_place.to_string())
        .await;
    assert_eq!(status, 400, "{refused}");
    let fields: Vec<&str> = refused["problems"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_str()?.split(':').next())
        .collect();
    assert_eq!(fields, ["cron", "time_zone"], "{refused}");
    let (_, list) = server.get("/api/v6/schedules").await;
    assert_eq!(list["total"], 0, "nothing saved: {list}");
    let (status, missing) = server.get("/api/v6/schedules/sched-nope").await;
    assert_eq!(status, 404, "{missing}");
}

#[tokio::test]
async fn a_template_schedule_checks_its_payload_when_saved_and_fires_the_rendered_command() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 2).await;
    let template = json!({
        "template_name": "train", "image": "ubuntu:latest",
        "command_template": "echo training {{.epochs}} epochs",
        "schema": {"type": "object", "properties": {"epochs": {"type": "integer", "minimum": 1}}, "required": ["epochs"]}
    });
    let (status, created) = server
        .send(Method::POST, "/api/v7/template", &template.to_string())
        .await;
    assert_eq!(status, 200, "{created}");
    let schedule = |payload: Value| {
        json!({"template_name": "train", "cron": "* * * * * *",
               "launch": {"run_tags": {"owner_id": "tester"}, "template_payload": payload}})
    };
    let (status, refused) = server
        .send(
            Method::POST,
            "/api/v6/schedules",
            &schedule(json!({"epochs": 0})).to_string(),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["problems"][0]
            .as_str()
            .is_some_and(|p| p.starts_with("launch.template_payload")),
        "{refused}"
    );
    let (status, saved) = server
        .send(
            Method::POST,
            "/api/v6/schedules",
            &schedule(json!({"epochs": 3})).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(saved["schedule"]["target"]["template_version"], 1);
    assert_eq!(
        saved["schedule"]["rendered"]["definition"]["command"],
        "echo training 3 epochs"
    );
    let id = saved["schedule"]["schedule_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    let run_id = loop {
        let (_, read) = server.get(&format!("/api/v6/schedules/{id}")).await;
        if let Some(run) = read["last_run_id"].as_str() {
            break run.to_owned();
        }
        assert!(Instant::now() < deadline, "no fire: {read}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    server
        .send(Method::POST, &format!("/api/v6/schedules/{id}/pause"), "")
        .await;
    let (done, _) = server.wait_stopped(&run_id).await;
    assert_eq!(done["command"], "echo training 3 epochs", "{done}");
    assert_eq!(done["executable_type"], "template", "{done}");
    assert_eq!(
        done["execution_request_custom"]["template_payload"]["epochs"], 3,
        "{done}"
    );
    let (_, log) = server.get(&format!("/api/v6/{run_id}/logs")).await;
    assert!(
        log["log"]
            .as_str()
            .is_some_and(|l| l.contains("training 3 epochs")),
        "{log}"
    );
}
