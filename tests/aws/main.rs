//! The AWS path end to end on moto's server mode, through the same handlers
//! the Lambda functions run: api (the router) → SQS → submit (RunTask) →
//! status (ECS task state changes from `events/`) → projection, logs from
//! CloudWatch Logs, state changes on the EventBridge bus. Every AWS request
//! the service makes is counted.
//!
//! These tests need moto; a plain `cargo test` skips them, `scripts/test`
//! installs moto and runs them.

// Test harness code: an unwrap here is a failed test with its cause.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::{Value, json};
use shared::adapters::dynamo::DynamoStore;
use shared::adapters::ecs_events::{EcsTaskStateChangeEvent, task_group};
use shared::app::App;
use shared::lambda::{AwsClients, Config, build_api_app, build_app, retry, status, submit};
use shared::ports::ManualClock;
use shared::testing::counting::RequestCounter;
use shared::testing::moto::Moto;
use tower::ServiceExt;

mod api;
mod capacity;
mod cdk;
mod cfn;
mod infra;
mod policies;
mod processes;
mod schedules;
mod sweep;
mod timeouts;

const OBSERVER: &str = "observer";

/// The retry function's default intervals.
const INTERVALS: retry::Intervals = retry::Intervals {
    requeue_after_minutes: 5,
    reconcile_after_minutes: 10,
};

struct Stack {
    _moto: Moto,
    /// Every function's clock; it starts at [`fixture_time`].
    clock: Arc<ManualClock>,
    clients: AwsClients,
    app: Arc<App>,
    counter: RequestCounter,
    queue_url: String,
    observer_url: String,
    /// The functions' environment for this stack.
    env: Vec<(&'static str, String)>,
    /// Four apps as four function processes (each with its own request
    /// counter): the template consistency test's api, submit, status and
    /// retry, or any four launching processes.
    functions: Vec<(Arc<App>, RequestCounter)>,
    /// The api function's app (it launches nothing), with its counter.
    api_function: (Arc<App>, RequestCounter),
}

/// When the `events/` fixtures happened (their tasks were created a second
/// later): the stack's clock starts here, so what the tests compare (a run's
/// deadline against its fixture start time, say) never depends on today's date.
fn fixture_time() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z")
        .unwrap()
        .to_utc()
}

async fn stack() -> Stack {
    let moto = Moto::start();
    let clock = Arc::new(ManualClock::at(fixture_time()));
    let sdk = moto.sdk_config().await;
    let setup = AwsClients::new(&sdk);
    DynamoStore::new(setup.dynamodb.clone(), "flotilla", clock.clone())
        .create_table()
        .await
        .unwrap();
    let queue_url = setup
        .sqs
        .create_queue()
        .queue_name("flotilla-default")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    setup
        .ecs
        .create_cluster()
        .cluster_name("flotilla-default")
        .send()
        .await
        .unwrap();
    setup
        .logs
        .create_log_group()
        .log_group_name("/flotilla/runs")
        .send()
        .await
        .unwrap();
    setup
        .events
        .create_event_bus()
        .name("flotilla-runs")
        .send()
        .await
        .unwrap();
    let observer_url = setup
        .sqs
        .create_queue()
        .queue_name(OBSERVER)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let arn = setup
        .sqs
        .get_queue_attributes()
        .queue_url(&observer_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    setup
        .events
        .put_rule()
        .name("observe")
        .event_bus_name("flotilla-runs")
        .event_pattern(r#"{"source":["flotilla"]}"#)
        .send()
        .await
        .unwrap();
    setup
        .events
        .put_targets()
        .rule("observe")
        .event_bus_name("flotilla-runs")
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("q")
                .arn(arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let (subnet, group) = moto.default_network();
    let env = [
        ("FLOTILLA_TABLE", "flotilla".to_owned()),
        ("FLOTILLA_QUEUE_PREFIX", "flotilla-".to_owned()),
        ("FLOTILLA_EVENT_BUS", "flotilla-runs".to_owned()),
        ("FLOTILLA_LOG_GROUP", "/flotilla/runs".to_owned()),
        ("FLOTILLA_SUBNETS", subnet),
        ("FLOTILLA_SECURITY_GROUPS", group),
        ("FLOTILLA_ECS_CLUSTER_PREFIX", "flotilla-".to_owned()),
        (
            "FLOTILLA_EXECUTION_ROLE_ARN",
            "arn:aws:iam::123456789012:role/exec".to_owned(),
        ),
        ("FLOTILLA_AWS_ENDPOINT_URL", moto.endpoint.clone()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("FLOTILLA_RUN_TOKEN_KEY", "k".repeat(64)),
    ];
    let config =
        Config::from_lookup(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())).unwrap();
    let counter = RequestCounter::default();
    let clients = AwsClients::with_interceptor(&sdk, counter.clone());
    let app = Arc::new(build_app(&config, &clients, clock.clone()));
    let functions = (0..4)
        .map(|_| {
            let counter = RequestCounter::default();
            let clients = AwsClients::with_interceptor(&sdk, counter.clone());
            (
                Arc::new(build_app(&config, &clients, clock.clone())),
                counter,
            )
        })
        .collect();
    // The api function's app stops tasks and launches none, as its
    // bootstrap's.
    let api_function = {
        let counter = RequestCounter::default();
        let clients = AwsClients::with_interceptor(&sdk, counter.clone());
        (
            Arc::new(build_api_app(&config, &clients, clock.clone())),
            counter,
        )
    };
    Stack {
        _moto: moto,
        clock,
        clients: setup,
        app,
        counter,
        queue_url,
        observer_url,
        env: env.to_vec(),
        functions,
        api_function,
    }
}

/// One request through the api function's router.
async fn call(app: &Arc<App>, method: Method, path: &str, body: Value) -> (u16, Value) {
    call_with(app, method, path, body, &[]).await
}

/// [`call`] with request headers.
async fn call_with(
    app: &Arc<App>,
    method: Method,
    path: &str,
    body: Value,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Body::from(body.to_string())).unwrap();
    let response = shared::http::router(Arc::clone(app))
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// The record Lambda's event source mapping makes of an SQS message, from
/// the `events/sqs-batch.json` template.
fn sqs_record(template: &Value, m: &aws_sdk_sqs::types::Message) -> Value {
    let mut r = template["Records"][0].clone();
    r["messageId"] = json!(m.message_id().unwrap());
    r["receiptHandle"] = json!(m.receipt_handle().unwrap());
    r["body"] = json!(m.body().unwrap());
    r
}

/// Feeds the status handler an `events/` fixture made about a run's task.
async fn ecs_event(app: &App, fixture: &str, run_id: &str, attempt: u32, task_arn: &str) {
    let path = format!("{}/../events/{fixture}.json", env!("CARGO_MANIFEST_DIR"));
    let mut event: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    event["detail"]["group"] = json!(task_group(run_id, attempt));
    event["detail"]["taskArn"] = json!(task_arn);
    let event: EcsTaskStateChangeEvent = serde_json::from_value(event).unwrap();
    status::handle(app, event).await.unwrap();
}

impl Stack {
    /// moto's endpoint.
    fn moto_endpoint(&self) -> &str {
        &self._moto.endpoint
    }

    async fn call(&self, method: Method, path: &str, body: Value) -> (u16, Value) {
        call(&self.app, method, path, body).await
    }

    async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Value,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        call_with(&self.app, method, path, body, headers).await
    }

    async fn deliver_queue(&self, duplicate: bool) -> usize {
        self.deliver_queue_to(&self.app, duplicate).await
    }

    async fn ecs_event(&self, fixture: &str, run_id: &str, attempt: u32, task_arn: &str) {
        ecs_event(&self.app, fixture, run_id, attempt, task_arn).await;
    }

    /// What Lambda's event source mapping does: receive messages, hand them to
    /// submit as one batch (twice when `duplicate`), delete the ones it accepted.
    async fn deliver_queue_to(&self, app: &App, duplicate: bool) -> usize {
        let got = self
            .clients
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        let messages = got.messages().to_vec();
        let template: Value =
            serde_json::from_str(include_str!("../../events/sqs-batch.json")).unwrap();
        let records: Vec<Value> = messages.iter().map(|m| sqs_record(&template, m)).collect();
        let event: aws_lambda_events::sqs::SqsEvent =
            serde_json::from_value(json!({ "Records": records })).unwrap();
        for _ in 0..if duplicate { 2 } else { 1 } {
            let response = submit::handle(
                app,
                event.clone(),
                tokio::time::Instant::now() + std::time::Duration::from_secs(120),
            )
            .await;
            assert!(response.batch_item_failures.is_empty(), "{response:?}");
        }
        for m in &messages {
            self.clients
                .sqs
                .delete_message()
                .queue_url(&self.queue_url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
        messages.len()
    }

    async fn tasks(&self) -> Vec<String> {
        let out = self
            .clients
            .ecs
            .list_tasks()
            .cluster("flotilla-default")
            .send()
            .await
            .unwrap();
        out.task_arns().to_vec()
    }

    /// The run token ECS was given for a task (its container override).
    async fn run_token(&self, task_arn: &str) -> String {
        let described = self
            .clients
            .ecs
            .describe_tasks()
            .cluster("flotilla-default")
            .tasks(task_arn)
            .send()
            .await
            .unwrap();
        described.tasks()[0]
            .overrides()
            .unwrap()
            .container_overrides()[0]
            .environment()
            .iter()
            .find(|v| v.name() == Some("FLOTILLA_RUN_TOKEN"))
            .and_then(|v| v.value())
            .unwrap_or_else(|| panic!("every attempt is given its run token"))
            .to_owned()
    }

    /// Each run id and status the bus carried since the last look.
    async fn observed(&self) -> Vec<(String, String)> {
        self.observed_events()
            .await
            .into_iter()
            .map(|e| {
                (
                    e["detail"]["run_id"].as_str().unwrap().to_owned(),
                    e["detail"]["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// Every event the bus carried since the last look, whole.
    async fn observed_events(&self) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let got = self
                .clients
                .sqs
                .receive_message()
                .queue_url(&self.observer_url)
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap();
            if got.messages().is_empty() {
                return seen;
            }
            for m in got.messages() {
                seen.push(serde_json::from_str(m.body().unwrap()).unwrap());
                self.clients
                    .sqs
                    .delete_message()
                    .queue_url(&self.observer_url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }
}

#[tokio::test]
#[ignore = "needs moto: scripts/test installs it and runs these"]
async fn a_run_goes_from_the_api_through_sqs_ecs_and_eventbridge_to_stopped_with_its_logs() {
    let s = stack().await;
    let (status, def) = s
        .call(Method::POST, "/api/v6/task", json!({"alias": "hello", "group_name": "examples", "image": "ubuntu:latest", "memory": 512, "command": "echo hello"}))
        .await;
    assert_eq!(status, 200, "{def}");
    s.counter.reset();

    let (status, run) = s
        .call(
            Method::PUT,
            "/api/v6/task/alias/hello/execute",
            json!({"cluster": "default", "run_tags": {"owner_id": "me"}}),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["engine"], "ecs");
    let run_id = run["run_id"].as_str().unwrap().to_owned();
    let execute_requests = s.counter.requests().len();

    // Every SQS message delivered twice: one task.
    assert_eq!(s.deliver_queue(true).await, 1);
    let tasks = s.tasks().await;
    assert_eq!(tasks.len(), 1, "a redelivered message never launches twice");
    let task_arn = tasks[0].clone();
    let (_, pending) = s
        .call(
            Method::GET,
            &format!("/api/v6/history/{run_id}"),
            Value::Null,
        )
        .await;
    assert_eq!(pending["status"], "PENDING");

    // The run's ECS events, duplicated and out of order.
    for fixture in [
        "ecs-task-running",
        "ecs-task-pending",
        "ecs-task-stopped-exit-code",
        "ecs-task-running",
        "ecs-task-stopped-exit-code",
    ] {
        s.ecs_event(fixture, &run_id, 1, &task_arn).await;
    }
    let (_, done) = s
        .call(
            Method::GET,
            &format!("/api/v6/history/{run_id}"),
            Value::Null,
        )
        .await;
    assert_eq!(
        (done["status"].clone(), done["exit_code"].clone()),
        (json!("STOPPED"), json!(3)),
        "{done}"
    );
    let total_requests = s.counter.requests().len();
    let writes: Vec<_> = s
        .counter
        .requests()
        .into_iter()
        .filter(|(service, op)| {
            service.starts_with("DynamoDB")
                && ["TransactWriteItems", "PutItem", "UpdateItem", "DeleteItem"]
                    .contains(&op.as_str())
        })
        .collect();

    // Logs, from the task's CloudWatch stream.
    let stream = format!("flotilla/main/{}", task_arn.rsplit('/').next().unwrap());
    s.clients
        .logs
        .create_log_stream()
        .log_group_name("/flotilla/runs")
        .log_stream_name(&stream)
        .send()
        .await
        .unwrap();
    s.clients
        .logs
        .put_log_events()
        .log_group_name("/flotilla/runs")
        .log_stream_name(&stream)
        .log_events(
            aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                .message("hello")
                .timestamp(chrono::Utc::now().timestamp_millis())
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let (status, logs) = s
        .call(Method::GET, &format!("/api/v6/{run_id}/logs"), Value::Null)
        .await;
    assert_eq!(status, 200, "{logs}");
    assert_eq!(logs["log"], "hello\n");

    // Every state change reached the bus, once each.
    let statuses: Vec<String> = s
        .observed()
        .await
        .into_iter()
        .filter(|(id, _)| *id == run_id)
        .map(|(_, st)| st)
        .collect();
    assert_eq!(statuses, ["QUEUED", "PENDING", "RUNNING", "STOPPED"]);

    println!(
        "AWS requests for a first run with every message and event delivered twice: execute {execute_requests}, end to end {total_requests}; DynamoDB write requests {}",
        writes.len(),
    );
    assert_eq!(
        writes.len(),
        4,
        "one transaction per state change: queued, pending, running, stopped"
    );
    let link = done["log_url"].as_str().unwrap_or_default();
    assert!(
        link.starts_with("https://us-east-1.console.aws.amazon.com/cloudwatch/")
            && link.ends_with(task_arn.rsplit('/').next().unwrap()),
        "the run links to its log stream in the CloudWatch console: {done}"
    );
}

/// What one more successful run of a definition costs once its task
/// definition exists: each message and ECS event delivered once.
#[tokio::test]
#[ignore = "needs moto: scripts/test installs it and runs these"]
async fn a_successful_run_costs_a_bounded_number_of_aws_requests_and_write_units() {
    let s = stack().await;
    let (status, def) = s
        .call(Method::POST, "/api/v6/task", json!({"alias": "hello", "group_name": "examples", "image": "ubuntu:latest", "memory": 512, "command": "echo hello"}))
        .await;
    assert_eq!(status, 200, "{def}");
    let mut costs = Vec::new();
    for round in 1..=2 {
        s.counter.reset();
        let (status, run) = s
            .call(
                Method::PUT,
                "/api/v6/task/alias/hello/execute",
                json!({"cluster": "default", "run_tags": {"owner_id": "me"}}),
            )
            .await;
        assert_eq!(status, 200, "{run}");
        let run_id = run["run_id"].as_str().unwrap().to_owned();
        let execute = s.counter.requests().len();
        assert_eq!(s.deliver_queue(false).await, 1);
        let submit = s.counter.requests().len() - execute;
        let task_arn = s.tasks().await.last().unwrap().clone();
        for fixture in [
            "ecs-task-pending",
            "ecs-task-running",
            "ecs-task-stopped-exit-code",
        ] {
            s.ecs_event(fixture, &run_id, 1, &task_arn).await;
        }
        let requests = s.counter.requests().len();
        let status_requests = requests - execute - submit;
        let (writes, items, units) = s.counter.dynamodb_writes();
        let (_, done) = s
            .call(
                Method::GET,
                &format!("/api/v6/history/{run_id}"),
                Value::Null,
            )
            .await;
        assert_eq!(done["status"], "STOPPED", "{done}");
        println!(
            "run {round}: {requests} AWS requests (execute {execute}, submit {submit}, status {status_requests}); DynamoDB: {writes} write requests, {items} items, {units} write units; {:?}",
            s.counter.requests()
        );
        costs.push((requests, writes, items, units));
    }
    let (first, steady) = (costs[0], costs[1]);
    assert_eq!(
        (steady.1, steady.2),
        (4, 22),
        "a state change is one transaction of its event, the projection and the list counters it moves (four for a new run, two for a status change): queued, pending, running, stopped; the stop also holds the attempt's usage event and adds the run to its three daily leaderboard tallies"
    );
    assert!(
        steady.0 <= 18,
        "a run of a known definition on a named cluster costs at most 18 AWS requests: 6 to execute (read the definition, read the cluster registry, read its job's lessons, append, enqueue, publish), 5 to submit (read the run, read the cluster registry for its cap, RunTask, append, publish), 3 per state-changing ECS event and 1 per redundant one; it took {}",
        steady.0
    );
    assert!(
        first.0 <= steady.0 + 3,
        "registering a task definition costs a failed RunTask, the registration and one lookup of the queue URL at most: {} vs {}",
        first.0,
        steady.0
    );
}

#[tokio::test]
#[ignore = "needs moto: scripts/test installs it and runs these"]
async fn an_image_pull_failure_needs_a_retry_and_the_retry_tick_relaunches_it_as_attempt_two() {
    let s = stack().await;
    s.call(
        Method::POST,
        "/api/v6/task",
        json!({"alias": "pull", "image": "ubuntu:latst", "command": "true"}),
    )
    .await;
    let (_, run) = s
        .call(
            Method::PUT,
            "/api/v6/task/alias/pull/execute",
            json!({"run_tags": {"owner_id": "me"}}),
        )
        .await;
    let run_id = run["run_id"].as_str().unwrap().to_owned();
    s.deliver_queue(false).await;
    let first = s.tasks().await[0].clone();
    s.ecs_event("ecs-task-stopped-cannot-pull-container", &run_id, 1, &first)
        .await;
    let (_, failed) = s
        .call(
            Method::GET,
            &format!("/api/v6/history/{run_id}"),
            Value::Null,
        )
        .await;
    assert_eq!(failed["status"], "NEEDS_RETRY", "{failed}");

    let tick = retry::tick(&s.app, INTERVALS).await.unwrap();
    assert_eq!(tick.requeued, std::slice::from_ref(&run_id));
    let (_, requeued) = s
        .call(
            Method::GET,
            &format!("/api/v6/history/{run_id}"),
            Value::Null,
        )
        .await;
    assert_eq!(
        (
            requeued["status"].clone(),
            requeued["attempt_count"].clone()
        ),
        (json!("QUEUED"), json!(2))
    );

    assert_eq!(
        s.deliver_queue(false).await,
        1,
        "the retry enqueued attempt 2"
    );
    let tasks = s.tasks().await;
    assert_eq!(tasks.len(), 2, "attempt 2 is a new task");
    let second = tasks.into_iter().find(|t| *t != first).unwrap();
    let described = s
        .clients
        .ecs
        .describe_tasks()
        .cluster("flotilla-default")
        .tasks(&second)
        .send()
        .await
        .unwrap();
    assert_eq!(
        described.tasks()[0].group(),
        Some(task_group(&run_id, 2).as_str())
    );

    // A late event about attempt 1 changes nothing.
    s.ecs_event("ecs-task-stopped-exit-code", &run_id, 1, &first)
        .await;
    let (_, still) = s
        .call(
            Method::GET,
            &format!("/api/v6/history/{run_id}"),
            Value::Null,
        )
        .await;
    assert_eq!(still["status"], "PENDING");
}

#[test]
fn the_sample_trigger_payloads_deserialize() {
    let sqs: aws_lambda_events::sqs::SqsEvent =
        serde_json::from_str(include_str!("../../events/sqs-batch.json")).unwrap();
    let ticket =
        shared::adapters::sqs::parse_ticket(sqs.records[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(ticket.attempt, 1);
    let schedule: Value =
        serde_json::from_str(include_str!("../../events/scheduled-event.json")).unwrap();
    assert_eq!(schedule["detail-type"], "Scheduled Event");
}

/// A `flotilla serve --backend aws` child process, killed when dropped.
struct AwsServe(std::process::Child);

impl Drop for AwsServe {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
#[ignore = "needs moto: scripts/test installs it and runs these"]
async fn flotilla_serve_with_the_aws_backend_serves_the_api_over_dynamodb_and_sqs() {
    let s = stack().await;
    let port = flotilla_tests::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut command = std::process::Command::new(flotilla_tests::flotilla_bin());
    command
        .args(["serve", "--backend", "aws", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    for (name, value) in &s.env {
        command.env(name, value);
    }
    let _serve = AwsServe(command.spawn().unwrap());
    let http = flotilla_tests::http_client();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while http
        .get(format!("{base}/api/v6/health"))
        .send()
        .await
        .map(|r| !r.status().is_success())
        .unwrap_or(true)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "flotilla serve --backend aws did not answer within 30 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let created = http
        .post(format!("{base}/api/v6/task"))
        .body(json!({"alias": "remote", "group_name": "examples", "image": "ubuntu:latest", "command": "echo hi"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    let run: Value = http
        .put(format!("{base}/api/v6/task/alias/remote/execute"))
        .body(json!({"run_tags": {"owner_id": "me"}}).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (run["status"].as_str(), run["engine"].as_str()),
        (Some("QUEUED"), Some("ecs")),
        "{run}"
    );
    let run_id = run["run_id"].as_str().unwrap();

    // What it wrote is what the deployed functions read: the run is in the
    // table and its ticket is on the cluster's queue.
    let (status, stored) = s
        .call(
            Method::GET,
            &format!("/api/v6/history/{run_id}"),
            Value::Null,
        )
        .await;
    assert_eq!(
        (status, stored["status"].as_str()),
        (200, Some("QUEUED")),
        "{stored}"
    );
    let got = s
        .clients
        .sqs
        .receive_message()
        .queue_url(&s.queue_url)
        .send()
        .await
        .unwrap();
    assert!(
        got.messages()
            .iter()
            .any(|m| m.body().unwrap_or_default().contains(run_id)),
        "the run's ticket is on the queue: {got:?}"
    );
}

#[test]
fn flotilla_serve_with_the_aws_backend_names_the_missing_variable() {
    let out = std::process::Command::new(flotilla_tests::flotilla_bin())
        .args(["serve", "--backend", "aws", "--listen", "127.0.0.1:0"])
        .env_remove("FLOTILLA_TABLE")
        .env("FLOTILLA_SUBNETS", "subnet-1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("FLOTILLA_TABLE is not set"),
        "the error names the variable to set: {stderr}"
    );
}

#[tokio::test]
#[ignore = "needs moto: scripts/test installs it and runs these"]
async fn an_api_gateway_request_runs_through_the_api_functions_router() {
    let s = stack().await;
    let (status, def) = s
        .call(Method::POST, "/api/v6/task", json!({"alias": "hello", "group_name": "examples", "image": "ubuntu:latest", "command": "echo $DATE"}))
        .await;
    assert_eq!(status, 200, "{def}");
    // What lambda_http does with the event before the api function's router sees it.
    let request =
        lambda_http::request::from_str(include_str!("../../events/apigw-http-request.json"))
            .unwrap();
    let response = shared::http::router(Arc::clone(&s.app))
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let run: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(status, 200, "{run}");
    assert_eq!(
        (
            run["status"].as_str(),
            run["user"].as_str(),
            run["cluster"].as_str()
        ),
        (Some("QUEUED"), Some("ana"), Some("default")),
        "{run}"
    );
    assert!(
        run["env"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "DATE", "value": "2026-11-23"})),
        "{run}"
    );
}

/// An API Gateway event of `fixture` as the api function's router gets it,
/// with its method, path and body replaced and, for a JWT, its `email` claim.
fn gateway_request(
    fixture: &str,
    method: &str,
    path: &str,
    body: Value,
    email: Option<&str>,
) -> lambda_http::Request {
    let mut event: Value = serde_json::from_str(fixture).unwrap();
    event["rawPath"] = json!(path);
    event["requestContext"]["http"]["method"] = json!(method);
    event["requestContext"]["http"]["path"] = json!(path);
    event["body"] = json!(body.to_string());
    event["headers"]["content-length"] = json!(body.to_string().len().to_string());
    if let Some(email) = email {
        event["requestContext"]["authorizer"]["jwt"]["claims"]["email"] = json!(email);
    }
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

async fn answer_of(router: &axum::Router, request: lambda_http::Request) -> (u16, Value) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
#[ignore = "needs moto: scripts/test installs it and runs these"]
async fn the_callers_identity_comes_from_the_gateways_jwt_or_iam_context_and_owners_rules_apply() {
    let s = stack().await;
    let ops = "arn:aws:sts::123456789012:assumed-role/flotilla-ops/ops-session";
    let mut env = s.env.clone();
    env.push(("FLOTILLA_ADMINS", ops.to_owned()));
    let config =
        Config::from_lookup(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())).unwrap();
    let router = shared::lambda::api_router(Arc::clone(&s.app), &config);
    let jwt = include_str!("../../events/apigw-http-request-jwt.json");
    let iam = include_str!("../../events/apigw-http-request-iam.json");

    let (status, def) = answer_of(
        &router,
        gateway_request(
            jwt,
            "POST",
            "/api/v6/task",
            json!({"alias": "hello", "image": "ubuntu:latest", "command": "echo hi"}),
            None,
        ),
    )
    .await;
    assert_eq!(status, 200, "{def}");
    assert_eq!(def["created_by"], "ana@example.com", "{def}");
    let id = def["definition_id"].as_str().unwrap().to_owned();

    let (status, run) = answer_of(
        &router,
        gateway_request(
            jwt,
            "PUT",
            "/api/v6/task/alias/hello/execute",
            json!({}),
            None,
        ),
    )
    .await;
    assert_eq!(status, 200, "the JWT's email owns the run: {run}");
    assert_eq!(run["user"], "ana@example.com", "{run}");
    let run_id = run["run_id"].as_str().unwrap().to_owned();

    let (status, refused) = answer_of(
        &router,
        gateway_request(
            jwt,
            "PUT",
            "/api/v6/task/alias/hello/execute",
            json!({"run_tags": {"owner_id": "ana@example.com"}}),
            Some("bo@example.com"),
        ),
    )
    .await;
    assert_eq!(status, 403, "bo may not launch as ana: {refused}");

    let stop = format!("/api/v6/task/{id}/history/{run_id}");
    let (status, refused) = answer_of(
        &router,
        gateway_request(jwt, "DELETE", &stop, json!({}), Some("bo@example.com")),
    )
    .await;
    assert_eq!(status, 403, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap_or_default()
            .contains("belongs to ana@example.com"),
        "{refused}"
    );
    let (status, refused) = answer_of(
        &router,
        gateway_request(
            jwt,
            "PUT",
            &format!("/api/v6/task/{id}"),
            json!({"command": "echo bo"}),
            Some("bo@example.com"),
        ),
    )
    .await;
    assert_eq!(status, 403, "{refused}");

    let (status, run) = answer_of(
        &router,
        gateway_request(
            iam,
            "PUT",
            "/api/v6/task/alias/hello/execute",
            json!({}),
            None,
        ),
    )
    .await;
    assert_eq!(
        status, 200,
        "an IAM caller is named by their principal ARN: {run}"
    );
    assert_eq!(run["user"], ops, "{run}");
    let (status, stopped) = answer_of(
        &router,
        gateway_request(iam, "DELETE", &stop, json!({}), None),
    )
    .await;
    assert_eq!(
        status, 200,
        "an admin (FLOTILLA_ADMINS) may stop ana's run: {stopped}"
    );
}

#[tokio::test]
#[ignore = "needs moto: scripts/test installs it and runs these"]
async fn a_secret_reaches_ecs_by_reference_and_neither_it_nor_the_run_token_reaches_the_bus_or_any_answer()
 {
    let s = stack().await;
    let secret_arn = "arn:aws:ssm:us-east-1:123456789012:parameter/flotilla/team/api-key";
    let (status, def) = s
        .call(
            Method::POST,
            "/api/v6/task",
            json!({"alias": "with-secret", "group_name": "g", "image": "ubuntu:latest", "command": "run",
                   "secrets": [{"name": "API_KEY", "value_from": secret_arn}]}),
        )
        .await;
    assert_eq!(status, 200, "{def}");
    let definition_id = def["definition_id"].as_str().unwrap().to_owned();
    let (status, run) = s
        .call(
            Method::PUT,
            "/api/v6/task/alias/with-secret/execute",
            json!({"run_tags": {"owner_id": "ana"}}),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    let run_id = run["run_id"].as_str().unwrap().to_owned();
    assert_eq!(s.deliver_queue(false).await, 1);
    let task_arn = s.tasks().await[0].clone();

    // ECS gets the reference as the container's `secrets`; the task's plain
    // variables hold no API_KEY.
    let task = s
        .clients
        .ecs
        .describe_tasks()
        .cluster("flotilla-default")
        .tasks(&task_arn)
        .send()
        .await
        .unwrap();
    let task = &task.tasks()[0];
    let plain: Vec<&str> = task.overrides().unwrap().container_overrides()[0]
        .environment()
        .iter()
        .filter_map(|v| v.name())
        .collect();
    assert!(!plain.contains(&"API_KEY"), "{plain:?}");
    let family = s
        .clients
        .ecs
        .describe_task_definition()
        .task_definition(task.task_definition_arn().unwrap())
        .send()
        .await
        .unwrap();
    let secrets: Vec<(&str, &str)> = family.task_definition().unwrap().container_definitions()[0]
        .secrets()
        .iter()
        .map(|v| (v.name(), v.value_from()))
        .collect();
    assert_eq!(secrets, [("API_KEY", secret_arn)]);

    // The run reports its end with its token; then ECS reports it stopped.
    let token = s.run_token(&task_arn).await;
    s.ecs_event("ecs-task-running", &run_id, 1, &task_arn).await;
    let (status, answer) = s
        .call_with(
            Method::PUT,
            &format!("/api/v6/{run_id}/status"),
            json!({"status": "STOPPED", "exit_code": 0}),
            &[("x-flotilla-run-token", token.as_str())],
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    s.ecs_event("ecs-task-stopped-exit-code", &run_id, 1, &task_arn)
        .await;

    // Every answer about the run and its definition, and every event the
    // bus carried: the token nowhere, the secret on the bus not even by name.
    let mut seen = Vec::new();
    for path in [
        format!("/api/v6/history/{run_id}"),
        format!("/api/v6/task/{definition_id}/history/{run_id}"),
        format!("/api/v6/task/{definition_id}/history"),
        format!("/api/v6/task/{definition_id}"),
        format!("/api/v6/{run_id}/events"),
        format!("/api/v6/{run_id}/status"),
        "/api/v6/history".to_owned(),
        "/api/v6/task".to_owned(),
    ] {
        let (status, body) = s.call(Method::GET, &path, Value::Null).await;
        assert_eq!(status, 200, "{path}: {body}");
        seen.push((path, body.to_string()));
    }
    let events = s.observed_events().await;
    assert!(
        events.len() >= 4,
        "the bus carried the run's changes: {events:?}"
    );
    for event in &events {
        let text = event.to_string();
        assert!(
            !text.contains("API_KEY") && !text.contains(secret_arn),
            "the bus carries a run's state, none of its variables or secrets: {text}"
        );
        seen.push(("the bus".to_owned(), text));
    }
    for (place, text) in &seen {
        assert!(
            !text.contains(&token),
            "{place} carries the run token: {text}"
        );
    }
}
