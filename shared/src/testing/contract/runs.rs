//! The run store's contract: appends land in order under a version check,
//! the projection written with them is their fold, and lists filter, sort,
//! page and count.

use crate::domain::event::RunEvent;
use crate::domain::query::{Paging, RunQuery, RunSortField, SortOrder, TextFilter, TimeRange};
use crate::domain::run::{RunCommand, RunState, RunStatus, decide, evolve};
use crate::error::StoreError;
use crate::ports::RunStore;
use crate::testing::scenario::{spec, t};

fn queued_event(run_id: &str, alias: &str, cluster: &str, seconds: i64) -> RunEvent {
    let mut s = spec(run_id);
    s.alias = alias.to_owned();
    s.cluster = cluster.to_owned();
    s.definition_id = format!("def-{alias}");
    RunEvent::RunQueued {
        spec: Box::new(s),
        at: t(seconds),
    }
}

/// The projection a store keeps is the replay of the events it keeps: after
/// `commands` are decided and appended one by one (as the use cases do) to
/// run `run_id`'s stream, the stored projection equals the fold of the stored
/// events, and both equal the fold of what was decided.
pub async fn projection_is_the_replay_of_the_events<S: RunStore>(
    store: &S,
    run_id: &str,
    commands: Vec<RunCommand>,
) {
    let mut decided = Vec::new();
    for command in commands {
        let command = match command {
            RunCommand::Queue { mut spec, now } => {
                spec.run_id = run_id.to_owned();
                RunCommand::Queue { spec, now }
            }
            other => other,
        };
        let state = store
            .get(run_id)
            .await
            .unwrap_or_else(|e| panic!("get failed: {e}"));
        let Ok(events) = decide(&state, command) else {
            continue;
        };
        let expected = state.version;
        let Some(run) = events.iter().fold(state, evolve).run else {
            continue;
        };
        if events.is_empty() {
            continue;
        }
        store
            .append(run_id, expected, &events, &run)
            .await
            .unwrap_or_else(|e| panic!("append failed: {e}"));
        decided.extend(events);
    }
    let stored = store
        .load(run_id)
        .await
        .unwrap_or_else(|e| panic!("load failed: {e}"));
    let replayed = crate::domain::run::replay(stored.iter().map(|r| &r.event));
    let projection = store
        .get(run_id)
        .await
        .unwrap_or_else(|e| panic!("get failed: {e}"));
    assert_eq!(
        stored.iter().map(|r| r.event.clone()).collect::<Vec<_>>(),
        decided,
        "the store keeps every event appended, in order"
    );
    assert_eq!(
        projection, replayed,
        "the stored projection is the replay of the stored events"
    );
}

/// Appends `events` to a stream at its current version, as the use cases do.
async fn append<S: RunStore>(store: &S, run_id: &str, events: &[RunEvent]) -> u64 {
    let state = store
        .get(run_id)
        .await
        .unwrap_or_else(|e| panic!("get failed: {e}"));
    let expected = state.version;
    let next = events.iter().fold(state, evolve);
    let run = next
        .run
        .unwrap_or_else(|| panic!("events must create a run"));
    store
        .append(run_id, expected, events, &run)
        .await
        .unwrap_or_else(|e| panic!("append failed: {e}"))
}

/// Event streams with optimistic concurrency, and the projection written with them.
pub async fn event_store_contract<S: RunStore>(store: &S) {
    // An unknown stream is empty at version 0.
    let empty = store.get("nope").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        empty,
        RunState::default(),
        "an unknown run reads as version 0 with no run"
    );
    assert!(
        store
            .load("nope")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_empty()
    );

    // Appends land in order and the projection follows.
    let first = queued_event("r-1", "a", "default", 0);
    assert_eq!(append(store, "r-1", std::slice::from_ref(&first)).await, 1);
    let submitted = RunEvent::RunSubmitted {
        attempt: 1,
        task_id: "task-1".into(),
        at: t(1),
    };
    let started = RunEvent::RunStarted {
        limits: None,
        engine_version: None,
        attempt: 1,
        task_id: None,
        host: Some("h".into()),
        at: t(2),
    };
    assert_eq!(
        append(store, "r-1", &[submitted.clone(), started.clone()]).await,
        3
    );
    let loaded = store.load("r-1").await.unwrap_or_else(|e| panic!("{e}"));
    let seqs: Vec<_> = loaded.iter().map(|e| e.sequence).collect();
    assert_eq!(seqs, [1, 2, 3], "events are numbered from 1 in order");
    let kinds: Vec<_> = loaded.iter().map(|e| e.event.clone()).collect();
    assert_eq!(
        kinds,
        [first, submitted, started],
        "events read back as written"
    );
    let state = store.get("r-1").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        state.version, 3,
        "the projection carries the stream version"
    );
    let run = state.run.unwrap_or_else(|| panic!("projection missing"));
    assert_eq!(run.status, RunStatus::Running);
    assert_eq!(run.task_id.as_deref(), Some("task-1"));

    // A stale writer gets a conflict and writes nothing.
    let stop = decide(
        &store.get("r-1").await.unwrap_or_else(|e| panic!("{e}")),
        RunCommand::Abandon {
            reason: "x".into(),
            now: t(3),
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let result = store.append("r-1", 1, &stop, &run).await;
    assert!(
        matches!(
            result,
            Err(StoreError::Conflict {
                expected: 1,
                actual: 3
            })
        ),
        "an append at a stale version is a conflict naming both versions, got {result:?}"
    );
    assert_eq!(
        store
            .load("r-1")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .len(),
        3
    );
    let result = store.append("r-new", 1, &stop, &run).await;
    assert!(
        matches!(
            result,
            Err(StoreError::Conflict {
                expected: 1,
                actual: 0
            })
        ),
        "appending past the end of an empty stream is a conflict, got {result:?}"
    );
}

/// Two writers racing on one version: exactly one wins.
pub async fn concurrent_append_contract<S: RunStore + Clone + 'static>(store: &S) {
    append(store, "race", &[queued_event("race", "a", "default", 0)]).await;
    let state = store.get("race").await.unwrap_or_else(|e| panic!("{e}"));
    let run = state.run.clone().unwrap_or_else(|| panic!("run"));
    let mut tasks = Vec::new();
    for i in 0..4 {
        let store = store.clone();
        let run = run.clone();
        tasks.push(tokio::spawn(async move {
            let event = RunEvent::RunSubmitted {
                attempt: 1,
                task_id: format!("t{i}"),
                at: t(1),
            };
            store.append("race", 1, &[event], &run).await
        }));
    }
    let mut wins = 0;
    for task in tasks {
        match task.await.unwrap_or_else(|e| panic!("{e}")) {
            Ok(_) => wins += 1,
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => panic!("a racing append failed with {e} instead of a conflict"),
        }
    }
    assert_eq!(wins, 1, "exactly one of the racing appends wins");
}

/// Run lists: filters, sort, paging, totals.
pub async fn run_read_model_contract<S: RunStore>(store: &S) {
    let runs = [
        ("r-a", "alpha", "c1", 1),
        ("r-b", "alphabet", "c2", 2),
        ("r-c", "beta", "c1", 3),
        ("r-d", "gamma", "c2", 4),
    ];
    for (id, alias, cluster, at) in runs {
        append(store, id, &[queued_event(id, alias, cluster, at)]).await;
    }
    append(
        store,
        "r-d",
        &[RunEvent::RunStopped {
            engine_version: None,
            attempt: 1,
            exit_code: Some(0),
            reason: None,
            at: t(9),
        }],
    )
    .await;
    let ids = |page: crate::domain::query::Page<crate::domain::run::Run>| {
        page.items
            .into_iter()
            .map(|r| r.spec.run_id)
            .collect::<Vec<_>>()
    };
    let list = |q: RunQuery| async move { store.list(&q).await.unwrap_or_else(|e| panic!("{e}")) };

    let all = list(RunQuery::default()).await;
    assert_eq!(all.total, 4);
    assert_eq!(
        ids(all),
        ["r-d", "r-c", "r-b", "r-a"],
        "newest first by default"
    );

    let q = RunQuery {
        statuses: vec![RunStatus::Queued],
        sort_by: RunSortField::Alias,
        order: SortOrder::Asc,
        ..RunQuery::default()
    };
    assert_eq!(
        ids(list(q).await),
        ["r-a", "r-b", "r-c"],
        "status filter and alias sort"
    );

    let q = RunQuery {
        alias: TextFilter(vec!["alpha".into()]),
        ..RunQuery::default()
    };
    assert_eq!(
        ids(list(q).await),
        ["r-b", "r-a"],
        "one alias value matches as a substring"
    );

    let q = RunQuery {
        alias: TextFilter(vec!["alpha".into(), "beta".into()]),
        ..RunQuery::default()
    };
    assert_eq!(
        ids(list(q).await),
        ["r-c", "r-a"],
        "several alias values match exactly"
    );

    let q = RunQuery {
        alias: TextFilter(vec!["%".into()]),
        ..RunQuery::default()
    };
    assert!(
        ids(list(q).await).is_empty(),
        "a % in a filter is a literal character"
    );

    let q = RunQuery {
        clusters: vec!["c2".into()],
        statuses: vec![RunStatus::Queued, RunStatus::Stopped],
        ..RunQuery::default()
    };
    assert_eq!(
        ids(list(q).await),
        ["r-d", "r-b"],
        "cluster filter with several statuses"
    );

    let q = RunQuery {
        definition_ids: vec!["def-beta".into()],
        ..RunQuery::default()
    };
    assert_eq!(ids(list(q).await), ["r-c"], "definition filter");

    let q = RunQuery {
        sort_by: RunSortField::QueuedAt,
        order: SortOrder::Asc,
        paging: Paging {
            limit: 2,
            offset: 1,
        },
        ..RunQuery::default()
    };
    let page = list(q).await;
    assert_eq!(page.total, 4, "total counts every match, not the page");
    assert_eq!(
        ids(page),
        ["r-b", "r-c"],
        "limit and offset page the sorted rows"
    );

    let q = RunQuery {
        sort_by: RunSortField::FinishedAt,
        order: SortOrder::Asc,
        ..RunQuery::default()
    };
    assert_eq!(
        ids(list(q).await)[0],
        "r-d",
        "runs without the sort value come last"
    );

    // A run with its own owner, image, command and env, started and failed.
    let mut s = spec("r-e");
    s.alias = "epsilon".into();
    s.owner = "ana".into();
    s.image = "python:3.12".into();
    s.command = Some("python train.py --epochs 3".into());
    s.env.push(crate::domain::EnvVar::new("MODEL", "v2"));
    s.env.push(crate::domain::EnvVar::new("STAGE", "dev"));
    let events = [
        RunEvent::RunQueued {
            spec: Box::new(s),
            at: t(20),
        },
        RunEvent::RunStarted {
            limits: None,
            attempt: 1,
            task_id: Some("task-e".into()),
            host: None,
            engine_version: None,
            at: t(30),
        },
        RunEvent::RunStopped {
            attempt: 1,
            exit_code: Some(137),
            reason: Some("OutOfMemoryError: container killed".into()),
            engine_version: None,
            at: t(40),
        },
    ];
    append(store, "r-e", &events).await;
    let env = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(n, v)| crate::domain::EnvVar::new(*n, *v))
            .collect::<Vec<_>>()
    };
    let only_e = [
        (
            "owner",
            RunQuery {
                owners: vec!["ana".into()],
                ..RunQuery::default()
            },
        ),
        (
            "image substring",
            RunQuery {
                image: TextFilter(vec!["python".into()]),
                ..RunQuery::default()
            },
        ),
        (
            "command substring",
            RunQuery {
                command: TextFilter(vec!["train.py".into()]),
                ..RunQuery::default()
            },
        ),
        (
            "exit reason substring",
            RunQuery {
                exit_reason: TextFilter(vec!["OutOfMemory".into()]),
                ..RunQuery::default()
            },
        ),
        (
            "two env filters, both held",
            RunQuery {
                env: env(&[("MODEL", "v2"), ("STAGE", "dev")]),
                ..RunQuery::default()
            },
        ),
        (
            "started since",
            RunQuery {
                started_at: TimeRange {
                    since: Some(t(30)),
                    until: None,
                },
                ..RunQuery::default()
            },
        ),
        (
            "finished in a window",
            RunQuery {
                finished_at: TimeRange {
                    since: Some(t(39)),
                    until: Some(t(41)),
                },
                ..RunQuery::default()
            },
        ),
        (
            "queued since",
            RunQuery {
                queued_at: TimeRange {
                    since: Some(t(20)),
                    until: None,
                },
                ..RunQuery::default()
            },
        ),
    ];
    for (what, q) in only_e {
        assert_eq!(ids(list(q).await), ["r-e"], "{what} filter");
    }
    let none = [
        (
            "env filters are ANDed",
            RunQuery {
                env: env(&[("MODEL", "v2"), ("STAGE", "prod")]),
                ..RunQuery::default()
            },
        ),
        (
            "until is exclusive",
            RunQuery {
                started_at: TimeRange {
                    since: None,
                    until: Some(t(30)),
                },
                owners: vec!["ana".into()],
                ..RunQuery::default()
            },
        ),
    ];
    for (what, q) in none {
        assert!(ids(list(q).await).is_empty(), "{what}");
    }
    let q = RunQuery {
        queued_at: TimeRange {
            since: None,
            until: Some(t(3)),
        },
        ..RunQuery::default()
    };
    assert_eq!(
        ids(list(q).await),
        ["r-b", "r-a"],
        "queued until, exclusive"
    );

    // Totals, kept or counted, are the number of runs the filters match,
    // after runs changed status.
    let everything = list(RunQuery::default()).await.items;
    let totals = [
        RunQuery::default(),
        RunQuery {
            statuses: vec![RunStatus::Stopped],
            ..RunQuery::default()
        },
        RunQuery {
            statuses: vec![RunStatus::Queued, RunStatus::Stopped],
            alias: TextFilter(vec!["alpha".into()]),
            ..RunQuery::default()
        },
        RunQuery {
            clusters: vec!["c2".into()],
            statuses: vec![RunStatus::Queued],
            ..RunQuery::default()
        },
        RunQuery {
            owners: vec!["ana".into()],
            ..RunQuery::default()
        },
        RunQuery {
            env: env(&[("MODEL", "v2")]),
            ..RunQuery::default()
        },
        RunQuery {
            env: env(&[("MODEL", "v2")]),
            statuses: vec![RunStatus::Stopped],
            sort_by: RunSortField::FinishedAt,
            ..RunQuery::default()
        },
    ];
    for q in totals {
        let expected = everything.iter().filter(|r| q.matches(r)).count() as u64;
        let page = list(q.clone()).await;
        assert_eq!(page.total, expected, "{q:?}");
        assert!(!page.total_is_lower_bound);
        assert_eq!(page.items.len() as u64, expected, "{q:?}");
    }

    // Cursor paging: for every sort key in both directions, pages of two
    // taken after the last run of the page before walk the whole sorted
    // list once, each run in its place, and the last page says no more follow.
    for sort_by in crate::domain::query::RunSortField::ALL.iter().copied() {
        for order in [SortOrder::Asc, SortOrder::Desc] {
            let base = RunQuery {
                sort_by,
                order,
                ..RunQuery::default()
            };
            let whole = list(base.clone()).await;
            assert!(!whole.more, "one page holds every run");
            let mut walked = Vec::new();
            let mut after = None;
            let mut pages = 0;
            loop {
                let q = RunQuery {
                    paging: Paging {
                        limit: 2,
                        offset: 0,
                    },
                    after: after.clone(),
                    ..base.clone()
                };
                let page = list(q.clone()).await;
                pages += 1;
                assert_eq!(page.total, whole.total, "the total ignores the cursor");
                assert!(pages <= 10, "{sort_by:?} {order:?} pages forever");
                after = page.items.last().map(|r| q.key_of(r));
                let more = page.more;
                walked.extend(page.items.into_iter().map(|r| r.spec.run_id));
                if !more {
                    break;
                }
            }
            assert_eq!(
                walked,
                ids(whole),
                "{sort_by:?} {order:?}: the cursor walk is the sorted list"
            );
        }
    }
}

/// Decides `command` for `run_id` and appends it with the slot change it
/// makes, as the use cases do; the store's answer.
async fn apply_with_slot<S: RunStore>(
    store: &S,
    run_id: &str,
    command: RunCommand,
) -> Result<u64, StoreError> {
    let state = store
        .get(run_id)
        .await
        .unwrap_or_else(|e| panic!("get failed: {e}"));
    let before = state.run.clone();
    let expected = state.version;
    let events = decide(&state, command).unwrap_or_else(|e| panic!("{e}"));
    let next = events.iter().fold(state, evolve);
    let run = next.run.unwrap_or_else(|| panic!("a run"));
    let slot = crate::ports::SlotChange::between(before.as_ref(), &run);
    store
        .append_with_slot(run_id, expected, &events, &run, &slot)
        .await
}

/// A cluster's cap holds under racing admissions: of 20 runs admitted at
/// once under a cap of 3, exactly 3 get a slot and the rest are refused
/// with the count; an end gives its slot back, another cluster's slots are
/// its own, and a repair sets the count only if it did not move.
pub async fn cluster_slots_contract<S: RunStore + Clone + 'static>(store: &S) {
    for i in 0..20 {
        let id = format!("slot-{i}");
        append(store, &id, &[queued_event(&id, "a", "capped", i)]).await;
    }
    append(
        store,
        "other-1",
        &[queued_event("other-1", "a", "roomy", 0)],
    )
    .await;
    let admit = |attempt| RunCommand::Admit {
        attempt,
        cap: 3,
        now: t(30),
    };
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        let id = format!("slot-{i}");
        tasks.push(tokio::spawn(async move {
            (id.clone(), apply_with_slot(&store, &id, admit(1)).await)
        }));
    }
    let mut admitted = Vec::new();
    for task in tasks {
        match task.await.unwrap_or_else(|e| panic!("{e}")) {
            (id, Ok(_)) => admitted.push(id),
            (_, Err(StoreError::AtCap { cluster, held, cap })) => {
                assert_eq!((cluster.as_str(), held, cap), ("capped", 3, 3));
            }
            (id, Err(e)) => panic!("admitting {id} failed with {e} instead of a refusal"),
        }
    }
    assert_eq!(
        admitted.len(),
        3,
        "exactly the cap's slots are taken: {admitted:?}"
    );
    assert_eq!(store.slots_held("capped").await.ok(), Some(3));
    for id in &admitted {
        let run = store.get(id).await.ok().and_then(|s| s.run);
        assert_eq!(run.and_then(|r| r.slot), Some(3), "{id} holds its slot");
    }
    // Another cluster's slots are its own.
    apply_with_slot(store, "other-1", admit(1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.slots_held("roomy").await.ok(), Some(1));
    // An end gives the slot back; a run refused holds none to give.
    let ended = RunCommand::RequestStop {
        by: "tester".into(),
        reason: None,
        now: t(40),
    };
    apply_with_slot(store, &admitted[0], ended.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.slots_held("capped").await.ok(), Some(2));
    let refused = (0..20)
        .map(|i| format!("slot-{i}"))
        .find(|id| !admitted.contains(id))
        .unwrap_or_else(|| panic!("a refused run"));
    apply_with_slot(store, &refused, ended)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.slots_held("capped").await.ok(), Some(2));
    // A repair sets the count only if it is still what was seen.
    assert_eq!(store.repair_slots("capped", 5, 9).await.ok(), Some(false));
    assert_eq!(store.slots_held("capped").await.ok(), Some(2));
    assert_eq!(store.repair_slots("capped", 2, 0).await.ok(), Some(true));
    assert_eq!(store.slots_held("capped").await.ok(), Some(0));
    assert_eq!(
        store.repair_slots("never-used", 0, 1).await.ok(),
        Some(true)
    );
    assert_eq!(store.slots_held("never-used").await.ok(), Some(1));
}

/// A QUEUED run's place in its cluster's queue: the QUEUED runs of its
/// cluster whose ticket went on the queue before its own, counted.
pub async fn queue_position_contract<S: RunStore>(store: &S) {
    for (id, cluster, at) in [
        ("wait-1", "line", 1),
        ("wait-2", "line", 2),
        ("wait-x", "elsewhere", 2),
        ("wait-3", "line", 3),
    ] {
        append(store, id, &[queued_event(id, "a", cluster, at)]).await;
    }
    let ahead = |id: &'static str| async move {
        let run = store
            .get(id)
            .await
            .ok()
            .and_then(|s| s.run)
            .unwrap_or_else(|| panic!("{id}"));
        store
            .queued_ahead(&run)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    };
    assert_eq!(ahead("wait-1").await, Some(0));
    assert_eq!(
        ahead("wait-3").await,
        Some(2),
        "another cluster's runs are not ahead"
    );
    append(
        store,
        "wait-1",
        &[RunEvent::RunSubmitted {
            attempt: 1,
            task_id: "t1".into(),
            at: t(4),
        }],
    )
    .await;
    assert_eq!(
        ahead("wait-3").await,
        Some(1),
        "a run launched leaves the queue"
    );
    assert_eq!(ahead("wait-2").await, Some(0));
}

/// A cluster's recent starts: the newest first, since the time asked, at
/// most as many as asked, and only that cluster's; a run that has not
/// started has none.
pub async fn recent_starts_contract<S: RunStore>(store: &S) {
    for (n, cluster) in [
        (1, "busy"),
        (2, "busy"),
        (3, "quiet"),
        (4, "busy"),
        (5, "busy"),
    ] {
        let id = format!("start-{n}");
        append(store, &id, &[queued_event(&id, "a", cluster, 0)]).await;
        let started = RunEvent::RunStarted {
            limits: None,
            engine_version: None,
            attempt: 1,
            task_id: Some(format!("task-{n}")),
            host: None,
            at: t(n * 10),
        };
        append(store, &id, &[started]).await;
    }
    append(store, "never", &[queued_event("never", "a", "busy", 0)]).await;
    let starts = |since: i64, limit: u32| async move {
        store
            .recent_starts("busy", t(since), limit)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    };
    assert_eq!(starts(0, 10).await, [t(50), t(40), t(20), t(10)]);
    assert_eq!(
        starts(0, 2).await,
        [t(50), t(40)],
        "the newest, as many as asked"
    );
    assert_eq!(
        starts(20, 10).await,
        [t(50), t(40), t(20)],
        "since the time asked"
    );
    assert!(
        store
            .recent_starts("idle", t(0), 10)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_empty()
    );
}

/// Decides `command` for `run_id` and appends it, deciding again after a
/// lost race, with each attempt's usage priced at `cost` dollars (as the
/// use cases price it); whether this call appended anything.
async fn apply_priced<S: RunStore>(
    store: &S,
    run_id: &str,
    command: RunCommand,
    cost: f64,
) -> bool {
    for _ in 0..50 {
        let state = store
            .get(run_id)
            .await
            .unwrap_or_else(|e| panic!("get failed: {e}"));
        let expected = state.version;
        let mut events = decide(&state, command.clone()).unwrap_or_else(|e| panic!("{e}"));
        if events.is_empty() {
            return false;
        }
        for event in &mut events {
            if let RunEvent::RunUsageRecorded { usage, .. } = event {
                usage.cost_usd = Some(cost);
            }
        }
        let run = events
            .iter()
            .fold(state, evolve)
            .run
            .unwrap_or_else(|| panic!("a run"));
        match store.append(run_id, expected, &events, &run).await {
            Ok(_) => return true,
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => panic!("append failed: {e}"),
        }
    }
    panic!("{run_id}: still losing races after 50 tries")
}

/// Leaderboard tallies: each run that ends is counted once in each
/// dimension (definition, owner, group) on the day it ended, with its cost
/// and CPU hours, however often and however concurrently its end is
/// delivered; a run stopped before it ran counts with no cost, and other
/// days and dimensions are apart.
pub async fn tallies_contract<S: RunStore + Clone + 'static>(store: &S) {
    use crate::domain::insights::Dimension;
    let runs = [
        ("tally-1", "a", "ann", "ml", Some(0), 1.0),
        ("tally-2", "a", "bob", "ml", Some(1), 0.5),
        ("tally-3", "b", "ann", "etl", Some(0), 2.0),
        ("tally-4", "b", "bob", "etl", None, 0.0),
    ];
    for (id, alias, owner, group, _, _) in runs {
        let mut s = spec(id);
        s.alias = alias.to_owned();
        s.definition_id = format!("def-{alias}");
        s.owner = owner.to_owned();
        s.group_name = group.to_owned();
        s.resources.cpu = Some(2048);
        append(
            store,
            id,
            &[RunEvent::RunQueued {
                spec: Box::new(s),
                at: t(0),
            }],
        )
        .await;
    }
    for (id, _, _, _, code, cost) in runs {
        let Some(code) = code else {
            let stop = RunCommand::RequestStop {
                by: "bob".into(),
                reason: None,
                now: t(10),
            };
            assert!(apply_priced(store, id, stop, cost).await);
            continue;
        };
        let launched = RunCommand::RecordLaunched {
            attempt: 1,
            task_id: format!("task-{id}"),
            running_on: Some("host".into()),
            limits: None,
            now: t(0),
        };
        assert!(apply_priced(store, id, launched, cost).await);
        // The same end, delivered 20 times at once.
        let exited = RunCommand::RecordExited {
            attempt: 1,
            engine_version: None,
            exit_code: Some(code),
            reason: None,
            usage: None,
            now: t(1800),
        };
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (store, exited) = (store.clone(), exited.clone());
            tasks.push(tokio::spawn(async move {
                apply_priced(&store, id, exited, cost).await
            }));
        }
        let mut appended = 0;
        for task in tasks {
            appended += usize::from(task.await.unwrap_or_else(|e| panic!("{e}")));
        }
        assert_eq!(appended, 1, "{id}: exactly one delivery of its end appends");
    }
    let day = t(1800).date_naive();
    let tallies = |by| {
        let store = store.clone();
        async move {
            let mut rows = store
                .tallies(by, day, day)
                .await
                .unwrap_or_else(|e| panic!("tallies failed: {e}"));
            rows.sort_by(|a, b| a.key.cmp(&b.key));
            rows.into_iter()
                .map(|r| {
                    (
                        r.key,
                        r.label,
                        (r.cost_usd * 1000.0).round() / 1000.0,
                        (r.cpu_hours * 1000.0).round() / 1000.0,
                        r.runs,
                        r.failed,
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    // 2 vCPUs for half an hour: one CPU hour per run that ran.
    assert_eq!(
        tallies(Dimension::Definition).await,
        [
            ("def-a".into(), "a".into(), 1.5, 2.0, 2, 1),
            ("def-b".into(), "b".into(), 2.0, 1.0, 2, 1),
        ],
        "by definition, labelled with the alias"
    );
    assert_eq!(
        tallies(Dimension::Owner).await,
        [
            ("ann".into(), "ann".into(), 3.0, 2.0, 2, 0),
            ("bob".into(), "bob".into(), 0.5, 1.0, 2, 2),
        ],
        "by owner"
    );
    assert_eq!(
        tallies(Dimension::Group).await,
        [
            ("etl".into(), "etl".into(), 2.0, 1.0, 2, 1),
            ("ml".into(), "ml".into(), 1.5, 2.0, 2, 1),
        ],
        "by group"
    );
    let next_day = day.succ_opt().unwrap_or(day);
    assert!(
        store
            .tallies(Dimension::Definition, next_day, next_day)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_empty(),
        "another day has its own tallies"
    );
}
