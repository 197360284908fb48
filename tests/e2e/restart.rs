//! kill -9 and restart: nothing is lost, in-flight runs are reconciled, and no
//! run is ever launched twice.

use serde_json::json;

use crate::support::{Server, eventually, process_exists};

#[tokio::test]
async fn after_kill_9_and_restart_nothing_is_lost_in_flight_runs_are_stopped_and_none_launches_twice()
 {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let launches = dir.path().join("launches.txt");
    let mut server = Server::start(&dir.path().join("data"), 1).await;
    let record = format!("echo $FLOTILLA_RUN_ID >> {}", launches.display());
    server
        .define("long", &format!("{record}; echo working; sleep 60"))
        .await;
    server
        .define("short", &format!("{record}; echo done"))
        .await;

    let long = server.execute("long", json!({})).await;
    let long_id = long["run_id"].as_str().unwrap_or_default().to_owned();
    let (running, _) = server
        .wait_for(&long_id, "RUNNING", |r| r["status"] == "RUNNING")
        .await;
    let pid = running["task_id"].as_str().unwrap_or_default().to_owned();
    // Parallelism 1: these wait in the queue behind the long run.
    let mut queued = Vec::new();
    for _ in 0..3 {
        let run = server.execute("short", json!({})).await;
        queued.push(run["run_id"].as_str().unwrap_or_default().to_owned());
    }
    let log_path = format!("/api/v6/{long_id}/logs");
    eventually("the long run has written its log", || {
        std::fs::read_to_string(&launches).is_ok_and(|l| l.contains(&long_id))
    })
    .await;

    server.kill9();
    assert!(
        process_exists(&pid),
        "kill -9 of the server leaves the run's process behind"
    );
    server.restart().await;

    let (long_after, _) = server.wait_stopped(&long_id).await;
    let reason = long_after["exit_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("restarted while this run was in flight"),
        "{long_after}"
    );
    eventually("the leftover process is killed", || !process_exists(&pid)).await;
    let (_, log) = server.get(&log_path).await;
    assert_eq!(
        log["log"], "working\n",
        "the log written before the crash survives"
    );

    for run_id in &queued {
        let (done, _) = server.wait_stopped(run_id).await;
        assert_eq!(
            done["exit_code"], 0,
            "a run queued at the crash runs after the restart: {done}"
        );
    }
    let (status, def) = server.get("/api/v6/task/alias/short").await;
    assert_eq!(status, 200, "definitions survive: {def}");

    server.restart().await;
    let extra = server.execute("short", json!({})).await;
    server
        .wait_stopped(extra["run_id"].as_str().unwrap_or_default())
        .await;

    let lines = std::fs::read_to_string(&launches).unwrap_or_default();
    let mut ids: Vec<&str> = lines.lines().collect();
    let launched = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(launched, ids.len(), "no run was launched twice: {lines}");
    assert_eq!(launched, 5, "every run launched exactly once: {lines}");

    let (_, history) = server.get("/api/v6/history?status=STOPPED").await;
    assert_eq!(
        history["total"], 5,
        "all runs and their history survive two restarts"
    );
}
