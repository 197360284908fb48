//! Retry policies and cluster caps on moto, through the api, submit, status
//! and retry functions: a spot interruption runs the next attempt on
//! on-demand capacity (the RunTask request says so); a capped cluster admits
//! no more than its cap under 20 concurrent submit invocations and puts the
//! rest back on its queue with a delay; the sweep sets a cluster's count of
//! held slots right when it disagrees with the runs; a cluster in
//! maintenance launches nothing and its tickets wait on its queue.

use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use axum::http::Method;
use serde_json::{Value, json};
use shared::app::App;
use shared::lambda::{retry, submit};
use shared::ports::RunStore;

use crate::{INTERVALS, Stack, sqs_record, stack};

const SUBMITTERS: usize = 20;
const CAP: u64 = 3;

impl Stack {
    async fn define_and_execute(&self, alias: &str, n: usize) -> Vec<String> {
        let (status, def) = self
            .call(
                Method::POST,
                "/api/v6/task",
                json!({"alias": alias, "image": "ubuntu:latest", "command": "run"}),
            )
            .await;
        assert_eq!(status, 200, "{def}");
        let mut ids = Vec::new();
        for _ in 0..n {
            let run = self.execute(alias).await;
            ids.push(run["run_id"].as_str().unwrap().to_owned());
        }
        ids
    }

    /// A run of `alias`, launched by ana.
    async fn execute(&self, alias: &str) -> Value {
        let (status, run) = self
            .call(
                Method::PUT,
                &format!("/api/v6/task/alias/{alias}/execute"),
                json!({"run_tags": {"owner_id": "ana"}}),
            )
            .await;
        assert_eq!(status, 200, "{run}");
        run
    }

    async fn run(&self, run_id: &str) -> Value {
        let (status, run) = self
            .call(
                Method::GET,
                &format!("/api/v6/history/{run_id}"),
                Value::Null,
            )
            .await;
        assert_eq!(status, 200, "{run}");
        run
    }

    /// Every message on the default queue now, each as its own one-record
    /// SQS event, and their receipt handles.
    async fn one_record_events(&self) -> Vec<(aws_lambda_events::sqs::SqsEvent, String)> {
        let template: Value =
            serde_json::from_str(include_str!("../../events/sqs-batch.json")).unwrap();
        let mut events = Vec::new();
        loop {
            let got = self
                .clients
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap();
            if got.messages().is_empty() {
                return events;
            }
            for m in got.messages() {
                let record = sqs_record(&template, m);
                let event = serde_json::from_value(json!({ "Records": [record] })).unwrap();
                events.push((event, m.receipt_handle().unwrap().to_owned()));
            }
        }
    }

    /// Writes a cluster's count of held slots behind the service's back.
    async fn set_held_in_table(&self, cluster: &str, held: i64) {
        self.clients
            .dynamodb
            .put_item()
            .table_name("flotilla")
            .item("PK", AttributeValue::S(format!("SLOTS#{cluster}")))
            .item("SK", AttributeValue::S("SLOTS".into()))
            .item("held", AttributeValue::N(held.to_string()))
            .send()
            .await
            .unwrap();
    }

    async fn held_in_table(&self, cluster: &str) -> Option<i64> {
        let item = self
            .clients
            .dynamodb
            .get_item()
            .table_name("flotilla")
            .key("PK", AttributeValue::S(format!("SLOTS#{cluster}")))
            .key("SK", AttributeValue::S("SLOTS".into()))
            .send()
            .await
            .unwrap();
        item.item()
            .and_then(|i| i.get("held"))
            .and_then(|v| v.as_n().ok())
            .map(|n| n.parse().unwrap())
    }
}

#[tokio::test]
#[ignore = "needs moto: scripts/test installs it and runs these"]
async fn a_spot_interruption_runs_the_next_attempt_on_ondemand_capacity_and_says_so() {
    let s = stack().await;
    let run_id = s.define_and_execute("nightly", 1).await.remove(0);
    let first = s.launched_run_task().await;
    assert_eq!(
        first["capacityProviderStrategy"],
        json!([{"capacityProvider": "FARGATE_SPOT", "weight": 1}]),
        "{first}"
    );
    let task = s.tasks().await[0].clone();
    s.ecs_event("ecs-task-running", &run_id, 1, &task).await;
    s.ecs_event("ecs-task-stopped-spot-interruption", &run_id, 1, &task)
        .await;
    let interrupted = s.run(&run_id).await;
    assert_eq!(interrupted["status"], "NEEDS_RETRY", "{interrupted}");
    assert!(
        interrupted["exit_reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("spot interruption: "),
        "{interrupted}"
    );

    let tick = retry::tick(&s.app, INTERVALS).await.unwrap();
    assert_eq!(tick.requeued, std::slice::from_ref(&run_id), "{tick:?}");
    let requeued = s.run(&run_id).await;
    assert_eq!(
        (
            &requeued["status"],
            &requeued["attempt_count"],
            &requeued["node_lifecycle"]
        ),
        (&json!("QUEUED"), &json!(2), &json!("ondemand")),
        "{requeued}"
    );
    assert_eq!(
        requeued["lifecycle_note"],
        "attempt 1 lost its spot capacity; attempt 2 runs on on-demand capacity"
    );
    let second = s.launched_run_task().await;
    assert_eq!(second["launchType"], "FARGATE", "{second}");
    assert!(
        second.get("capacityProviderStrategy").is_none(),
        "attempt 2 asks for no spot capacity: {second}"
    );

    let (_, timeline) = s
        .call(
            Method::GET,
            &format!("/api/v6/{run_id}/events"),
            Value::Null,
        )
        .await;
    assert!(
        timeline.to_string().contains(
            "queued again as attempt 2 (attempt 1 lost its spot capacity; attempt 2 runs on on-demand capacity)"
        ),
        "the timeline says why attempt 2 runs on on-demand: {timeline}"
    );

    // The job learned: its next run starts on on-demand and says why, for
    // 12 hours; then it runs on spot again.
    let next = s.execute("nightly").await;
    assert_eq!(next["node_lifecycle"], "ondemand", "{next}");
    assert!(
        next["lifecycle_note"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("run {run_id} of this job lost its spot capacity")),
        "{next}"
    );
    let launched = s.launched_run_task().await;
    assert_eq!(launched["launchType"], "FARGATE", "{launched}");
    // (The lesson's time is the stop's, as ECS reported it, after the clock's.)
    s.clock.advance(chrono::Duration::hours(13));
    let later = s.execute("nightly").await;
    assert_eq!(later["node_lifecycle"], "spot", "{later}");
    assert!(later.get("lifecycle_note").is_none(), "{later}");
    let launched = s.launched_run_task().await;
    assert_eq!(
        launched["capacityProviderStrategy"],
        json!([{"capacityProvider": "FARGATE_SPOT", "weight": 1}]),
        "{launched}"
    );
}

#[tokio::test]
#[ignore = "needs moto: scripts/test installs it and runs these"]
async fn a_queued_run_of_a_cluster_in_maintenance_is_not_launched_and_its_ticket_waits_on_the_queue()
 {
    let s = stack().await;
    let (status, answer) = s
        .call(
            Method::POST,
            "/api/v6/clusters",
            json!({"name": "default", "status": "maintenance"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let run_id = s.define_and_execute("held", 1).await.remove(0);
    let events = s.one_record_events().await;
    assert_eq!(events.len(), 1);
    s.counter.reset();
    let (event, receipt) = events.into_iter().next().unwrap();
    let answer = submit::handle(
        &s.app,
        event,
        tokio::time::Instant::now() + std::time::Duration::from_secs(120),
    )
    .await;
    assert!(
        answer.batch_item_failures.is_empty(),
        "acknowledged: {answer:?}"
    );
    assert!(s.counter.bodies("RunTask").is_empty(), "nothing launched");
    let sent = s.counter.bodies("SendMessage");
    assert_eq!(sent.len(), 1, "the ticket is put back: {sent:?}");
    assert_eq!(sent[0]["DelaySeconds"], 30, "{sent:?}");
    s.clients
        .sqs
        .delete_message()
        .queue_url(&s.queue_url)
        .receipt_handle(receipt)
        .send()
        .await
        .unwrap();
    let run = s.run(&run_id).await;
    assert_eq!(run["status"], "QUEUED", "{run}");
    assert_eq!(
        run["waiting_reason"],
        "cluster default is in maintenance: its queued runs wait until it is active again",
        "{run}"
    );
    // The sweep adds no ticket while the cluster launches nothing.
    s.clock.advance(chrono::Duration::hours(1));
    let tick = retry::tick(&s.app, INTERVALS).await.unwrap();
    assert!(tick.reenqueued.is_empty(), "{tick:?}");
}

#[tokio::test]
#[ignore = "needs moto: scripts/test installs it and runs these"]
async fn twenty_concurrent_submit_invocations_on_a_cluster_capped_at_three_launch_three_and_put_the_rest_back()
 {
    let s = stack().await;
    let (status, cluster) = s
        .call(
            Method::PUT,
            "/api/v6/clusters/default",
            json!({"max_concurrency": CAP}),
        )
        .await;
    assert_eq!(status, 200, "{cluster}");
    let ids = s.define_and_execute("capped", SUBMITTERS).await;
    let events = s.one_record_events().await;
    assert_eq!(events.len(), SUBMITTERS);

    // Twenty invocations at once, spread over the four function apps.
    let apps: Vec<Arc<App>> = s.functions.iter().map(|(app, _)| app.clone()).collect();
    let mut invocations = tokio::task::JoinSet::new();
    for (i, (event, _)) in events.iter().enumerate() {
        let app = apps[i % apps.len()].clone();
        let event = event.clone();
        invocations.spawn(async move {
            submit::handle(
                &app,
                event,
                tokio::time::Instant::now() + std::time::Duration::from_secs(120),
            )
            .await
        });
    }
    let answers = invocations.join_all().await;
    for answer in &answers {
        assert!(
            answer.batch_item_failures.is_empty(),
            "a run over the cap is acknowledged, not failed: {answer:?}"
        );
    }
    for (_, receipt) in &events {
        s.clients
            .sqs
            .delete_message()
            .queue_url(&s.queue_url)
            .receipt_handle(receipt)
            .send()
            .await
            .unwrap();
    }

    assert_eq!(
        s.tasks().await.len() as u64,
        CAP,
        "no more tasks than the cap"
    );
    let mut pending = 0;
    let mut waiting = Vec::new();
    for id in &ids {
        let run = s.run(id).await;
        match run["status"].as_str() {
            Some("PENDING") => pending += 1,
            Some("QUEUED") => waiting.push(run),
            other => panic!("{other:?}: {run}"),
        }
    }
    assert_eq!(pending, CAP);
    assert_eq!(waiting.len() as u64, SUBMITTERS as u64 - CAP);
    for run in &waiting {
        assert_eq!(
            run["waiting_reason"], "cluster default is at its cap: 3 of 3 running",
            "{run}"
        );
    }
    assert_eq!(s.held_in_table("default").await, Some(CAP as i64));

    // Each run over the cap is back on the queue, delayed.
    let put_back: Vec<Value> = s
        .functions
        .iter()
        .flat_map(|(_, counter)| counter.bodies("SendMessage"))
        .collect();
    assert_eq!(
        put_back.len() as u64,
        SUBMITTERS as u64 - CAP,
        "{put_back:?}"
    );
    for body in &put_back {
        assert_eq!(body["DelaySeconds"], 30, "{body}");
    }
    for run in &waiting {
        let id = run["run_id"].as_str().unwrap();
        assert_eq!(
            put_back
                .iter()
                .filter(|b| b["MessageBody"].as_str().unwrap_or_default().contains(id))
                .count(),
            1,
            "run {id} has exactly one ticket put back"
        );
    }

    // A run's end gives its slot back in the same write.
    let (running, task) = {
        let task = s.tasks().await[0].clone();
        let described = s
            .clients
            .ecs
            .describe_tasks()
            .cluster("flotilla-default")
            .tasks(&task)
            .send()
            .await
            .unwrap();
        let group = described.tasks()[0].group().unwrap().to_owned();
        let id = ids
            .iter()
            .find(|id| group == shared::adapters::ecs_events::task_group(id, 1))
            .unwrap()
            .clone();
        (id, task)
    };
    s.ecs_event("ecs-task-stopped-exit-code", &running, 1, &task)
        .await;
    assert_eq!(s.run(&running).await["status"], "STOPPED");
    assert_eq!(s.held_in_table("default").await, Some(CAP as i64 - 1));
    let (_, one) = s
        .call(
            Method::GET,
            &format!("/api/v6/{}/status", waiting[0]["run_id"].as_str().unwrap()),
            Value::Null,
        )
        .await;
    assert_eq!(
        one["waiting_reason"], "waiting in cluster default's queue for a free slot",
        "with a slot free the run is no longer at the cap: {one}"
    );
}

#[tokio::test]
#[ignore = "needs moto: scripts/test installs it and runs these"]
async fn the_sweep_sets_a_capped_clusters_held_slots_right_from_its_runs() {
    let s = stack().await;
    let (status, cluster) = s
        .call(
            Method::PUT,
            "/api/v6/clusters/default",
            json!({"max_concurrency": 2}),
        )
        .await;
    assert_eq!(status, 200, "{cluster}");
    let ids = s.define_and_execute("swept", 3).await;
    assert_eq!(s.deliver_queue(false).await, 3);
    assert_eq!(s.tasks().await.len(), 2);
    assert_eq!(s.held_in_table("default").await, Some(2));

    // A count gone wrong: both slots look free.
    s.set_held_in_table("default", 0).await;
    let tick = retry::tick(&s.app, INTERVALS).await.unwrap();
    assert!(tick.failed.is_empty(), "{tick:?}");
    assert_eq!(tick.slots_repaired, ["default: 0 -> 2"]);
    assert_eq!(s.held_in_table("default").await, Some(2));

    // And one where slots are held by runs that have ended.
    s.set_held_in_table("default", 7).await;
    let waiting = s.run(&ids[2]).await;
    assert_eq!(waiting["status"], "QUEUED", "{waiting}");
    let tick = retry::tick(&s.app, INTERVALS).await.unwrap();
    assert_eq!(tick.slots_repaired, ["default: 7 -> 2"]);
    let store = shared::adapters::dynamo::DynamoStore::new(
        s.clients.dynamodb.clone(),
        "flotilla",
        s.clock.clone(),
    );
    assert_eq!(store.slots_held("default").await.unwrap(), 2);

    // A sweep over a count that is right changes nothing.
    let tick = retry::tick(&s.app, INTERVALS).await.unwrap();
    assert!(tick.slots_repaired.is_empty(), "{tick:?}");
}

#[tokio::test]
#[ignore = "needs moto: scripts/test installs it and runs these"]
async fn a_submit_invocation_over_the_cap_is_acknowledged_and_its_ticket_delayed() {
    let s = stack().await;
    s.call(
        Method::PUT,
        "/api/v6/clusters/default",
        json!({"max_concurrency": 1}),
    )
    .await;
    let ids = s.define_and_execute("one", 2).await;
    let events = s.one_record_events().await;
    assert_eq!(events.len(), 2);
    for (event, _) in &events {
        let answer = submit::handle(
            &s.app,
            event.clone(),
            tokio::time::Instant::now() + std::time::Duration::from_secs(120),
        )
        .await;
        assert!(answer.batch_item_failures.is_empty(), "{answer:?}");
    }
    let mut statuses = Vec::new();
    for id in &ids {
        statuses.push(s.run(id).await["status"].as_str().unwrap().to_owned());
    }
    statuses.sort();
    assert_eq!(statuses, ["PENDING", "QUEUED"]);
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let attributes = s
        .clients
        .sqs
        .get_queue_attributes()
        .queue_url(&s.queue_url)
        .attribute_names(A::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .unwrap();
    assert_eq!(
        attributes.attributes().unwrap()[&A::ApproximateNumberOfMessagesDelayed],
        "1",
        "the second run's ticket waits, delayed, on the queue"
    );
}
