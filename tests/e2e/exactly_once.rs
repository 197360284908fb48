//! Exactly once on one machine, attacked: the server killed with SIGKILL at
//! random moments many times while hundreds of runs go through it; a retry
//! while the previous attempt still runs; a stop of a tree that daemonises; a
//! run reporting its own end; a run over its memory.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Server, processes_with_env};

fn id(run: &Value) -> String {
    run["run_id"].as_str().unwrap_or_default().to_owned()
}

/// A small deterministic generator (xorshift), seeded once and printed, so
/// a failing sequence of kills can be replayed with `FLOTILLA_CRASH_SEED`.
struct Random(u64);

impl Random {
    fn seeded() -> Self {
        let seed = std::env::var("FLOTILLA_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| u64::from(std::process::id()) * 2_654_435_761 + 1);
        println!("crash test seed: {seed} (set FLOTILLA_CRASH_SEED to replay)");
        Self(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Every run's status, exit code and attempts, from the history.
async fn all_runs(server: &Server) -> Vec<Value> {
    let (status, list) = server.get("/api/v6/history?limit=10000").await;
    assert_eq!(status, 200, "{list}");
    list["history"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn runs_survive_twenty_kill_9s_at_random_moments_each_started_once_with_its_real_exit_code() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let ledger = dir.path().join("ledger.txt");
    let data = dir.path().join("data");
    let mut server = Server::start(&data, 2).await;
    // Each run appends (run, attempt, exit code) and exits with that code,
    // which follows from its id: 0 to 3.
    let body = format!(
        "code=$(( 16#${{FLOTILLA_RUN_ID: -1}} % 4 )); echo \"$FLOTILLA_RUN_ID $FLOTILLA_RUN_ATTEMPT $code\" >> {}",
        ledger.display()
    );
    server
        .define("instant", &format!("{body}; exit $code"))
        .await;
    server
        .define("short", &format!("{body}; sleep 0.3; exit $code"))
        .await;
    let mut ids = Vec::new();
    for i in 0..240 {
        let alias = if i % 6 == 0 { "short" } else { "instant" };
        ids.push(id(&server.execute(alias, json!({})).await));
    }

    let mut random = Random::seeded();
    let started = Instant::now();
    let kills = 20;
    for _ in 0..kills {
        let wait = 150 + random.below(2_000);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        // Without waiting for it to serve: the next kill may land while it
        // re-attaches to what the previous one left.
        server.restart_without_waiting();
    }
    let killing = started.elapsed();
    server.wait_until_serving().await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, active) = server
            .get("/api/v6/history?status=QUEUED&status=PENDING&status=RUNNING&status=NEEDS_RETRY&limit=1")
            .await;
        if active["total"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "runs still active 2 minutes after the last kill: {active}\n{}",
            server.server_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let lines = std::fs::read_to_string(&ledger).unwrap_or_default();
    let mut started_attempts = BTreeSet::new();
    let mut codes = BTreeMap::new();
    for line in lines.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [run, attempt, code] = parts[..] else {
            panic!("a ledger line that is not `run attempt code`: {line:?}");
        };
        assert!(
            started_attempts.insert((run.to_owned(), attempt.to_owned())),
            "attempt {attempt} of {run} started twice"
        );
        codes.insert(run.to_owned(), code.parse::<i64>().unwrap_or(-1));
    }
    let runs = all_runs(&server).await;
    assert_eq!(runs.len(), ids.len(), "every run is in the history");
    for run in &runs {
        let run_id = id(run);
        assert_eq!(run["status"], "STOPPED", "{run}");
        assert_eq!(
            run["exit_code"].as_i64(),
            codes.get(&run_id).copied(),
            "the recorded exit code is the one the process exited with: {run}"
        );
        assert!(
            processes_with_env("FLOTILLA_RUN_ID", &run_id).is_empty(),
            "no process of {run_id} outlives it"
        );
    }
    assert_eq!(started_attempts.len(), ids.len(), "every run started once");
    drop(server);

    let db = rusqlite::Connection::open(data.join("flotilla.db")).unwrap_or_else(|e| panic!("{e}"));
    let integrity: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(integrity, "ok");
    println!(
        "crash test: {kills} kills in {:.1} s, {} runs, {} started, 0 twice, 0 orphans, integrity ok",
        killing.as_secs_f64(),
        ids.len(),
        started_attempts.len()
    );
}

/// A script a run uses to report its own status with its token.
fn reporter(dir: &std::path::Path, base: &str) -> std::path::PathBuf {
    let path = dir.join("report.py");
    std::fs::write(
        &path,
        format!(
            r#"import os, sys, urllib.request
run = os.environ["FLOTILLA_RUN_ID"]
body = ('{{"status": "%s"}}' % sys.argv[1]).encode()
request = urllib.request.Request("{base}/api/v6/%s/status" % run, data=body, method="PUT",
    headers={{"X-Flotilla-Run-Token": os.environ["FLOTILLA_RUN_TOKEN"]}})
print(urllib.request.urlopen(request).read().decode())
"#
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    path
}

#[tokio::test]
async fn a_retry_ends_the_previous_attempt_before_the_next_starts_and_each_attempt_keeps_its_log() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 2).await;
    let script = reporter(dir.path(), &server.base);
    // Attempt 1 asks for a retry and would go on writing; attempt 2 succeeds.
    server
        .define(
            "flaky",
            &format!(
                "echo attempt $FLOTILLA_RUN_ATTEMPT; if [ $FLOTILLA_RUN_ATTEMPT = 1 ]; then python3 {} NEEDS_RETRY; sleep 20; echo woke; fi",
                script.display()
            ),
        )
        .await;
    let run_id = id(&server.execute("flaky", json!({})).await);
    let (done, _) = server
        .wait_for(&run_id, "STOPPED on attempt 2", |r| {
            r["status"] == "STOPPED" && r["attempt_count"] == 2
        })
        .await;
    assert_eq!(done["exit_code"], 0, "{done}");

    let (_, first) = server
        .get(&format!("/api/v6/{run_id}/logs?attempt=1"))
        .await;
    let first = first["log"].as_str().unwrap_or_default().to_owned();
    assert!(first.starts_with("attempt 1\n"), "{first}");
    assert!(!first.contains("woke"), "attempt 1 was ended: {first}");
    let (_, current) = server.get(&format!("/api/v6/{run_id}/logs")).await;
    assert_eq!(current["log"], "attempt 2\n", "the current attempt's log");
    let (status, _) = server
        .get(&format!("/api/v6/{run_id}/logs?attempt=3"))
        .await;
    assert_eq!(status, 400, "an attempt that does not exist");

    // Attempt 1 had ended before attempt 2 started: its record's second
    // line is how it ended.
    let record = std::fs::read_to_string(
        server
            .data_dir
            .join("runs")
            .join(&run_id)
            .join("attempt-1.record"),
    )
    .unwrap_or_default();
    let status_1: Value =
        serde_json::from_str(record.lines().nth(1).unwrap_or_default()).unwrap_or_default();
    let ended = status_1["ended_at"].as_str().unwrap_or_default().to_owned();
    let started = done["started_at"].as_str().unwrap_or_default().to_owned();
    let parse =
        |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap_or_else(|e| panic!("{t}: {e}"));
    assert!(
        parse(&ended) <= parse(&started),
        "attempt 1 ended at {ended}, attempt 2 started at {started}"
    );
    assert!(processes_with_env("FLOTILLA_RUN_ID", &run_id).is_empty());
}

#[tokio::test]
async fn a_stop_ends_the_whole_tree_and_a_run_reporting_its_end_is_stopped_with_its_real_exit_code()
{
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 2).await;
    // Children that leave the session and the process group, and one that
    // double-forks to be adopted by init, as daemons do.
    server
        .define(
            "daemons",
            "setsid sleep 300 & (sleep 301 &) ; (setsid bash -c 'sleep 302 &' &) ; echo started; sleep 303",
        )
        .await;
    let run = server.execute("daemons", json!({})).await;
    let run_id = id(&run);
    server
        .wait_for(&run_id, "RUNNING", |r| r["status"] == "RUNNING")
        .await;
    crate::support::eventually("its four sleeps run", || {
        processes_with_env("FLOTILLA_RUN_ID", &run_id).len() >= 4
    })
    .await;
    let (status, _) = server
        .delete(
            &format!(
                "/api/v6/task/{}/history/{run_id}",
                run["definition_id"].as_str().unwrap_or_default()
            ),
            &[],
        )
        .await;
    assert_eq!(status, 200);
    let (stopped, _) = server.wait_stopped(&run_id).await;
    assert_eq!(stopped["exit_code"], 143, "{stopped}");
    assert!(
        processes_with_env("FLOTILLA_RUN_ID", &run_id).is_empty(),
        "nothing of the run is left once it is STOPPED"
    );

    // A run that reports STOPPED while its process runs: the report is
    // refused without the run's token; with it, the process is stopped and
    // its real exit code recorded.
    server
        .define(
            "reporter",
            "trap 'exit 7' TERM; while true; do sleep 0.1; done",
        )
        .await;
    let run_id = id(&server.execute("reporter", json!({})).await);
    server
        .wait_for(&run_id, "RUNNING", |r| r["status"] == "RUNNING")
        .await;
    let report = r#"{"status":"STOPPED","exit_code":0}"#;
    let (status, answer) = server.report(&run_id, report, None).await;
    assert_eq!(status, 403, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("X-Flotilla-Run-Token"),
        "{answer}"
    );
    let token = server.run_token(&run_id, 1).await;
    let (status, answer) = server.report(&run_id, report, Some(&token)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["status"], "RUNNING",
        "not ended while its process lives"
    );
    let (ended, _) = server.wait_stopped(&run_id).await;
    assert_eq!(
        ended["exit_code"], 7,
        "the exit code the process had, not the one reported: {ended}"
    );
    assert_eq!(
        ended["exit_reason"], "the run reported STOPPED with exit code 0",
        "{ended}"
    );
    assert!(processes_with_env("FLOTILLA_RUN_ID", &run_id).is_empty());
}

#[tokio::test]
async fn a_run_over_its_memory_ends_out_of_memory_and_says_which_limit_applied() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), 2).await;
    server
        .send(
            reqwest::Method::POST,
            "/api/v6/task",
            &json!({
                "alias": "hungry",
                "image": "python:3",
                "memory": 64,
                "command": "python3 -c 'x = bytearray(200 * 1024 * 1024); print(len(x))'",
            })
            .to_string(),
        )
        .await;
    let run_id = id(&server.execute("hungry", json!({})).await);
    let (run, _) = server.wait_stopped(&run_id).await;
    let (_, events) = server.get(&format!("/api/v6/{run_id}/events")).await;
    let started = events["pod_events"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["reason"] == "RunStarted"))
        .and_then(|e| e["message"].as_str())
        .unwrap_or_default()
        .to_owned();
    if started.contains("by a cgroup") {
        assert_eq!(run["exit_code"], 137, "{run}");
        assert_eq!(run["exit_reason"], "out of memory (limit 64 MB)", "{run}");
    } else {
        assert!(
            started.contains("ulimit -v"),
            "the timeline says which limit applies: {started}"
        );
        println!("no cgroup can be made here; the address-space limit applies");
        assert_ne!(
            run["exit_code"], 0,
            "a 200 MB allocation fails under 64 MB: {run}"
        );
    }
}
