//! The storage-touching routes on the AWS backend (DynamoDB, SQS, ECS on
//! moto): list filters, the status ETag, self-reported status, a run's
//! timeline, groups and tags.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, Response};
use serde_json::{Value, json};
use shared::app::App;
use tower::ServiceExt;

use crate::stack;

async fn send(app: &Arc<App>, request: Request<Body>) -> Response<Body> {
    shared::http::router(Arc::clone(app))
        .oneshot(request)
        .await
        .unwrap()
}

async fn body_json(response: Response<Body>) -> Value {
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

#[tokio::test]
#[ignore = "needs moto: scripts/test installs it and runs these"]
async fn status_etags_self_reports_timelines_groups_and_filters_work_over_dynamodb() {
    let s = stack().await;
    let (status, _) = s
        .call(
            Method::POST,
            "/api/v6/task",
            json!({"alias": "etl", "group_name": "finance", "image": "ubuntu:latest", "command": "run", "tags": ["nightly"]}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, run) = s
        .call(
            Method::PUT,
            "/api/v6/task/alias/etl/execute",
            json!({"run_tags": {"owner_id": "ana"}, "env": [{"name": "MODEL", "value": "v2"}]}),
        )
        .await;
    let run_id = run["run_id"].as_str().unwrap().to_owned();
    assert_eq!(s.deliver_queue(false).await, 1);
    let task_arn = s.tasks().await[0].clone();
    s.ecs_event("ecs-task-running", &run_id, 1, &task_arn).await;

    // The status ETag: 304 while nothing changes.
    let path = format!("/api/v6/{run_id}/status");
    let first = send(&s.app, Request::get(&path).body(Body::empty()).unwrap()).await;
    assert_eq!(first.status().as_u16(), 200);
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(body_json(first).await["status"], "RUNNING");
    let again = send(
        &s.app,
        Request::get(&path)
            .header("if-none-match", &etag)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(again.status().as_u16(), 304);

    // The run reports its own end: the report is recorded and the task is
    // told to stop; the run ends when ECS reports the task stopped, with the
    // container's real exit code and the report's reason.
    let report = json!({"status": "STOPPED", "exit_code": 1, "run_exceptions": ["ModuleNotFoundError: No module named 'x'"]});
    let token = s.run_token(&task_arn).await;
    let wrong = shared::app::RunTokens::new(&[9; 32])
        .unwrap()
        .issue(&run_id, 1);
    for refused in [vec![], vec![("x-flotilla-run-token", wrong.as_str())]] {
        let (status, answer) = s
            .call_with(Method::PUT, &path, report.clone(), &refused)
            .await;
        assert_eq!(status, 403, "only the run's own token reports: {answer}");
    }
    let (status, answer) = s
        .call_with(
            Method::PUT,
            &path,
            report,
            &[("x-flotilla-run-token", token.as_str())],
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, json!({"updated": true, "status": "RUNNING"}));
    let after = send(
        &s.app,
        Request::get(&path)
            .header("if-none-match", &etag)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(after.status().as_u16(), 200, "a changed run has a new ETag");
    s.ecs_event("ecs-task-stopped-exit-code", &run_id, 1, &task_arn)
        .await;
    let (_, body) = s
        .call(
            Method::GET,
            &format!("/api/v6/history/{run_id}"),
            Value::Null,
        )
        .await;
    assert_eq!(body["status"], "STOPPED", "{body}");
    assert_eq!(body["exit_code"], 3, "the container's exit code: {body}");
    assert_eq!(body["exit_reason"], "Python pip package installation error");

    // Its timeline, from the DynamoDB event stream.
    let (status, events) = s
        .call(
            Method::GET,
            &format!("/api/v6/{run_id}/events"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 200);
    let reasons: Vec<&str> = events["pod_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "RunQueued",
            "RunSubmitted",
            "RunStarted",
            "RunStopRequested",
            "RunUsageRecorded",
            "RunStopped"
        ]
    );
    assert_eq!(events["pod_events"][1]["source_object"], task_arn.as_str());

    // Groups, tags and list filters.
    let (_, groups) = s.call(Method::GET, "/api/v6/groups", Value::Null).await;
    assert_eq!(groups, json!({"total": 1, "groups": ["finance"]}));
    let (_, tags) = s.call(Method::GET, "/api/v1/tags", Value::Null).await;
    assert_eq!(tags, json!({"total": 1, "tags": ["nightly"]}));
    for (query, total) in [
        ("env=MODEL%7Cv2&owner_id=ana", 1),
        ("env=MODEL%7Cv1", 0),
        ("exit_reason=pip&status=STOPPED", 1),
        (
            "started_at_since=2000-01-01&finished_at_until=2999-01-01",
            1,
        ),
        ("started_at_until=2000-01-01", 0),
    ] {
        let (status, list) = s
            .call(
                Method::GET,
                &format!("/api/v6/history?{query}"),
                Value::Null,
            )
            .await;
        assert_eq!(status, 200, "{query}: {list}");
        assert_eq!(list["total"], total, "{query}: {list}");
    }
}

#[tokio::test]
#[ignore = "needs moto: scripts/test installs it and runs these"]
async fn clusters_templates_and_idempotence_keys_work_over_dynamodb() {
    let s = stack().await;
    let (status, created) = s
        .call(
            Method::POST,
            "/api/v6/clusters",
            json!({"name": "default", "allowed_tiers": ["2"]}),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let (status, _) = s
        .call(Method::POST, "/api/v6/clusters", json!({"name": "default"}))
        .await;
    assert_eq!(status, 409);
    let (_, names) = s.call(Method::GET, "/api/v1/clusters", Value::Null).await;
    assert_eq!(names["clusters"], json!(["default"]));

    let (status, template) = s
        .call(
            Method::POST,
            "/api/v7/template",
            json!({
                "template_name": "report",
                "image": "ubuntu:latest",
                "command_template": "make report MONTH={{ .month }}",
                "schema": {"type": "object", "required": ["month"], "properties": {"month": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"}}}
            }),
        )
        .await;
    assert_eq!(status, 200, "{template}");
    let body = json!({"owner_id": "ana", "tier": "2", "idempotence_key": "report-2026-10", "template_payload": {"month": "2026-10"}});
    let (status, run) = s
        .call(
            Method::PUT,
            "/api/v7/template/name/report/version/1/execute",
            body.clone(),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["command"], "make report MONTH=2026-10");
    assert_eq!(
        run["cluster"], "default",
        "tier 2 routes to the registered cluster"
    );
    let (_, again) = s
        .call(
            Method::PUT,
            "/api/v7/template/name/report/version/1/execute",
            body,
        )
        .await;
    assert_eq!(
        again["run_id"], run["run_id"],
        "the same idempotence key, the same run"
    );
    assert_eq!(s.deliver_queue(false).await, 1, "one run was queued, once");
    let (status, answer) = s
        .call(
            Method::PUT,
            "/api/v7/template/name/report/version/1/execute",
            json!({"owner_id": "ana", "template_payload": {"month": "October"}}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("/month"),
        "{answer}"
    );
    let template_id = template["template"]["template_id"].as_str().unwrap();
    let (_, history) = s
        .call(
            Method::GET,
            &format!("/api/v7/template/{template_id}/history"),
            Value::Null,
        )
        .await;
    assert_eq!(history["total"], 1, "{history}");
}

#[tokio::test]
#[ignore = "needs moto: scripts/test installs it and runs these"]
async fn a_stacks_price_table_prices_its_runs_and_without_one_fargates_rates_do() {
    let s = stack().await;
    assert!(
        s.app.settings.prices.source.contains("Fargate"),
        "{}",
        s.app.settings.prices.source
    );
    let table =
        r#"{"source": "our negotiated rates", "rates": [{"vcpu_hour": 0.03, "gb_hour": 0.003}]}"#;
    let mut env = s.env.clone();
    env.push(("FLOTILLA_PRICES", table.to_owned()));
    let config = shared::lambda::Config::from_lookup(|k| {
        env.iter()
            .rev()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.clone())
    })
    .unwrap();
    let app = shared::lambda::build_app(&config, &s.clients, s.clock.clone());
    assert_eq!(app.settings.prices.source, "our negotiated rates");
    assert_eq!(app.settings.prices.rates[0].vcpu_hour, 0.03);
}
