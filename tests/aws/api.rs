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

    // The run reports its own end.
    let (status, answer) = s
        .call(
            Method::PUT,
            &path,
            json!({"status": "STOPPED", "exit_code": 1, "run_exceptions": ["ModuleNotFoundError: No module named 'x'"]}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["updated"], true);
    let after = send(
        &s.app,
        Request::get(&path)
            .header("if-none-match", &etag)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(after.status().as_u16(), 200, "a changed run has a new ETag");
    let body = body_json(after).await;
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
        ["RunQueued", "RunSubmitted", "RunStarted", "RunStopped"]
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
