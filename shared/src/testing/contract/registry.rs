//! The smaller ports' contracts: run queues, the cluster registry,
//! idempotence keys and template versions.

use std::future::Future;

use crate::error::StoreError;
use crate::ports::{RunQueue, RunTicket};
use crate::testing::scenario::t;

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
    let find = |now| async move {
        store
            .find("k", now)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .map(|claim| claim.run_id)
    };
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
    let claim_of_r1 = store
        .find("k", t(1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        claim_of_r1.map(|c| c.expires_at),
        Some(t(100)),
        "a key says until when it holds"
    );
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

/// Job lessons: nothing until taught; lessons merge as
/// [`crate::domain::learning::Learned::merged`] says; 20 writers racing
/// with different memories lose none of them (the largest stands), and jobs
/// of the same definition with other commands learn nothing.
pub async fn job_lessons_contract<S: crate::ports::JobLessons + Clone + 'static>(store: &S) {
    use crate::domain::learning::{JobKey, Lesson, MemoryLesson, SpotLesson, command_hash};
    let job = JobKey {
        definition_id: "d-1".into(),
        command_hash: command_hash("train"),
    };
    let other = JobKey {
        definition_id: "d-1".into(),
        command_hash: command_hash("evaluate"),
    };
    let learned =
        |job: JobKey| async move { store.learned(&job).await.unwrap_or_else(|e| panic!("{e}")) };
    assert_eq!(
        learned(job.clone()).await,
        Default::default(),
        "nothing taught yet"
    );
    let oom = |memory: u64| {
        Lesson::OutOfMemory(MemoryLesson {
            memory,
            run_id: format!("r-{memory}"),
            at: t(memory as i64),
        })
    };
    let mut racers = tokio::task::JoinSet::new();
    for n in 1..=20u64 {
        let (store, job, lesson) = (store.clone(), job.clone(), oom(n * 100));
        racers.spawn(async move { store.learn(&job, &lesson).await });
    }
    for result in racers.join_all().await {
        result.unwrap_or_else(|e| panic!("a racing lesson failed: {e}"));
    }
    let now = learned(job.clone()).await;
    assert_eq!(
        now.out_of_memory.as_ref().map(|l| l.memory),
        Some(2000),
        "the largest of 20 racing lessons stands: {now:?}"
    );
    store
        .learn(&job, &oom(300))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        learned(job.clone()).await,
        now,
        "a smaller one changes nothing"
    );
    let spot = Lesson::SpotInterruption(SpotLesson {
        run_id: "r-spot".into(),
        at: t(50),
    });
    for _ in 0..2 {
        store
            .learn(&job, &spot)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let both = learned(job.clone()).await;
    assert_eq!(both.out_of_memory, now.out_of_memory);
    assert_eq!(
        both.spot_interruption.map(|l| l.run_id).as_deref(),
        Some("r-spot")
    );
    assert_eq!(
        learned(other).await,
        Default::default(),
        "another command of the definition is another job"
    );
}

/// A schedule to store.
fn a_schedule(id: &str, created: i64) -> crate::domain::schedule::Schedule {
    use crate::domain::schedule::{CatchUp, Schedule, Target};
    Schedule {
        schedule_id: id.to_owned(),
        name: format!("{id}-name"),
        target: Target::Definition {
            definition_id: "d-1".into(),
            alias: "nightly".into(),
        },
        cron: "0 2 * * *".into(),
        time_zone: "Europe/Paris".into(),
        launch: serde_json::json!({"run_tags": {"owner_id": "ann"}, "env": [{"name": "A", "value": "1"}]}),
        rendered: None,
        enabled: true,
        catch_up: CatchUp::Latest,
        owner: "ann".into(),
        created_at: t(created),
        updated_at: t(created),
        next_fire_at: Some(t(created + 3600)),
        pending: None,
        last_fire_at: None,
        last_run_id: None,
        last_error: None,
        fires: 0,
        missed: 0,
        version: 1,
    }
}

/// Schedules: created, read and listed oldest first; a replacement lands
/// only on the version it read, so of 20 racing replacements of the same
/// version exactly one wins; a deleted schedule is gone.
pub async fn schedule_store_contract<S: crate::ports::ScheduleStore + Clone + 'static>(store: &S) {
    let first = a_schedule("sched-b", 0);
    let second = a_schedule("sched-a", 10);
    store
        .create_schedule(&first)
        .await
        .unwrap_or_else(|e| panic!("create failed: {e}"));
    store
        .create_schedule(&second)
        .await
        .unwrap_or_else(|e| panic!("create failed: {e}"));
    let read = store
        .schedule("sched-b")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        read.as_ref(),
        Some(&first),
        "a schedule reads back as saved"
    );
    assert_eq!(
        store
            .schedule("nope")
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        None
    );
    let ids: Vec<String> = store
        .schedules()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|s| s.schedule_id)
        .collect();
    assert_eq!(ids, ["sched-b", "sched-a"], "oldest first");

    let mut tasks = Vec::new();
    for i in 0..20u64 {
        let store = store.clone();
        let mut changed = first.clone();
        changed.fires = i + 1;
        tasks.push(tokio::spawn(async move {
            store.save_schedule(&changed, 1).await
        }));
    }
    let mut won = 0;
    for task in tasks {
        if task
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("save failed: {e}"))
        {
            won += 1;
        }
    }
    assert_eq!(won, 1, "exactly one replacement of version 1 lands");
    let now = store
        .schedule("sched-b")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("still there"));
    assert_eq!(now.version, 2, "the stored version moved on");
    assert!(
        !store
            .save_schedule(&now, 1)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        "a replacement of a version gone is refused"
    );
    assert!(
        store
            .delete_schedule("sched-b")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );
    assert!(
        !store
            .delete_schedule("sched-b")
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        "a second delete finds nothing"
    );
    assert_eq!(
        store
            .schedule("sched-b")
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        None
    );
    assert!(
        !store
            .save_schedule(&now, 2)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        "a deleted schedule is not saved back"
    );
}
