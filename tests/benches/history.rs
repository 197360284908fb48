//! Latency of the run-history list routes of `flotilla serve` at scale.
//!
//! For each size in `BENCH_SIZES`, a fresh data directory is seeded with that
//! many runs written through the SQLite store's own API (`RunStore::append`,
//! `DefinitionStore::create`, `ClusterStore::save_clusters`), with the events
//! the domain decides for each step of a run's life, so the rows are the ones
//! the service writes. The real release binary then serves that directory on
//! a loopback port, and `BENCH_CLIENTS` keep-alive HTTP clients send each
//! route `BENCH_REQUESTS` times (after 10 warm-up requests); the p50 and p99
//! latency of every route are printed as a Markdown table, one column per
//! size, with the seeding time of each size. Any answer but a 200 panics with
//! its body. The bench only measures: nothing depends on how long things take.
//!
//! Run with `scripts/bench-history` (release build).
//!
//! Environment: `BENCH_SIZES` (runs per data directory, comma-separated,
//! default `10000,100000,1000000`), `BENCH_REQUESTS` (measured requests per
//! route, default 200), `BENCH_CLIENTS` (concurrent HTTP clients, default 8),
//! `BENCH_DEEP_PAGES` (most `next_token` pages followed, default: to the last
//! page).
//!
//! The data set: 20 definitions (aliases `a0`..`a19`, 4 groups, routed to 3
//! clusters `default`, `gpu` and `batch`), 7 owners, each run with the
//! request variable `NAME=VALUE_<i % 100>`, queued over the last 180 days
//! (started seconds after, running seconds to hours). The newest 3% are
//! QUEUED, the 8 before them RUNNING, every other run STOPPED: 86% of those
//! exited 0, 10% exited non-zero, 3% were stopped by their owner and 1% were
//! abandoned. Only a few runs are RUNNING because the server, as it starts,
//! launches again every run left RUNNING (their command is a long `sleep`, so
//! they stay RUNNING while the bench measures and stop when the server
//! does); with `--parallelism 2` below that count, it launches no QUEUED run.
//! The store writes one append per run, holding all of the run's events:
//! the `runs` rows are those of the service, which writes the same events in
//! two or three appends (only `recorded_at` of the earlier events differs).

#[path = "../e2e/support/mod.rs"]
#[allow(dead_code)]
mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use shared::adapters::sqlite::SqliteStore;
use shared::domain::EnvVar;
use shared::domain::cluster::{Cluster, ClusterInput};
use shared::domain::definition::{Definition, DefinitionInput};
use shared::domain::event::RunEvent;
use shared::domain::launch::{
    DEFAULT_OWNER_VAR, LaunchContext, LaunchRequest, OwnerRule, RunTags, build_spec, run_id_for,
};
use shared::domain::limits::LaunchLimits;
use shared::domain::run::{RunCommand, RunState, decide, evolve};
use shared::domain::spec::{Engine, Resources};
use shared::ports::{Clock, ClusterStore, DefinitionStore, RunStore};

/// Definitions, `a0`..`a19`.
const DEFINITIONS: usize = 20;
/// Clusters the definitions are routed to (`default` is the server's own).
const CLUSTERS: [&str; 3] = ["default", "gpu", "batch"];
/// Groups of the definitions.
const GROUPS: [&str; 4] = ["ml", "etl", "reports", "infra"];
/// Who launches runs.
const OWNERS: [&str; 7] = ["alice", "bob", "carol", "dave", "erin", "frank", "grace"];
/// Runs left RUNNING in every data set.
const RUNNING_RUNS: usize = 8;
/// Share of runs, the newest, still QUEUED, in percent.
const QUEUED_PERCENT: usize = 3;
/// Appends in flight while seeding, so the store's connection never waits.
const SEEDERS: usize = 64;
/// How far back the oldest run was queued.
const HISTORY_DAYS: i64 = 180;
/// Warm-up requests per route, not measured.
const WARM_UP: usize = 10;
/// Page size of every list request.
const PAGE: usize = 50;

tokio::task_local! {
    /// The time the store records a seeded append at.
    static RECORDED_AT: DateTime<Utc>;
}

/// The store's clock while seeding: the time of the append being made (the
/// time the service would have recorded it), else the wall clock.
struct SeedClock;

impl Clock for SeedClock {
    fn now(&self) -> DateTime<Utc> {
        RECORDED_AT
            .try_with(|at| *at)
            .unwrap_or_else(|_| Utc::now())
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn sizes() -> Vec<usize> {
    let list = std::env::var("BENCH_SIZES").unwrap_or_else(|_| "10000,100000,1000000".into());
    list.split(',')
        .map(|s| {
            s.trim()
                .replace('_', "")
                .parse()
                .unwrap_or_else(|e| panic!("BENCH_SIZES: {s:?} is not a number: {e}"))
        })
        .collect()
}

/// A well-mixed 64-bit hash of `x` (splitmix64), for repeatable variety.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A v4-shaped UUID, the same for the same `salt` and `i`.
fn uuid_of(salt: u64, i: u64) -> String {
    let hi = mix(salt ^ mix(i));
    let lo = mix(hi ^ i);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:x}{:03x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xffff,
        hi & 0xfff,
        8 + (lo >> 62),
        (lo >> 48) & 0xfff,
        lo & 0xffff_ffff_ffff
    )
}

/// The id of run `i` of a data set of `size` runs.
fn run_id(size: usize, i: usize) -> String {
    run_id_for(Engine::Local, &uuid_of(size as u64, i as u64))
}

/// The definitions, as the definition routes would make them.
fn definitions() -> Vec<Definition> {
    (0..DEFINITIONS)
        .map(|k| {
            let group = GROUPS[k % GROUPS.len()];
            let input = DefinitionInput {
                alias: Some(format!("a{k}")),
                group_name: Some(group.to_owned()),
                image: Some(format!("registry.example.com/{group}/job-{k}:1.{}", k % 5)),
                command: Some(format!("python -m jobs.a{k} --date \"$RUN_DATE\"")),
                resources: Resources {
                    memory: Some(512 << (k % 4)),
                    cpu: Some(1024),
                    ..Resources::default()
                },
                env: Some(vec![
                    EnvVar::new("LOG_LEVEL", "info"),
                    EnvVar::new("JOB", format!("a{k}")),
                ]),
                tags: Some(vec![group.to_owned()]),
                target_cluster: Some(CLUSTERS[k % CLUSTERS.len()].to_owned()),
                ..DefinitionInput::default()
            };
            let id = format!("{group}-{}", uuid_of(u64::MAX, k as u64));
            let mut definition =
                Definition::create(id, input).unwrap_or_else(|e| panic!("definition a{k}: {e}"));
            definition.created_by = Some(OWNERS[k % OWNERS.len()].to_owned());
            definition
        })
        .collect()
}

/// How a seeded run ended up.
#[derive(Clone, Copy)]
enum Fate {
    Queued,
    Running,
    Exited(i64),
    StoppedByOwner,
    Abandoned,
}

/// What is fixed for a data set: its size, its definitions, its time line.
struct DataSet {
    size: usize,
    definitions: Vec<Definition>,
    host: String,
    /// When run 0 was queued.
    origin: DateTime<Utc>,
    /// Seconds between the queueing of run `i` and run `i + 1`, on average.
    spacing: f64,
}

impl DataSet {
    fn new(size: usize) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".into());
        // The newest run was queued a few minutes ago.
        let span = chrono::Duration::days(HISTORY_DAYS) - chrono::Duration::minutes(5);
        Self {
            size,
            definitions: definitions(),
            host,
            origin: Utc::now() - chrono::Duration::days(HISTORY_DAYS),
            spacing: span.num_seconds() as f64 / size.max(1) as f64,
        }
    }

    fn fate(&self, i: usize) -> Fate {
        let queued_from = self.size - self.size * QUEUED_PERCENT / 100;
        if i >= queued_from {
            return Fate::Queued;
        }
        if i + RUNNING_RUNS >= queued_from {
            return Fate::Running;
        }
        match mix(i as u64 ^ 0xF47E) % 100 {
            0..86 => Fate::Exited(0),
            86..92 => Fate::Exited(1),
            92..94 => Fate::Exited(2),
            94..96 => Fate::Exited(137),
            96..99 => Fate::StoppedByOwner,
            _ => Fate::Abandoned,
        }
    }

    /// The events of run `i` (as the service decides them, step by step) and
    /// the state they fold into.
    fn run(&self, i: usize) -> (String, Vec<RunEvent>, RunState) {
        let h = mix(i as u64);
        let definition = &self.definitions[(h % DEFINITIONS as u64) as usize];
        let owner = OWNERS[((h >> 8) % OWNERS.len() as u64) as usize];
        let fate = self.fate(i);
        let run_id = run_id(self.size, i);
        let jitter = ((h >> 16) % 1000) as f64 / 1000.0 * self.spacing;
        let queued_at = self.origin
            + chrono::Duration::milliseconds(((i as f64 * self.spacing + jitter) * 1000.0) as i64);
        let started_at =
            queued_at + chrono::Duration::milliseconds(500 + ((h >> 24) % 30_000) as i64);
        // From seconds to about two hours, most of them short.
        let ran_for = chrono::Duration::seconds(((h >> 40) % 90 + 5).pow(2) as i64);
        let finished_at = started_at + ran_for;

        let request = LaunchRequest {
            env: Some(vec![EnvVar::new("NAME", format!("VALUE_{}", i % 100))]),
            run_tags: Some(RunTags {
                owner_id: Some(owner.to_owned()),
                ..RunTags::default()
            }),
            // Runs left RUNNING are launched again when the server starts:
            // they wait there until the server stops them.
            command: matches!(fate, Fate::Running).then(|| "sleep 1800".to_owned()),
            ..LaunchRequest::default()
        };
        let ctx = LaunchContext {
            run_id: run_id.clone(),
            engine: Engine::Local,
            server_mode: "local".into(),
            owner_var: DEFAULT_OWNER_VAR.into(),
            default_cluster: CLUSTERS[0].into(),
            clusters: vec![],
            requires_command: true,
            limits: LaunchLimits::Local,
            max_attempts: 3,
            max_memory: None,
        };
        let spec = build_spec(definition, request, OwnerRule::OwnerId, &ctx)
            .unwrap_or_else(|e| panic!("run {i}: {e}"));
        let memory = spec.resources.memory.unwrap_or_default();

        let mut commands = vec![RunCommand::Queue {
            spec: Box::new(spec),
            now: queued_at,
        }];
        if !matches!(fate, Fate::Queued) {
            commands.push(RunCommand::RecordLaunched {
                attempt: 1,
                task_id: (10_000 + (h >> 32) % 4_000_000).to_string(),
                running_on: Some(self.host.clone()),
                limits: Some(format!(
                    "memory limited to {memory} MB, cpu to 1.00 cores by a cgroup"
                )),
                now: started_at,
            });
        }
        match fate {
            Fate::Queued | Fate::Running => {}
            Fate::Exited(code) => commands.push(RunCommand::RecordExited {
                usage: None,
                attempt: 1,
                engine_version: None,
                exit_code: Some(code),
                reason: (code == 137).then(|| "killed by signal 9 (SIGKILL)".to_owned()),
                now: finished_at,
            }),
            Fate::StoppedByOwner => {
                let asked = finished_at - chrono::Duration::seconds(2);
                commands.push(RunCommand::RequestStop {
                    by: owner.to_owned(),
                    reason: None,
                    now: asked,
                });
                commands.push(RunCommand::RecordExited {
                    usage: None,
                    attempt: 1,
                    engine_version: None,
                    exit_code: Some(143),
                    reason: None,
                    now: finished_at,
                });
            }
            Fate::Abandoned => commands.push(RunCommand::Abandon {
                reason: "flotilla serve restarted and could not follow this run: \
                         the attempt's directory is gone"
                    .to_owned(),
                now: finished_at,
            }),
        }

        let mut state = RunState::default();
        let mut events = Vec::new();
        for command in commands {
            let decided = decide(&state, command).unwrap_or_else(|e| panic!("run {i}: {e}"));
            for event in decided {
                state = evolve(state, &event);
                events.push(event);
            }
        }
        (run_id, events, state)
    }
}

/// Seeds `data_dir` with `data.size` runs through the store; returns the
/// time it took.
async fn seed(data_dir: &Path, data: Arc<DataSet>) -> Duration {
    std::fs::create_dir_all(data_dir).unwrap_or_else(|e| panic!("{e}"));
    let db = data_dir.join("flotilla.db");
    let store = SqliteStore::open(&db, Arc::new(SeedClock)).unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();

    for definition in &data.definitions {
        DefinitionStore::create(&store, definition)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let registered: Vec<Cluster> = CLUSTERS[1..]
        .iter()
        .map(|name| {
            let input = ClusterInput {
                name: Some((*name).to_owned()),
                ..ClusterInput::default()
            };
            Cluster::create(input, data.origin).unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    store
        .save_clusters(&registered, 0)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut seeders = tokio::task::JoinSet::new();
    for _ in 0..SEEDERS {
        let (store, data, next, done) = (
            store.clone(),
            Arc::clone(&data),
            Arc::clone(&next),
            Arc::clone(&done),
        );
        seeders.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= data.size {
                    return;
                }
                let (run_id, events, state) = data.run(i);
                let (Some(run), Some(last)) = (state.run, events.last()) else {
                    panic!("run {i} has no events");
                };
                RECORDED_AT
                    .scope(last.at(), store.append(&run_id, 0, &events, &run))
                    .await
                    .unwrap_or_else(|e| panic!("append of run {i}: {e}"));
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let size = data.size;
    let progress = {
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let mut last = (Instant::now(), 0usize);
            loop {
                tokio::time::sleep(Duration::from_secs(3)).await;
                let now = (Instant::now(), done.load(Ordering::Relaxed));
                let rate = (now.1 - last.1) as f64 / (now.0 - last.0).as_secs_f64();
                eprintln!(
                    "  seeding {size}: {}/{size} runs, {rate:.0} runs/s now, {:.0} s so far",
                    now.1,
                    (now.0 - started).as_secs_f64()
                );
                last = now;
            }
        })
    };
    while let Some(joined) = seeders.join_next().await {
        joined.unwrap_or_else(|e| panic!("a seeder failed: {e}"));
    }
    progress.abort();
    drop(store);
    // The store's connection closes on its own thread once the last clone is
    // gone; the server can open the database when it has.
    let check = rusqlite::Connection::open(&db).unwrap_or_else(|e| panic!("{e}"));
    check
        .busy_timeout(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    let stored: i64 = check
        .query_row("SELECT COUNT(*) FROM runs", [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("counting the seeded runs: {e}"));
    assert_eq!(stored as usize, size, "every seeded run is stored");
    drop(check);
    started.elapsed()
}

/// Which path a request asks for, by its number.
type PathOf = Arc<dyn Fn(usize) -> String + Send + Sync>;

/// One GET, timed from sending to the last byte of the body; panics unless 200.
async fn timed_get(client: &reqwest::Client, base: &str, path: &str) -> (Duration, Value) {
    let started = Instant::now();
    let answer = client
        .get(format!("{base}{path}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = answer.status();
    let body = answer
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let took = started.elapsed();
    assert!(
        status.as_u16() == 200,
        "GET {path} answered {status}: {}",
        String::from_utf8_lossy(&body)
    );
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("GET {path}: the body is not JSON ({e})"));
    (took, value)
}

/// Sends `count` requests from every client at once (each takes the next
/// request number), returning every request's latency.
async fn send_all(
    clients: &[reqwest::Client],
    base: &str,
    path_of: &PathOf,
    count: usize,
) -> Vec<Duration> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut senders = tokio::task::JoinSet::new();
    for client in clients {
        let (client, base, path_of, next) = (
            client.clone(),
            base.to_owned(),
            Arc::clone(path_of),
            Arc::clone(&next),
        );
        senders.spawn(async move {
            let mut took = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    return took;
                }
                took.push(timed_get(&client, &base, &path_of(n)).await.0);
            }
        });
    }
    let mut all = Vec::with_capacity(count);
    while let Some(joined) = senders.join_next().await {
        all.extend(joined.unwrap_or_else(|e| panic!("a client failed: {e}")));
    }
    all
}

/// The `p`th percentile (nearest rank) of `samples`, in milliseconds.
fn percentile_ms(samples: &mut [Duration], p: usize) -> f64 {
    samples.sort_unstable();
    if samples.is_empty() {
        return f64::NAN;
    }
    let rank = (p * samples.len()).div_ceil(100).max(1);
    samples[rank - 1].as_secs_f64() * 1000.0
}

fn cell(samples: &mut [Duration]) -> String {
    format!(
        "{:.1} / {:.1}",
        percentile_ms(samples, 50),
        percentile_ms(samples, 99)
    )
}

/// The routes measured against a data set of `size` runs: label and path.
fn routes(size: usize) -> Vec<(String, PathOf)> {
    let fixed = |path: String| -> (String, PathOf) {
        let label = path.clone();
        (label, Arc::new(move |_| path.clone()))
    };
    let deep = size * 9 / 10;
    vec![
        fixed(format!("/api/v6/history?limit={PAGE}")),
        fixed("/api/v6/history?limit=1".to_owned()),
        fixed(format!(
            "/api/v6/history?status=STOPPED&alias=a3&sort_by=started_at&order=desc&limit={PAGE}"
        )),
        (
            format!("/api/v6/history?limit={PAGE}&offset=<90% of N>"),
            Arc::new(move |_| format!("/api/v6/history?limit={PAGE}&offset={deep}")),
        ),
        fixed(format!("/api/v6/history?env=NAME%7CVALUE_7&limit={PAGE}")),
        (
            "/api/v6/history/<run id>".to_owned(),
            // A different run each time, spread over the whole data set.
            Arc::new(move |n| {
                format!(
                    "/api/v6/history/{}",
                    run_id(size, (n * 7919 + 13) % size.max(1))
                )
            }),
        ),
    ]
}

const DEEP_LABEL: &str = "/api/v6/history?limit=50 then every next_token page";

/// Follows `next_token` from the first page, one page after the other,
/// timing each page; `None` when the first page offers no `next_token`.
async fn follow_next_tokens(
    client: &reqwest::Client,
    base: &str,
    most_pages: usize,
) -> Option<(Vec<Duration>, usize)> {
    let first = format!("/api/v6/history?limit={PAGE}");
    let (_, body) = timed_get(client, base, &first).await;
    let mut token = body.get("next_token")?.as_str()?.to_owned();
    let mut took = Vec::new();
    let mut rows = body["history"].as_array().map_or(0, Vec::len);
    while took.len() < most_pages {
        // Everything but the unreserved characters, as SigV4 encodes.
        let encoded = shared::testing::sigv4::uri_encode(&token);
        let path = format!("/api/v6/history?limit={PAGE}&next_token={encoded}");
        let (page_took, page) = timed_get(client, base, &path).await;
        took.push(page_took);
        rows += page["history"].as_array().map_or(0, Vec::len);
        match page.get("next_token").and_then(Value::as_str) {
            Some(next) if !next.is_empty() => token = next.to_owned(),
            _ => break,
        }
    }
    Some((took, rows))
}

/// What was measured for one size.
struct Measured {
    size: usize,
    seeding: Duration,
    database_bytes: u64,
    cells: Vec<String>,
    deep: String,
}

async fn measure_size(size: usize, requests: usize, clients: usize, most_pages: usize) -> Measured {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let data_dir = dir.path().join("data");
    eprintln!("{size} runs: seeding {}", data_dir.display());
    let seeding = seed(&data_dir, Arc::new(DataSet::new(size))).await;
    let database_bytes = std::fs::metadata(data_dir.join("flotilla.db")).map_or(0, |m| m.len());
    eprintln!(
        "{size} runs: seeded in {:.1} s ({:.0} runs/s), database {:.0} MB",
        seeding.as_secs_f64(),
        size as f64 / seeding.as_secs_f64(),
        database_bytes as f64 / 1e6
    );

    let server = support::Server::start(&data_dir, 2).await;
    let clients: Vec<reqwest::Client> = (0..clients.max(1))
        .map(|_| {
            flotilla_tests::http()
                .pool_max_idle_per_host(1)
                .tcp_nodelay(true)
                .build()
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    let (_, all) = timed_get(&clients[0], &server.base, "/api/v6/history?limit=1").await;
    assert_eq!(all["total"], size, "the server lists every seeded run");

    let mut cells = Vec::new();
    for (label, path_of) in routes(size) {
        send_all(&clients, &server.base, &path_of, WARM_UP).await;
        let started = Instant::now();
        let mut took = send_all(&clients, &server.base, &path_of, requests).await;
        let measured = cell(&mut took);
        eprintln!(
            "{size} runs: {label}: p50 / p99 {measured} ms ({requests} requests in {:.1} s)",
            started.elapsed().as_secs_f64()
        );
        cells.push(measured);
    }
    let deep = match follow_next_tokens(&clients[0], &server.base, most_pages).await {
        None => "next_token: not offered".to_owned(),
        Some((mut took, rows)) => {
            eprintln!(
                "{size} runs: followed {} next_token pages ({rows} runs)",
                took.len()
            );
            format!("{} ({} pages)", cell(&mut took), took.len())
        }
    };
    eprintln!("{size} runs: {DEEP_LABEL}: {deep}");
    drop(server);
    Measured {
        size,
        seeding,
        database_bytes,
        cells,
        deep,
    }
}

#[tokio::main]
async fn main() {
    let sizes = sizes();
    let requests = env_usize("BENCH_REQUESTS", 200);
    let clients = env_usize("BENCH_CLIENTS", 8);
    let most_pages = env_usize("BENCH_DEEP_PAGES", usize::MAX);
    let mut measured = Vec::new();
    for &size in &sizes {
        measured.push(measure_size(size, requests, clients, most_pages).await);
    }

    println!();
    println!(
        "history: {requests} requests per route after {WARM_UP} warm-up, {clients} keep-alive \
         clients on loopback; latency in ms, p50 / p99"
    );
    println!();
    let header: Vec<String> = measured
        .iter()
        .map(|m| format!("{} p50 / p99", m.size))
        .collect();
    println!("| route | {} |", header.join(" | "));
    println!("|---|{}", "---|".repeat(measured.len()));
    let labels: Vec<String> = routes(1).into_iter().map(|(label, _)| label).collect();
    for (row, label) in labels.iter().enumerate() {
        let cells: Vec<&str> = measured.iter().map(|m| m.cells[row].as_str()).collect();
        println!("| `GET {label}` | {} |", cells.join(" | "));
    }
    let deep: Vec<&str> = measured.iter().map(|m| m.deep.as_str()).collect();
    println!("| `GET {DEEP_LABEL}` | {} |", deep.join(" | "));
    println!();
    for m in &measured {
        println!(
            "seeded {} runs through the store API in {:.1} s ({:.0} runs/s); database {:.0} MB",
            m.size,
            m.seeding.as_secs_f64(),
            m.size as f64 / m.seeding.as_secs_f64(),
            m.database_bytes as f64 / 1e6
        );
    }
}
