//! Items read per run-list request on DynamoDB, at scale, against moto.
//!
//! For each size in `BENCH_SIZES` (default `100000`), a fresh moto server
//! (the one `scripts/test` installs) gets the table and that many runs'
//! projections and counters, written with `DynamoStore::seed_projections`
//! and `seed_counters`: the
//! items the service's appends write, in batches, without the events (lists
//! read no event). Each route is then listed through the real
//! `DynamoStore::list` and its items read are printed as a Markdown table:
//! index items evaluated (DynamoDB's `ScannedCount`, what it bills, whatever
//! a filter keeps) and counter items. moto's speed is not the measure (it
//! scans its whole table for every `Query`); the items read are.
//!
//! Run with `scripts/bench-dynamo-reads`.
//!
//! The data set: 20 definitions over 3 clusters and 7 owners, queued over
//! 180 days; 3% QUEUED, 8 RUNNING, every other run STOPPED (1% of them
//! stopped before they started); every run has `NAME=VALUE_<i % 100>`.

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use shared::adapters::dynamo::{DynamoStore, ItemsRead, SHARDS};
use shared::domain::EnvVar;
use shared::domain::event::RunEvent;
use shared::domain::query::{Paging, RunQuery, RunSortField, SortOrder, TextFilter};
use shared::domain::run::{Run, RunStatus, replay};
use shared::ports::RunStore;
use shared::testing::moto::Moto;

fn runs(n: usize) -> Vec<Run> {
    let start = Utc
        .with_ymd_and_hms(2026, 6, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    let span = 180 * 24 * 3600;
    (0..n)
        .map(|i| {
            let mut spec = shared::testing::scenario::spec(&format!("bench-{i:08}"));
            let def = i % 20;
            spec.definition_id = format!("def-{def}");
            spec.alias = format!("a{def}");
            spec.group_name = format!("g{}", def % 4);
            spec.cluster = ["default", "gpu", "batch"][def % 3].to_owned();
            spec.owner = format!("user{}", i % 7);
            spec.env = vec![EnvVar::new("NAME", format!("VALUE_{}", i % 100))];
            let queued = start + Duration::seconds((i as i64 * span) / n as i64);
            let event = RunEvent::RunQueued {
                spec: Box::new(spec),
                at: queued,
            };
            let mut run = replay([&event]).run.unwrap_or_else(|| panic!("a run"));
            let newest = n - i;
            if newest <= n * 3 / 100 {
                return run;
            }
            run.started_at = Some(queued + Duration::seconds(5));
            if newest <= n * 3 / 100 + 8 {
                run.status = RunStatus::Running;
                return run;
            }
            run.status = RunStatus::Stopped;
            if i % 100 == 0 {
                run.started_at = None;
            }
            run.finished_at = Some(queued + Duration::seconds(60 + (i % 3600) as i64));
            run
        })
        .collect()
}

fn delta(before: ItemsRead, after: ItemsRead) -> (u64, u64) {
    (after.index - before.index, after.counters - before.counters)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "100000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let deep_pages: usize = std::env::var("BENCH_DEEP_PAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    for n in sizes {
        let moto = Moto::start();
        let config = moto.sdk_config().await;
        let store = DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&config),
            "flotilla",
            Arc::new(shared::ports::SystemClock),
        );
        store
            .create_table()
            .await
            .unwrap_or_else(|e| panic!("table: {e:?}"));
        let seeded = std::time::Instant::now();
        let all = runs(n);
        for chunk in all.chunks(5_000) {
            store
                .seed_projections(chunk)
                .await
                .unwrap_or_else(|e| panic!("seed: {e:?}"));
            eprint!(".");
        }
        // The counters of the whole set, once.
        store
            .seed_counters(&shared::adapters::dynamo::counts_of(all.iter()))
            .await
            .unwrap_or_else(|e| panic!("counters: {e:?}"));
        eprintln!(
            " {n} runs seeded in {:.0} s",
            seeded.elapsed().as_secs_f64()
        );
        let page = |limit, offset| Paging { limit, offset };
        let routes: Vec<(&str, RunQuery)> = vec![
            (
                "`?limit=50` (first page)",
                RunQuery {
                    paging: page(50, 0),
                    ..RunQuery::default()
                },
            ),
            (
                "`?limit=1`",
                RunQuery {
                    paging: page(1, 0),
                    ..RunQuery::default()
                },
            ),
            (
                "`?status=STOPPED&alias=a7&sort_by=started_at&order=desc&limit=50`",
                RunQuery {
                    statuses: vec![RunStatus::Stopped],
                    alias: TextFilter(vec!["a7".into()]),
                    sort_by: RunSortField::StartedAt,
                    order: SortOrder::Desc,
                    paging: page(50, 0),
                    ..RunQuery::default()
                },
            ),
            (
                "`?definition_id=def-3&status=STOPPED&sort_by=finished_at&limit=50`",
                RunQuery {
                    definition_ids: vec!["def-3".into()],
                    statuses: vec![RunStatus::Stopped],
                    sort_by: RunSortField::FinishedAt,
                    paging: page(50, 0),
                    ..RunQuery::default()
                },
            ),
            (
                "`?limit=50&offset=5000`",
                RunQuery {
                    paging: page(50, 5000),
                    ..RunQuery::default()
                },
            ),
            (
                "`?env=NAME%7CVALUE_42&limit=50`",
                RunQuery {
                    env: vec![EnvVar::new("NAME", "VALUE_42")],
                    paging: page(50, 0),
                    ..RunQuery::default()
                },
            ),
        ];
        println!(
            "\n{n} runs, {SHARDS} shards: items read per request (index items evaluated + counter items)\n"
        );
        println!("| route | runs returned | index items | counter items | total | lower bound |");
        println!("| --- | --- | --- | --- | --- | --- |");
        for (name, q) in &routes {
            let before = store.items_read();
            let got = store
                .list(q)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e:?}"));
            let (index, counters) = delta(before, store.items_read());
            println!(
                "| {name} | {} | {index} | {counters} | {} | {} |",
                got.items.len(),
                got.total,
                got.total_is_lower_bound
            );
        }
        // Deep paging by cursor: the most index items any one page read.
        let mut after = None;
        let mut most = 0;
        let mut pages = 0;
        for _ in 0..deep_pages {
            let q = RunQuery {
                paging: page(50, 0),
                after: after.clone(),
                ..RunQuery::default()
            };
            let before = store.items_read();
            let got = store.list(&q).await.unwrap_or_else(|e| panic!("{e:?}"));
            most = most.max(delta(before, store.items_read()).0);
            pages += 1;
            after = got.items.last().map(|r| q.key_of(r));
            if !got.more {
                break;
            }
        }
        println!("| next_token pages of 50 (most of {pages} pages) | 50 | {most} | {SHARDS} | | |");
        let before = store.items_read();
        store
            .get(&all[n / 2].spec.run_id)
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        println!(
            "| one run (`GetItem`) | 1 | {} | 0 | | |",
            delta(before, store.items_read()).0
        );
        println!(
            "\nbound for the default list: 2 × limit + shards = {}",
            2 * 50 + SHARDS
        );
    }
}
