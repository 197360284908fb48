//! Every AWS call has a deadline: against an endpoint that accepts
//! connections and never answers, the functions still answer in time, and
//! submit reports each message it could not handle as a failure of its own.
//! No emulator is needed: the endpoint is a loopback socket that reads and
//! never writes.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use serde_json::json;
use shared::lambda::{AwsClients, Config, build_app, submit};
use shared::ports::ManualClock;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;
use tower::ServiceExt;

/// A loopback endpoint that accepts every connection and reads forever.
async fn silent_endpoint() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                while matches!(socket.read(&mut buffer).await, Ok(n) if n > 0) {}
            });
        }
    });
    format!("http://{address}")
}

async fn app_against(endpoint: &str, timeouts_ms: [&str; 3]) -> Arc<shared::app::App> {
    let env = [
        ("FLOTILLA_TABLE", "flotilla"),
        ("FLOTILLA_QUEUE_PREFIX", "flotilla-"),
        ("FLOTILLA_EVENT_BUS", "flotilla-runs"),
        ("FLOTILLA_LOG_GROUP", "/flotilla/runs"),
        ("FLOTILLA_SUBNETS", "subnet-1"),
        ("FLOTILLA_AWS_ENDPOINT_URL", endpoint),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "ASIATIMEOUTTEST"),
        ("AWS_SECRET_ACCESS_KEY", "timeout-test"),
        ("AWS_SESSION_TOKEN", "timeout-test"),
        ("FLOTILLA_AWS_CONNECT_TIMEOUT_MS", timeouts_ms[0]),
        ("FLOTILLA_AWS_ATTEMPT_TIMEOUT_MS", timeouts_ms[1]),
        ("FLOTILLA_AWS_OPERATION_TIMEOUT_MS", timeouts_ms[2]),
    ];
    let config = Config::from_lookup(|k| {
        env.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| (*v).to_owned())
    })
    .unwrap();
    // The SDK configuration a function builds at its cold start.
    let clients = AwsClients::new(&shared::lambda::lambda_sdk_config(&config).unwrap());
    let clock = Arc::new(ManualClock::at(super::fixture_time()));
    Arc::new(build_app(&config, &clients, clock))
}

fn batch(bodies: &[&str]) -> aws_lambda_events::sqs::SqsEvent {
    let records: Vec<_> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| json!({"messageId": format!("m-{i}"), "body": body}))
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

fn ticket(n: usize) -> String {
    json!({"run_id": format!("ecs-run-{n}"), "attempt": 1, "cluster": "default"}).to_string()
}

fn failed_ids(response: &aws_lambda_events::sqs::SqsBatchResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

#[tokio::test]
async fn submit_reports_each_message_failed_when_aws_accepts_connections_and_never_answers() {
    let endpoint = silent_endpoint().await;
    let app = app_against(&endpoint, ["500", "300", "600"]).await;
    let bodies = [ticket(0), ticket(1), "not a ticket".to_owned(), ticket(3)];
    let bodies: Vec<&str> = bodies.iter().map(String::as_str).collect();
    let started = Instant::now();
    let response = submit::handle(&app, batch(&bodies), started + Duration::from_secs(30)).await;
    assert_eq!(
        failed_ids(&response),
        ["m-0", "m-1", "m-2", "m-3"],
        "each message is a failure of its own, the unparseable one included (for the dead-letter queue)"
    );
    // Three tickets, each a read that gives up after 0.6 s: far less than
    // half the invocation's time, which a hung call would use up.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "every call gave up at its own timeout: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn submit_answers_before_its_deadline_even_when_one_call_may_outlast_it() {
    let endpoint = silent_endpoint().await;
    // Calls may take a minute; the invocation has three seconds.
    let app = app_against(&endpoint, ["60000", "60000", "60000"]).await;
    let bodies = [ticket(0), ticket(1), ticket(2)];
    let bodies: Vec<&str> = bodies.iter().map(String::as_str).collect();
    let deadline = Instant::now() + Duration::from_secs(3);
    let response = submit::handle(&app, batch(&bodies), deadline).await;
    assert!(
        Instant::now() < deadline,
        "the answer leaves the reserve to send it"
    );
    assert_eq!(failed_ids(&response), ["m-0", "m-1", "m-2"]);
}

#[tokio::test]
async fn the_api_answers_a_server_error_in_time_when_dynamodb_never_answers() {
    let endpoint = silent_endpoint().await;
    let app = app_against(&endpoint, ["500", "300", "600"]).await;
    let request = Request::builder()
        .uri("/api/v6/history/ecs-run-0")
        .body(Body::empty())
        .unwrap();
    let answer = tokio::time::timeout(
        Duration::from_secs(30),
        shared::http::router(app).oneshot(request),
    )
    .await
    .expect("the api answers within 30 s")
    .unwrap();
    assert!(answer.status().is_server_error(), "{:?}", answer.status());
    let body = axum::body::to_bytes(answer.into_body(), usize::MAX)
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(body["error"].is_string(), "{body}");
}
