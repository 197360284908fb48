//! End-to-end throughput of `flotilla serve`: 1,000 trivial runs (`true`)
//! submitted through the HTTP API at parallelism 2, timed until every one is
//! STOPPED. Run with `scripts/bench` (release build).
//!
//! Environment: `BENCH_RUNS` (default 1000), `BENCH_PARALLELISM` (default 2),
//! `BENCH_CLIENTS` (concurrent HTTP clients submitting, default 4),
//! `BENCH_RUNTIME` (`process`, the default, or `podman`/`docker`: each run a
//! container of `BENCH_IMAGE`, default the test image with bash that
//! `scripts/podman-env` builds).

#[path = "../e2e/support/mod.rs"]
#[allow(dead_code)]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let runs = env_usize("BENCH_RUNS", 1000);
    let parallelism = env_usize("BENCH_PARALLELISM", 2);
    let clients = env_usize("BENCH_CLIENTS", 4);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let runtime = std::env::var("BENCH_RUNTIME").unwrap_or_else(|_| "process".into());
    let server = Arc::new(
        support::Server::start_with(
            &dir.path().join("data"),
            parallelism,
            &["--runtime", &runtime],
        )
        .await,
    );
    let image = std::env::var("BENCH_IMAGE")
        .or_else(|_| std::env::var("FLOTILLA_TEST_IMAGE_BASH"))
        .unwrap_or_else(|_| "ubuntu:latest".into());
    let (status, def) = server
        .send(
            reqwest::Method::POST,
            "/api/v6/task",
            &json!({"alias": "noop", "group_name": "bench", "image": image, "command": "true"})
                .to_string(),
        )
        .await;
    assert_eq!(status, 200, "{def}");

    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..clients {
        let server = Arc::clone(&server);
        let next = Arc::clone(&next);
        workers.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < runs {
                server.execute("noop", json!({})).await;
            }
        }));
    }
    for w in workers {
        w.await.unwrap_or_else(|e| panic!("{e}"));
    }
    let submitted = started.elapsed();

    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (_, active) = server
            .get("/api/v6/history?status=QUEUED&status=PENDING&status=RUNNING&status=NEEDS_RETRY&limit=1")
            .await;
        if active["total"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "runs did not finish within 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let total = started.elapsed();
    let (_, stopped) = server.get("/api/v6/history?status=STOPPED&limit=1").await;
    assert_eq!(stopped["total"], runs, "every run ended STOPPED");
    let (_, failed) = server
        .get("/api/v6/history?status=STOPPED&limit=10000")
        .await;
    let non_zero = failed["history"]
        .as_array()
        .map(|a| a.iter().filter(|r| r["exit_code"] != 0).count())
        .unwrap_or(runs);
    assert_eq!(non_zero, 0, "every `true` exited 0");

    // CPU the server spent, and its children (supervisors, and the commands
    // they reaped), in clock ticks from /proc/<pid>/stat.
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let cpu = server
        .pid()
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .and_then(|stat| {
            let fields: Vec<f64> = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .skip(11)
                .take(4)
                .filter_map(|f| f.parse().ok())
                .collect();
            Some((fields[0] + fields[1], fields[2] + fields[3]))
        })
        .unwrap_or_default();
    println!(
        "throughput ({runtime}): {runs} runs, parallelism {parallelism}, {clients} HTTP clients: \
         submitted in {:.2} s, all STOPPED after {:.2} s = {:.0} runs/s end to end; \
         CPU per run: server {:.2} ms, supervisors and commands {:.2} ms",
        submitted.as_secs_f64(),
        total.as_secs_f64(),
        runs as f64 / total.as_secs_f64(),
        cpu.0 / ticks * 1000.0 / runs as f64,
        cpu.1 / ticks * 1000.0 / runs as f64,
    );
}
