//! The retry function's sweep on moto: tickets sent again once per interval
//! on a real SQS queue, and runs whose ECS state change events were lost
//! repaired from `DescribeTasks`.

use axum::http::Method;
use serde_json::{Value, json};
use shared::lambda::retry;
use shared::ports::{EngineChange, EngineUpdate};

use super::{INTERVALS, Stack, stack};

async fn define(s: &Stack, alias: &str) {
    let (code, body) = s
        .call(
            Method::POST,
            "/api/v6/task",
            json!({"alias": alias, "group_name": "g", "image": "ubuntu:latest", "command": "true"}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
}

async fn execute(s: &Stack, alias: &str) -> String {
    let (code, run) = s
        .call(
            Method::PUT,
            &format!("/api/v6/task/alias/{alias}/execute"),
            json!({"run_tags": {"owner_id": "me"}}),
        )
        .await;
    assert_eq!(code, 200, "{run}");
    run["run_id"].as_str().unwrap().to_owned()
}

async fn run(s: &Stack, run_id: &str) -> Value {
    let (code, run) = s
        .call(
            Method::GET,
            &format!("/api/v6/history/{run_id}"),
            Value::Null,
        )
        .await;
    assert_eq!(code, 200, "{run}");
    run
}

async fn queue_depth(s: &Stack) -> u64 {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let got = s
        .clients
        .sqs
        .get_queue_attributes()
        .queue_url(&s.queue_url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .send()
        .await
        .unwrap();
    got.attributes().unwrap()[&A::ApproximateNumberOfMessages]
        .parse()
        .unwrap()
}

#[tokio::test]
#[ignore = "needs moto: scripts/test installs it and runs these"]
async fn three_sweeps_over_five_stale_runs_deepen_the_queue_by_five_tickets_not_fifteen() {
    let s = stack().await;
    define(&s, "stale").await;
    for _ in 0..5 {
        execute(&s, "stale").await;
    }
    assert_eq!(queue_depth(&s).await, 5);
    s.clock.advance(chrono::Duration::minutes(6));
    let mut depths = Vec::new();
    for _ in 0..3 {
        let tick = retry::tick(&s.app, INTERVALS).await.unwrap();
        assert!(tick.failed.is_empty(), "{tick:?}");
        depths.push(queue_depth(&s).await);
        s.clock.advance(chrono::Duration::minutes(1));
    }
    assert_eq!(depths, [10, 10, 10]);
}

#[tokio::test]
#[ignore = "needs moto: scripts/test installs it and runs these"]
async fn runs_whose_state_change_events_were_lost_are_repaired_from_one_describe_tasks() {
    let s = stack().await;
    // moto moves a task one status further each time it is described unless
    // told otherwise: tasks here keep their status until stopped, as ECS's do.
    let answer = flotilla_tests::http_client()
        .post(format!(
            "{}/moto-api/state-manager/set-transition",
            s.moto_endpoint()
        ))
        .json(&json!({
            "model_name": "ecs::task",
            "transition": {"progression": "manual", "times": 1_000_000}
        }))
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{answer:?}");
    define(&s, "quiet").await;
    let stopped = execute(&s, "quiet").await;
    let running = execute(&s, "quiet").await;
    let forgotten = execute(&s, "quiet").await;
    // Two runs are launched; their every state change event is lost.
    let got = s
        .clients
        .sqs
        .receive_message()
        .queue_url(&s.queue_url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    for m in got.messages() {
        s.clients
            .sqs
            .delete_message()
            .queue_url(&s.queue_url)
            .receipt_handle(m.receipt_handle().unwrap())
            .send()
            .await
            .unwrap();
    }
    for run_id in [&stopped, &running] {
        let ticket = shared::ports::RunTicket {
            run_id: run_id.clone(),
            attempt: 1,
            cluster: "default".into(),
        };
        let outcome = s.app.submit(&ticket).await.unwrap();
        assert!(
            matches!(outcome, shared::app::SubmitOutcome::Launched { .. }),
            "{outcome:?}"
        );
    }
    // The third's launch was recorded under a task ECS does not have.
    let unknown_task =
        "arn:aws:ecs:us-east-1:123456789012:task/flotilla-default/00000000000000000000000000000000";
    s.app
        .record_engine_update(EngineUpdate {
            run_id: forgotten.clone(),
            attempt: 1,
            change: EngineChange::Submitted {
                task_id: unknown_task.into(),
            },
            engine_version: None,
            at: shared::ports::Clock::now(s.clock.as_ref()),
        })
        .await
        .unwrap();
    let task_of = |run: &Value| run["task_id"].as_str().unwrap().to_owned();
    let stopped_task = task_of(&run(&s, &stopped).await);
    s.clients
        .ecs
        .stop_task()
        .cluster("flotilla-default")
        .task(&stopped_task)
        .reason("Essential container in task exited")
        .send()
        .await
        .unwrap();

    // Within the quiet time nothing is looked up.
    s.clock.advance(chrono::Duration::minutes(9));
    s.counter.reset();
    let tick = retry::tick(&s.app, INTERVALS).await.unwrap();
    assert_eq!(s.counter.count("DescribeTasks"), 0, "{tick:?}");

    s.clock.advance(chrono::Duration::minutes(2));
    let tick = retry::tick(&s.app, INTERVALS).await.unwrap();
    assert!(tick.failed.is_empty(), "{tick:?}");
    assert_eq!(
        s.counter.count("DescribeTasks"),
        1,
        "three runs of one cluster, one lookup"
    );
    // moto reports a stopped task's container as exited with 0.
    let ended = run(&s, &stopped).await;
    assert_eq!(
        (ended["status"].clone(), ended["exit_code"].clone()),
        (json!("STOPPED"), json!(0)),
        "{ended}"
    );
    assert_eq!(run(&s, &running).await["status"], "RUNNING");
    let lost = run(&s, &forgotten).await;
    assert_eq!(lost["status"], "STOPPED", "{lost}");
    assert_eq!(lost["exit_code"], Value::Null);
    let reason = lost["exit_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!("no longer knows its task {unknown_task}")),
        "{reason}"
    );
    let mut reconciled = tick.reconciled.clone();
    reconciled.sort();
    let mut expected = vec![stopped.clone(), running.clone()];
    expected.sort();
    assert_eq!(reconciled, expected);
    assert_eq!(tick.lost, std::slice::from_ref(&forgotten));

    // The bus heard of every change the lookups recorded.
    let changes = s.observed().await;
    for (run_id, status) in [
        (&stopped, "STOPPED"),
        (&running, "RUNNING"),
        (&forgotten, "STOPPED"),
    ] {
        assert!(
            changes.iter().any(|(r, st)| r == run_id && st == status),
            "{run_id} {status} not on the bus: {changes:?}"
        );
    }
}
