//! kill -9 and restart: nothing is lost, runs in flight keep running and are
//! followed to their real end, runs that ended while the server was down
//! report their real exit code, and no run is ever launched twice.

use serde_json::json;

use crate::support::{Server, eventually, process_exists, processes_with_env};

fn id(run: &serde_json::Value) -> String {
    run["run_id"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn after_kill_9_and_restart_runs_in_flight_are_followed_to_their_real_end_and_none_launches_twice()
 {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let launches = dir.path().join("launches.txt");
    let release = dir.path().join("release");
    let mut server = Server::start(&dir.path().join("data"), 2).await;
    let record = format!("echo $FLOTILLA_RUN_ID >> {}", launches.display());
    // Ticks until the test lets it finish, then exits 3.
    server
        .define(
            "long",
            &format!(
                "{record}; i=0; until [ -e {} ]; do i=$((i+1)); echo tick $i; sleep 0.2; done; echo last; exit 3",
                release.display()
            ),
        )
        .await;
    server
        .define("brief", &format!("{record}; sleep 1; exit 7"))
        .await;
    server
        .define("short", &format!("{record}; echo done"))
        .await;

    let long_id = id(&server.execute("long", json!({})).await);
    let brief_id = id(&server.execute("brief", json!({})).await);
    let (running, _) = server
        .wait_for(&long_id, "RUNNING", |r| r["status"] == "RUNNING")
        .await;
    server
        .wait_for(&brief_id, "RUNNING", |r| r["status"] == "RUNNING")
        .await;
    let supervisor = running["task_id"].as_str().unwrap_or_default().to_owned();
    // Parallelism 2: these wait in the queue behind the two running.
    let mut queued = Vec::new();
    for _ in 0..3 {
        queued.push(id(&server.execute("short", json!({})).await));
    }

    server.kill9();
    assert!(
        process_exists(&supervisor),
        "kill -9 of the server leaves the run's supervisor running"
    );
    eventually("the brief run ends while the server is down", || {
        processes_with_env("FLOTILLA_RUN_ID", &brief_id).is_empty()
    })
    .await;
    assert!(
        !processes_with_env("FLOTILLA_RUN_ID", &long_id).is_empty(),
        "the long run is still running"
    );
    server.restart().await;

    let (brief, _) = server.wait_stopped(&brief_id).await;
    assert_eq!(
        brief["exit_code"], 7,
        "a run that ended while the server was down reports its real exit code: {brief}"
    );
    let (_, long) = server.get(&format!("/api/v6/history/{long_id}")).await;
    assert_eq!(long["status"], "RUNNING", "{long}");
    std::fs::write(&release, "").unwrap_or_else(|e| panic!("{e}"));
    let (long, _) = server.wait_stopped(&long_id).await;
    assert_eq!(
        long["exit_code"], 3,
        "a run running at the restart is followed to its real end: {long}"
    );
    let (_, log) = server
        .get(&format!("/api/v6/{long_id}/logs?raw_text=true"))
        .await;
    let text = log.as_str().unwrap_or_default().to_owned();
    let ticks: Vec<u32> = text
        .lines()
        .filter_map(|l| l.strip_prefix("tick ")?.parse().ok())
        .collect();
    assert!(
        !ticks.is_empty() && ticks.iter().enumerate().all(|(i, t)| *t == i as u32 + 1),
        "the log is continuous across the restart: {text}"
    );
    assert!(text.ends_with("last\n"), "{text}");

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
    let extra = id(&server.execute("short", json!({})).await);
    server.wait_stopped(&extra).await;

    let lines = std::fs::read_to_string(&launches).unwrap_or_default();
    let mut ids: Vec<&str> = lines.lines().collect();
    let launched = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(launched, ids.len(), "no run was launched twice: {lines}");
    assert_eq!(launched, 6, "every run launched exactly once: {lines}");

    let (_, history) = server.get("/api/v6/history?status=STOPPED").await;
    assert_eq!(
        history["total"], 6,
        "all runs and their history survive two restarts"
    );
}
