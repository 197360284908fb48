//! Contract suites: what every adapter of a port must do, written once and run
//! against each adapter (SQLite now; DynamoDB and SQS on moto later). Each suite
//! takes a fresh, empty store and panics with a sentence on the first breach.

use std::future::Future;

use crate::domain::definition::{Definition, DefinitionInput};
use crate::domain::event::RunEvent;
use crate::domain::query::{
    DefinitionQuery, DefinitionSortField, Paging, RunQuery, RunSortField, SortOrder, TextFilter,
    TimeRange,
};
use crate::domain::run::{RunCommand, RunState, RunStatus, decide, evolve};
use crate::error::StoreError;
use crate::ports::{DefinitionStore, EventStore, RunQueue, RunReadModel, RunTicket};
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

/// Appends `events` to a stream at its current version, as the use cases do.
async fn append<S: EventStore + RunReadModel>(store: &S, run_id: &str, events: &[RunEvent]) -> u64 {
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
pub async fn event_store_contract<S: EventStore + RunReadModel>(store: &S) {
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
pub async fn concurrent_append_contract<S: EventStore + RunReadModel + Clone + 'static>(store: &S) {
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
pub async fn run_read_model_contract<S: EventStore + RunReadModel>(store: &S) {
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
}

fn definition(alias: &str, group: &str, image: &str, memory: u64) -> Definition {
    Definition::create(
        format!("{group}-{alias}"),
        DefinitionInput {
            alias: Some(alias.into()),
            group_name: Some(group.into()),
            image: Some(image.into()),
            memory: Some(memory),
            tags: Some(vec!["t1".into()]),
            ports: Some(vec![8080]),
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Definitions: uniqueness of aliases, read-back, update, delete, lists.
pub async fn definition_store_contract<S: DefinitionStore>(store: &S) {
    let a = definition("hello", "g1", "ubuntu:22.04", 512);
    store.create(&a).await.unwrap_or_else(|e| panic!("{e}"));
    let got = store
        .get(&a.definition_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        got.as_ref(),
        Some(&a),
        "a definition reads back exactly, tags and ports included"
    );
    let by_alias = store
        .get_by_alias("hello")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(by_alias.as_ref(), Some(&a));
    assert_eq!(
        store.get("missing").await.unwrap_or_else(|e| panic!("{e}")),
        None
    );

    let mut dup = definition("hello", "g2", "busybox", 256);
    dup.definition_id = "other".into();
    let result = store.create(&dup).await;
    assert!(
        matches!(result, Err(StoreError::Duplicate(_))),
        "a taken alias is a duplicate, got {result:?}"
    );
    assert_eq!(
        store.get("other").await.unwrap_or_else(|e| panic!("{e}")),
        None,
        "a refused create writes nothing"
    );

    let b = definition("world", "g2", "busybox:latest", 1024);
    store.create(&b).await.unwrap_or_else(|e| panic!("{e}"));
    let mut b_renamed = b.clone();
    b_renamed.alias = "hello".into();
    let result = store.update(&b_renamed).await;
    assert!(
        matches!(result, Err(StoreError::Duplicate(_))),
        "an update to a taken alias is a duplicate, got {result:?}"
    );
    let mut b_moved = b.clone();
    b_moved.group_name = "g3".into();
    store
        .update(&b_moved)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let got = store
        .get(&b.definition_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        got.map(|d| d.group_name),
        Some("g3".into()),
        "a group change is stored"
    );
    let mut ghost = b.clone();
    ghost.definition_id = "ghost".into();
    ghost.alias = "ghost".into();
    assert!(matches!(
        store.update(&ghost).await,
        Err(StoreError::NotFound(_))
    ));

    let q = DefinitionQuery {
        image: TextFilter(vec!["busy".into()]),
        ..DefinitionQuery::default()
    };
    let page = store.list(&q).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(page.total, 1);
    assert_eq!(
        page.items[0].alias, "world",
        "image filter matches a substring"
    );
    let mut c = definition("trainer", "g4", "python", 2048);
    c.env = vec![
        crate::domain::EnvVar::new("MODEL", "v2"),
        crate::domain::EnvVar::new("STAGE", "dev"),
    ];
    store.create(&c).await.unwrap_or_else(|e| panic!("{e}"));
    let q = DefinitionQuery {
        env: vec![crate::domain::EnvVar::new("STAGE", "dev")],
        ..DefinitionQuery::default()
    };
    let page = store.list(&q).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        page.items,
        [c.clone()],
        "env filter matches a held variable"
    );
    let q = DefinitionQuery {
        env: vec![
            crate::domain::EnvVar::new("STAGE", "dev"),
            crate::domain::EnvVar::new("MODEL", "v1"),
        ],
        ..DefinitionQuery::default()
    };
    let page = store.list(&q).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(page.items.is_empty(), "env filters are ANDed");
    assert!(
        store
            .delete(&c.definition_id)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );

    let q = DefinitionQuery {
        sort_by: DefinitionSortField::Memory,
        order: SortOrder::Desc,
        ..DefinitionQuery::default()
    };
    let page = store.list(&q).await.unwrap_or_else(|e| panic!("{e}"));
    let aliases: Vec<_> = page.items.iter().map(|d| d.alias.as_str()).collect();
    assert_eq!(aliases, ["world", "hello"], "sorted by memory, descending");

    assert!(
        store
            .delete(&a.definition_id)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );
    assert!(
        !store
            .delete(&a.definition_id)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        "deleting twice reports nothing deleted"
    );
    assert_eq!(
        store
            .get_by_alias("hello")
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        None
    );
    let again = definition("hello", "g1", "ubuntu", 1);
    store
        .create(&again)
        .await
        .unwrap_or_else(|e| panic!("a deleted alias can be reused: {e}"));
}

/// Queues: every ticket enqueued is delivered, to its cluster, with its attempt.
/// `drain` takes every ticket currently deliverable off the queue.
pub async fn run_queue_contract<Q, F, Fut>(queue: &Q, drain: F)
where
    Q: RunQueue,
    F: Fn() -> Fut,
    Fut: Future<Output = Vec<RunTicket>>,
{
    let tickets = [
        RunTicket {
            run_id: "r-1".into(),
            attempt: 1,
            cluster: "team-a".into(),
        },
        RunTicket {
            run_id: "r-2".into(),
            attempt: 2,
            cluster: "team-b".into(),
        },
    ];
    for ticket in &tickets {
        queue
            .enqueue(ticket)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut delivered = drain().await;
    delivered.sort_by(|a, b| a.run_id.cmp(&b.run_id));
    delivered.dedup();
    assert_eq!(
        delivered, tickets,
        "every ticket is delivered with its cluster and attempt"
    );
    assert!(drain().await.is_empty(), "a drained queue is empty");
}

/// The cluster registry: read and written whole, with optimistic concurrency.
pub async fn cluster_store_contract<S: crate::ports::ClusterStore>(store: &S) {
    use crate::domain::cluster::{Cluster, ClusterInput};
    let (none, version) = store.clusters().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        none.is_empty() && version == 0,
        "a new registry is empty at version 0"
    );
    let a = Cluster::create(
        ClusterInput {
            name: Some("gpu".into()),
            allowed_tiers: Some(vec!["1".into()]),
            ..Default::default()
        },
        t(1),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    store
        .save_clusters(std::slice::from_ref(&a), 0)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (got, version) = store.clusters().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        got,
        std::slice::from_ref(&a),
        "the registry reads back what was saved"
    );
    assert_eq!(version, 1);
    let stale = store.save_clusters(&[], 0).await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { .. })),
        "a save from a stale version is a conflict, got {stale:?}"
    );
    store
        .save_clusters(&[], 1)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (got, version) = store.clusters().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(got.is_empty() && version == 2);
}

/// Idempotence keys: claimed once, replaced only knowingly or after expiry.
pub async fn idempotence_contract<S: crate::ports::IdempotenceKeys>(store: &S) {
    let find = |now| async move { store.find("k", now).await.unwrap_or_else(|e| panic!("{e}")) };
    assert_eq!(find(t(0)).await, None);
    let claim = |run: &'static str, replacing: Option<&'static str>, now, until| async move {
        store
            .claim("k", run, replacing, now, until)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    };
    assert!(
        claim("r-1", None, t(0), t(100)).await,
        "a free key is claimed"
    );
    assert_eq!(find(t(1)).await.as_deref(), Some("r-1"));
    assert!(
        !claim("r-2", None, t(1), t(100)).await,
        "a live key is not claimed again blindly"
    );
    assert!(
        claim("r-2", Some("r-1"), t(2), t(100)).await,
        "a key is replaced when the caller names the run it replaces"
    );
    assert_eq!(find(t(3)).await.as_deref(), Some("r-2"));
    assert_eq!(find(t(100)).await, None, "an expired key names nothing");
    assert!(
        claim("r-3", None, t(101), t(200)).await,
        "an expired key can be claimed"
    );
    assert_eq!(find(t(102)).await.as_deref(), Some("r-3"));
}

/// Template versions: unique by name and version, listed and found.
pub async fn template_store_contract<S: crate::ports::TemplateStore>(store: &S) {
    use crate::domain::template::{Template, TemplateInput};
    let make = |id: &str, name: &str, version: u32| {
        Template::create(
            id.to_owned(),
            version,
            TemplateInput {
                template_name: Some(name.into()),
                image: Some("python:3.12".into()),
                command_template: Some("echo {{ .x }}".into()),
                schema: Some(serde_json::json!({"type": "object"})),
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let a1 = make("tpl-a1", "alpha", 1);
    let a2 = make("tpl-a2", "alpha", 2);
    let b1 = make("tpl-b1", "beta", 1);
    for t in [&a1, &b1, &a2] {
        store.create(t).await.unwrap_or_else(|e| panic!("{e}"));
    }
    let dup = store.create(&make("tpl-other", "alpha", 2)).await;
    assert!(
        matches!(dup, Err(StoreError::Duplicate(_))),
        "a name and version are unique, got {dup:?}"
    );
    assert_eq!(
        store.get("tpl-a2").await.unwrap_or_else(|e| panic!("{e}")),
        Some(a2.clone())
    );
    assert_eq!(
        store
            .get("tpl-other")
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        None,
        "a refused create writes nothing"
    );
    assert_eq!(
        store
            .versions("alpha")
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        [a1.clone(), a2.clone()],
        "versions of a name, oldest first"
    );
    let mut all = store.all().await.unwrap_or_else(|e| panic!("{e}"));
    all.sort_by(|x, y| x.template_id.cmp(&y.template_id));
    assert_eq!(all, [a1, a2, b1]);
}
