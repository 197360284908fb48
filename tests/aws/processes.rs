//! The four function binaries (`api`, `submit`, `status`, `retry`) as Lambda
//! runs them: processes polling a Runtime API ([`runtime_api`], our own
//! emulator), configured by a stack that moto's CloudFormation created from
//! the translated template ([`stack`]), and again from the CDK construct's
//! synthesized template ([`super::cfn::cdk_synthesized`]), through one run's
//! whole life: an API
//! Gateway HTTP API event to `api` → DynamoDB → the cluster's SQS queue →
//! `submit` (ECS RunTask) → ECS task state changes, duplicated and out of
//! order, through the stack's EventBridge rule to `status` → STOPPED with the
//! exit code; the run's logs from CloudWatch Logs through `api`; every state
//! change on the stack's bus exactly once; a `retry` tick.
//!
//! Each process gets exactly the environment moto's Lambda holds for its
//! function (GetFunctionConfiguration, every value as a string), what Lambda
//! itself sets (`AWS_LAMBDA_RUNTIME_API`, `AWS_LAMBDA_FUNCTION_NAME`,
//! `_VERSION`, `_MEMORY_SIZE`, `AWS_LAMBDA_LOG_GROUP_NAME`, `_LOG_STREAM_NAME`,
//! `AWS_LAMBDA_LOG_FORMAT` and `_LOG_LEVEL` from its logging configuration,
//! `AWS_REGION`, `AWS_DEFAULT_REGION`, the role's credentials, `_HANDLER`,
//! `TZ`, `PATH`) and one addition: `FLOTILLA_AWS_ENDPOINT_URL`, moto's URL.
//!
//! What moto cannot take, and how the test stands in for it (each is also
//! printed when the test runs):
//!
//! 1. `Ref` of an `AWS::Events::EventBus` resolves to an internal object in
//!    moto; it is made `Fn::GetAtt <bus>.Name`, which is the same on AWS.
//! 2. moto's CloudFormation creates no `AWS::SecretsManager::Secret` and
//!    resolves no dynamic reference: `{{resolve:secretsmanager:${Secret}}}`
//!    is replaced by a generated value of the secret's `PasswordLength`.
//! 3. The translator points each function's code at an `s3://` placeholder
//!    (there is no build here): moto's Lambda needs that object, so a
//!    placeholder is put in moto's S3; the processes are the workspace's
//!    own binaries.
//! 4. moto's SQS hands messages of a queue with an event source mapping to
//!    moto's own Lambda: the mappings are disabled in moto, and the test
//!    polls each queue as Lambda's poller does, with the mapping's batch
//!    size, deleting what the function did not report as failed.
//! 5. moto's EventBridge cannot invoke a Lambda target: each rule's Lambda
//!    target is replaced by an SQS queue that the test drains into the
//!    function (so the rule's own pattern decides what reaches `status`);
//!    moto runs no schedule, so `retry` is invoked with
//!    `events/scheduled-event.json` as its schedule would.
//! 6. moto's Lambda keeps no `LoggingConfig`: the log format and level
//!    (`AWS_LAMBDA_LOG_FORMAT`, `AWS_LAMBDA_LOG_LEVEL`) are the template's.
//!
//! API Gateway (HTTP API, payload 2.0) is not emulated by moto's
//! CloudFormation either: the events are `events/apigw-http-request-iam.json`
//! with the method, path and body of each request, as the stack's IAM
//! authorizer passes them.
//!
//! Per function, the cold start (process spawned → its first
//! `GET /2018-06-01/runtime/invocation/next`) and memory (VmRSS, VmHWM from
//! `/proc/<pid>/status` after the flow) are printed, under a generous bound
//! only (the function's memory size, 30 s).
//!
//! The binaries come from `FLOTILLA_LAMBDA_BIN_DIR`, else the profile
//! directory beside this test's binary; scripts/test builds them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use shared::adapters::ecs_events::task_group;
use shared::lambda::AwsClients;
use shared::testing::moto::Moto;

use runtime_api::{InvocationError, RuntimeApi};
use stack::{Deployed, FunctionConfig, fail};

mod runtime_api;
pub mod stack;

/// The binaries, in the order they are started.
const BINARIES: [&str; 4] = ["api", "submit", "status", "retry"];
/// How long one invocation may take before the test gives up on it.
const INVOKE_BOUND: Duration = Duration::from_secs(60);
/// How long a process may take to first poll the Runtime API.
const COLD_START_BOUND: Duration = Duration::from_secs(30);

/// Where the function binaries are.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FLOTILLA_LAMBDA_BIN_DIR") {
        return PathBuf::from(dir);
    }
    // target/<profile>/deps/aws-<hash> → target/<profile>
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().and_then(Path::parent).map(Path::to_path_buf))
        .unwrap_or_default()
}

/// A function binary, or a failure saying how to build it.
fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    if !path.exists() {
        fail(
            "find the function binaries",
            format!(
                "{} does not exist: build them with `cargo build -p flotilla-api -p flotilla-submit -p flotilla-status -p flotilla-retry` (scripts/test does), or point FLOTILLA_LAMBDA_BIN_DIR at them",
                path.display()
            ),
        );
    }
    path
}

/// The ARN of the queue at `url`.
async fn queue_arn(clients: &AwsClients, url: &str) -> String {
    use aws_sdk_sqs::types::QueueAttributeName;
    clients
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .ok()
        .and_then(|a| a.attributes?.get(&QueueAttributeName::QueueArn).cloned())
        .unwrap_or_else(|| fail("read a queue's ARN", url))
}

/// One function's process.
struct LambdaProcess {
    config: FunctionConfig,
    child: tokio::process::Child,
    pid: u32,
    cold_start: Duration,
    output: PathBuf,
}

impl LambdaProcess {
    /// The end of what the process wrote (Lambda sends both streams to
    /// CloudWatch Logs; here they go to one file).
    fn output_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.output).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        format!("\n{} wrote, last:\n{tail}", self.config.binary)
    }

    /// `(VmRSS, VmHWM)` in kB.
    fn memory_kb(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .unwrap_or_else(|e| fail("read the processes' memory", e));
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or_else(|| fail("read the processes' memory", format!("no {name}")))
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

/// The processes and their Runtime API.
struct Functions {
    api: RuntimeApi,
    processes: BTreeMap<String, LambdaProcess>,
    /// The IAM-authorised API Gateway event every request is made from.
    gateway: Value,
}

/// The environment Lambda gives `f`'s process.
fn lambda_environment(f: &FunctionConfig, runtime_api: &str, moto: &Moto) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = f.env.clone().into_iter().collect();
    let lambda = [
        ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_owned()),
        ("AWS_LAMBDA_FUNCTION_NAME", f.name.clone()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", f.memory_mb.to_string()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{}", f.name),
        ),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/01/01/[$LATEST]0123456789abcdef0123456789abcdef".to_owned(),
        ),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_DEFAULT_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "ASIAPROCESSTEST".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "process-test".to_owned()),
        ("AWS_SESSION_TOKEN", "process-test".to_owned()),
        ("_HANDLER", "bootstrap".to_owned()),
        ("TZ", ":UTC".to_owned()),
        ("PATH", "/usr/local/bin:/usr/bin/:/bin:/opt/bin".to_owned()),
        // The only addition to what Lambda gives: where the AWS APIs are.
        ("FLOTILLA_AWS_ENDPOINT_URL", moto.endpoint.clone()),
    ];
    env.extend(lambda.map(|(k, v)| (k.to_owned(), v)));
    if let Some(format) = &f.log_format {
        env.push(("AWS_LAMBDA_LOG_FORMAT".to_owned(), format.clone()));
    }
    if let Some(level) = &f.log_level {
        env.push(("AWS_LAMBDA_LOG_LEVEL".to_owned(), level.clone()));
    }
    env
}

impl Functions {
    /// Starts each function's process, one at a time (so that one's cold
    /// start is not measured against another's), and waits for its first
    /// poll.
    async fn start(deployed: &Deployed, moto: &Moto, workdir: &Path) -> Self {
        let api = RuntimeApi::new();
        let mut processes = BTreeMap::new();
        for binary_name in BINARIES {
            let step = format!("start the {binary_name} function's process");
            let f = deployed.functions.get(binary_name).unwrap_or_else(|| {
                fail(
                    &step,
                    format!(
                        "no function of the stack is a build of {binary_name}: {:?}",
                        deployed.functions.keys()
                    ),
                )
            });
            let program = binary(binary_name);
            let endpoint = api
                .add(binary_name, &f.arn, f.timeout)
                .await
                .unwrap_or_else(|e| fail(&step, e));
            let output = workdir.join(format!("{binary_name}.log"));
            let file = std::fs::File::create(&output).unwrap_or_else(|e| fail(&step, e));
            let err = file.try_clone().unwrap_or_else(|e| fail(&step, e));
            let mut command = tokio::process::Command::new(&program);
            command
                .env_clear()
                .envs(lambda_environment(f, &endpoint, moto))
                .stdin(Stdio::null())
                .stdout(Stdio::from(file))
                .stderr(Stdio::from(err))
                .kill_on_drop(true);
            let spawned = Instant::now();
            let mut child = command
                .spawn()
                .unwrap_or_else(|e| fail(&step, format!("{}: {e}", program.display())));
            let pid = child.id().unwrap_or_default();
            let polled = tokio::select! {
                at = api.first_poll(binary_name, COLD_START_BOUND) => at,
                status = child.wait() => {
                    let text = std::fs::read_to_string(&output).unwrap_or_default();
                    fail(&step, format!("{} exited ({status:?}) before polling for work; init error reported: {:?}; it wrote:\n{text}", f.logical_id, api.init_error(binary_name)))
                }
            };
            let Some(polled) = polled else {
                fail(
                    &step,
                    format!("{} did not poll within {COLD_START_BOUND:?}", f.logical_id),
                )
            };
            processes.insert(
                binary_name.to_owned(),
                LambdaProcess {
                    config: f.clone(),
                    child,
                    pid,
                    cold_start: polled.duration_since(spawned),
                    output,
                },
            );
        }
        let fixture = format!(
            "{}/../events/apigw-http-request-iam.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let gateway = std::fs::read_to_string(fixture)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_else(|| fail("read events/apigw-http-request-iam.json", "unreadable"));
        Self {
            api,
            processes,
            gateway,
        }
    }

    fn process(&mut self, binary: &str) -> &mut LambdaProcess {
        self.processes
            .get_mut(binary)
            .unwrap_or_else(|| fail("find a process", binary))
    }

    /// One invocation; a process that exits meanwhile fails the step.
    async fn invoke(
        &mut self,
        binary: &str,
        step: &str,
        payload: &Value,
    ) -> Result<Value, InvocationError> {
        let Functions { api, processes, .. } = self;
        let p = processes
            .get_mut(binary)
            .unwrap_or_else(|| fail(step, format!("no {binary} process")));
        tokio::select! {
            outcome = api.invoke(binary, payload, INVOKE_BOUND) => outcome,
            status = p.child.wait() => {
                fail(step, format!("the {binary} process exited ({status:?}){}", p.output_tail()))
            }
        }
    }

    /// An invocation that must succeed.
    async fn answer(&mut self, binary: &str, step: &str, payload: &Value) -> Value {
        match self.invoke(binary, step, payload).await {
            Ok(answer) => answer,
            Err(e) => {
                let tail = self.process(binary).output_tail();
                fail(step, format!("{binary}: {e}{tail}"))
            }
        }
    }

    /// One API request, as API Gateway hands it to `api`: the status and
    /// the JSON body of the answer.
    async fn request(
        &mut self,
        step: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut event = self.gateway.clone();
        event["rawPath"] = json!(path);
        event["requestContext"]["http"]["method"] = json!(method);
        event["requestContext"]["http"]["path"] = json!(path);
        match &body {
            Some(body) => {
                let text = body.to_string();
                event["headers"]["content-length"] = json!(text.len().to_string());
                event["body"] = json!(text);
            }
            None => {
                if let Some(headers) = event["headers"].as_object_mut() {
                    headers.remove("content-length");
                    headers.remove("content-type");
                }
                if let Some(e) = event.as_object_mut() {
                    e.remove("body");
                }
            }
        }
        let answer = self.answer("api", step, &event).await;
        let status = answer["statusCode"]
            .as_u64()
            .unwrap_or_else(|| fail(step, format!("not an API Gateway v2 answer: {answer}")));
        if answer["isBase64Encoded"] == true {
            fail(step, format!("a JSON answer came base64-encoded: {answer}"));
        }
        let text = answer["body"].as_str().unwrap_or_default();
        let body = serde_json::from_str(text).unwrap_or_else(|_| json!(text));
        (status as u16, body)
    }
}

/// What an SQS event source mapping does with one batch: receive up to the
/// batch size (waiting for the first message), hand the records to the
/// function `deliveries` times (a redelivery), delete those it did not
/// report as failed. Returns the message bodies delivered.
async fn poll_queue(
    functions: &mut Functions,
    clients: &AwsClients,
    mapping: &stack::Mapping,
    binary: &str,
    deliveries: usize,
) -> Vec<String> {
    use aws_sdk_sqs::types::MessageSystemAttributeName;
    let step = format!("deliver the queue {} to {binary}", mapping.queue_arn);
    let name = mapping.queue_arn.rsplit(':').next().unwrap_or_default();
    let url = clients
        .sqs
        .get_queue_url()
        .queue_name(name)
        .send()
        .await
        .ok()
        .and_then(|q| q.queue_url)
        .unwrap_or_else(|| fail(&step, "no such queue"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let messages = loop {
        let got = clients
            .sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(mapping.batch_size.min(10) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap_or_else(|e| fail(&step, aws_sdk_sqs::error::DisplayErrorContext(&e)));
        if !got.messages().is_empty() {
            break got.messages().to_vec();
        }
        if Instant::now() > deadline {
            fail(&step, "no message arrived within 20 s");
        }
    };
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: BTreeMap<String, String> = m
                .attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": mapping.queue_arn,
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    let event = json!({ "Records": records });
    let mut failed = std::collections::BTreeSet::new();
    for _ in 0..deliveries {
        let answer = functions.answer(binary, &step, &event).await;
        if !mapping.reports_item_failures {
            continue;
        }
        for item in answer["batchItemFailures"].as_array().into_iter().flatten() {
            failed.insert(
                item["itemIdentifier"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
    }
    assert!(
        failed.is_empty(),
        "step \"{step}\": {binary} reported {failed:?} as failed{}",
        functions.process(binary).output_tail()
    );
    for m in messages
        .iter()
        .filter(|m| !failed.contains(m.message_id().unwrap_or_default()))
    {
        clients
            .sqs
            .delete_message()
            .queue_url(&url)
            .receipt_handle(m.receipt_handle().unwrap_or_default())
            .send()
            .await
            .unwrap_or_else(|e| fail(&step, aws_sdk_sqs::error::DisplayErrorContext(&e)));
    }
    messages
        .iter()
        .map(|m| m.body().unwrap_or_default().to_owned())
        .collect()
}

/// Waits for one message on `url` and deletes it: its body.
async fn next_message(clients: &AwsClients, url: &str, step: &str) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let got = clients
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(1)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap_or_else(|e| fail(step, aws_sdk_sqs::error::DisplayErrorContext(&e)));
        if let Some(m) = got.messages().first() {
            clients
                .sqs
                .delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await
                .unwrap_or_else(|e| fail(step, aws_sdk_sqs::error::DisplayErrorContext(&e)));
            return Some(m.body().unwrap_or_default().to_owned());
        }
    }
    None
}

/// Every message on `url` now, deleted: their bodies.
async fn drain(clients: &AwsClients, url: &str, step: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let got = clients
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap_or_else(|e| fail(step, aws_sdk_sqs::error::DisplayErrorContext(&e)));
        if got.messages().is_empty() {
            return seen;
        }
        for m in got.messages() {
            seen.push(serde_json::from_str(m.body().unwrap_or_default()).unwrap_or(Value::Null));
            clients
                .sqs
                .delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await
                .unwrap_or_else(|e| fail(step, aws_sdk_sqs::error::DisplayErrorContext(&e)));
        }
    }
}

/// Every RFC 3339 time in `value` moved by `by`.
fn shift_times(value: &mut Value, by: chrono::Duration) {
    match value {
        Value::String(s) => {
            if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                *s = (t.to_utc() + by).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| shift_times(v, by)),
        Value::Object(map) => map.values_mut().for_each(|v| shift_times(v, by)),
        _ => {}
    }
}

/// The task ECS ran for the run: what its state change events carry.
struct Task {
    arn: String,
    cluster_arn: String,
    group: String,
    started_by: String,
}

/// An `events/` ECS fixture made about `task`, its times moved to follow
/// `queued_at` (the app's clock) as the fixtures follow their own run.
fn ecs_fixture(fixture: &str, task: &Task, queued_at: DateTime<Utc>) -> Value {
    let path = format!("{}/../events/{fixture}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| fail("read an ECS fixture", e));
    let mut event: Value = serde_json::from_str(&text).unwrap_or_else(|e| fail(&path, e));
    let (old_task, old_cluster) = (
        event["detail"]["taskArn"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        event["detail"]["clusterArn"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    );
    let text = event
        .to_string()
        .replace(&old_task, &task.arn)
        .replace(&old_cluster, &task.cluster_arn);
    event = serde_json::from_str(&text).unwrap_or_else(|e| fail(&path, e));
    event["detail"]["group"] = json!(task.group);
    event["detail"]["startedBy"] = json!(task.started_by);
    let created = event["detail"]["createdAt"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .unwrap_or_else(|| fail(&path, "no detail.createdAt"));
    let by = queued_at + chrono::Duration::seconds(1) - created.to_utc();
    shift_times(&mut event, by);
    event
}

#[tokio::test]
#[ignore = "needs moto: scripts/test installs it and runs these"]
async fn the_four_function_binaries_run_a_job_to_stopped_as_lambda_processes_on_a_stack_from_the_template()
 {
    let workdir = tempfile::tempdir().unwrap_or_else(|e| fail("make a work directory", e));
    let parameters = super::cfn::parameter_set(super::cdk::CHECKED);
    let template = super::cfn::sam_translated(&parameters, workdir.path());
    let moto = Moto::start();
    a_job_runs_to_stopped_on(&moto, workdir.path(), template, "flotilla-procs").await;
}

#[tokio::test]
#[ignore = "needs moto and the CDK app: scripts/test installs both and runs these"]
async fn the_four_function_binaries_run_a_job_to_stopped_as_lambda_processes_on_a_stack_from_the_cdk_construct()
 {
    let workdir = tempfile::tempdir().unwrap_or_else(|e| fail("make a work directory", e));
    let moto = Moto::start();
    // The construct takes the network as CDK objects: moto's default one.
    let (subnet, group) = moto.default_network();
    let parameters = workdir.path().join("parameters.json");
    let values = json!({
        "Clusters": stack::TRANSLATED_CLUSTERS,
        "Subnets": subnet,
        "SecurityGroups": group,
    });
    std::fs::write(&parameters, values.to_string())
        .unwrap_or_else(|e| fail("write the CDK app's parameters", e));
    let template = super::cfn::cdk_synthesized(&parameters, &[], workdir.path());
    a_job_runs_to_stopped_on(&moto, workdir.path(), template, "flotilla-cdk-procs").await;
}

/// The whole flow of one run on a stack made in moto from `template`.
async fn a_job_runs_to_stopped_on(moto: &Moto, workdir: &Path, template: Value, name: &str) {
    let started = Instant::now();
    for name in BINARIES {
        binary(name);
    }
    let sdk = moto.sdk_config().await;
    let clients = AwsClients::new(&sdk);
    let cfn = aws_sdk_cloudformation::Client::new(&sdk);
    let deployed = stack::create(moto, &clients, &cfn, template, name).await;
    println!("stack {} created in moto; adapted for moto:", deployed.name);
    for adaptation in &deployed.adaptations {
        println!("  - {adaptation}");
    }
    println!(
        "  (resources without a physical id in moto, most of them not emulated: {:?})",
        deployed.unsupported
    );
    let mut fx = Functions::start(&deployed, moto, workdir).await;
    let env = deployed.functions["api"].env.clone();
    let var = |name: &str| {
        env.get(name)
            .cloned()
            .unwrap_or_else(|| fail("read the api function's environment", format!("no {name}")))
    };

    // An observer of the stack's bus.
    let step = "subscribe a queue to the stack's bus";
    let bus = var("FLOTILLA_EVENT_BUS");
    let observer = clients
        .sqs
        .create_queue()
        .queue_name("process-test-observer")
        .send()
        .await
        .ok()
        .and_then(|q| q.queue_url)
        .unwrap_or_else(|| fail(step, "no queue"));
    let observer_arn = queue_arn(&clients, &observer).await;
    clients
        .events
        .put_rule()
        .name("process-test-observer")
        .event_bus_name(&bus)
        .event_pattern(json!({"source": [shared::adapters::eventbridge::SOURCE]}).to_string())
        .send()
        .await
        .unwrap_or_else(|e| {
            fail(
                step,
                format!(
                    "bus {bus}: {}",
                    aws_sdk_eventbridge::error::DisplayErrorContext(&e)
                ),
            )
        });
    clients
        .events
        .put_targets()
        .rule("process-test-observer")
        .event_bus_name(&bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("observer")
                .arn(observer_arn)
                .build()
                .unwrap_or_else(|e| fail(step, e)),
        )
        .send()
        .await
        .unwrap_or_else(|e| fail(step, aws_sdk_eventbridge::error::DisplayErrorContext(&e)));

    // api: a definition, then a run of it.
    let step = "create a definition through api";
    let (code, def) = fx
        .request(
            step,
            "POST",
            "/api/v6/task",
            Some(json!({"alias": "procs", "group_name": "examples", "image": "ubuntu:latest", "memory": 512, "command": "echo hello"})),
        )
        .await;
    assert_eq!(code, 200, "step \"{step}\": {def}");
    let step = "execute the definition through api";
    let (code, run) = fx
        .request(
            step,
            "PUT",
            "/api/v6/task/alias/procs/execute",
            Some(json!({})),
        )
        .await;
    assert_eq!(code, 200, "step \"{step}\": {run}");
    let caller = fx.gateway["requestContext"]["authorizer"]["iam"]["userArn"].clone();
    assert_eq!(
        (run["status"].as_str(), &run["user"]),
        (Some("QUEUED"), &caller),
        "step \"{step}\": the run is queued, owned by the IAM caller API Gateway named: {run}"
    );
    let run_id = run["run_id"].as_str().unwrap_or_default().to_owned();
    let queued_at: DateTime<Utc> = serde_json::from_value(run["queued_at"].clone())
        .unwrap_or_else(|e| fail(step, format!("queued_at: {e}: {run}")));

    // SQS → submit, the batch delivered twice.
    let step = "poll the default cluster's queue into submit";
    let default_queue = format!(
        "{}{}",
        var("FLOTILLA_QUEUE_PREFIX"),
        var("FLOTILLA_DEFAULT_CLUSTER")
    );
    let submit_arn = deployed.functions["submit"].arn.clone();
    let mapping = deployed
        .mappings
        .iter()
        .find(|m| {
            m.queue_arn.ends_with(&format!(":{default_queue}")) && m.function_arn == submit_arn
        })
        .unwrap_or_else(|| {
            fail(
                step,
                format!(
                    "no event source mapping feeds {default_queue} to submit: {:?}",
                    deployed.mappings
                ),
            )
        })
        .clone();
    let bodies = poll_queue(&mut fx, &clients, &mapping, "submit", 2).await;
    assert_eq!(bodies.len(), 1, "step \"{step}\": one ticket: {bodies:?}");
    assert!(bodies[0].contains(&run_id), "step \"{step}\": {bodies:?}");

    let step = "find the task submit started";
    let cluster = format!(
        "{}{}",
        var("FLOTILLA_ECS_CLUSTER_PREFIX"),
        var("FLOTILLA_DEFAULT_CLUSTER")
    );
    let listed = clients
        .ecs
        .list_tasks()
        .cluster(&cluster)
        .send()
        .await
        .unwrap_or_else(|e| {
            fail(
                step,
                format!(
                    "cluster {cluster}: {}",
                    aws_sdk_ecs::error::DisplayErrorContext(&e)
                ),
            )
        });
    assert_eq!(
        listed.task_arns().len(),
        1,
        "step \"{step}\": a redelivered ticket never launches twice: {:?}",
        listed.task_arns()
    );
    let described = clients
        .ecs
        .describe_tasks()
        .cluster(&cluster)
        .tasks(&listed.task_arns()[0])
        .send()
        .await
        .unwrap_or_else(|e| fail(step, aws_sdk_ecs::error::DisplayErrorContext(&e)));
    let t = described
        .tasks()
        .first()
        .unwrap_or_else(|| fail(step, "DescribeTasks found no task"));
    let task = Task {
        arn: t.task_arn().unwrap_or_default().to_owned(),
        cluster_arn: t.cluster_arn().unwrap_or_default().to_owned(),
        group: t.group().unwrap_or_default().to_owned(),
        started_by: t.started_by().unwrap_or_default().to_owned(),
    };
    assert_eq!(
        task.group,
        task_group(&run_id, 1),
        "step \"{step}\": the task names its run"
    );
    let step = "read the run after submit";
    let path = format!("/api/v6/history/{run_id}");
    let (_, pending) = fx.request(step, "GET", &path, None).await;
    assert_eq!(
        (pending["status"].as_str(), pending["task_id"].as_str()),
        (Some("PENDING"), Some(task.arn.as_str())),
        "step \"{step}\": {pending}"
    );

    // ECS → the stack's rule → status: each event twice, a late PENDING
    // after RUNNING, a STOPPED before RUNNING's copy.
    let status_queue = deployed
        .rule_queues
        .get("status")
        .and_then(|q| q.first())
        .cloned()
        .unwrap_or_else(|| {
            fail(
                "route ECS events to status",
                "no EventBridge rule of the stack with an event pattern targets the status function",
            )
        });
    for fixture in [
        "ecs-task-running",
        "ecs-task-pending",
        "ecs-task-stopped-exit-code",
        "ecs-task-running",
        "ecs-task-stopped-exit-code",
        "ecs-task-pending",
    ] {
        let step = format!("put {fixture} on the default bus and deliver it to status");
        let event = ecs_fixture(fixture, &task, queued_at);
        let time = event["time"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| aws_sdk_eventbridge::primitives::DateTime::from_millis(t.timestamp_millis()));
        let resources: Vec<String> = event["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str().map(str::to_owned))
            .collect();
        let put = clients
            .events
            .put_events()
            .entries(
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .source(event["source"].as_str().unwrap_or_default())
                    .detail_type(event["detail-type"].as_str().unwrap_or_default())
                    .detail(event["detail"].to_string())
                    .set_resources(Some(resources))
                    .set_time(time)
                    .build(),
            )
            .send()
            .await
            .unwrap_or_else(|e| {
                fail(
                    &step,
                    format!(
                        "{}{}",
                        aws_sdk_eventbridge::error::DisplayErrorContext(&e),
                        stack::moto_log_tail(moto)
                    ),
                )
            });
        assert_eq!(put.failed_entry_count(), 0, "step \"{step}\": {put:?}");
        let delivered = next_message(&clients, &status_queue, &step)
            .await
            .unwrap_or_else(|| {
                fail(
                    &step,
                    format!(
                        "the stack's status rule did not pass the event (startedBy {}, clusterArn {})",
                        task.started_by, task.cluster_arn
                    ),
                )
            });
        let payload: Value = serde_json::from_str(&delivered).unwrap_or_else(|e| fail(&step, e));
        let answer = fx.answer("status", &step, &payload).await;
        assert_eq!(
            answer,
            Value::Null,
            "step \"{step}\": status answers nothing"
        );
    }
    let step = "read the run after the ECS events";
    let (_, done) = fx.request(step, "GET", &path, None).await;
    assert_eq!(
        (done["status"].as_str(), done["exit_code"].as_i64()),
        (Some("STOPPED"), Some(3)),
        "step \"{step}\": {done}"
    );

    // The run's logs, where ECS's awslogs driver writes them.
    let step = "put the task's output in CloudWatch Logs";
    let group = var("FLOTILLA_LOG_GROUP");
    let stream = shared::adapters::cloudwatch::stream_of_task(&task.arn)
        .unwrap_or_else(|| fail(step, format!("no stream for {}", task.arn)));
    let logged_at: DateTime<Utc> =
        serde_json::from_value(done["started_at"].clone()).unwrap_or(queued_at);
    clients
        .logs
        .create_log_stream()
        .log_group_name(&group)
        .log_stream_name(&stream)
        .send()
        .await
        .unwrap_or_else(|e| {
            fail(
                step,
                format!(
                    "{group}/{stream}: {}",
                    aws_sdk_cloudwatchlogs::error::DisplayErrorContext(&e)
                ),
            )
        });
    clients
        .logs
        .put_log_events()
        .log_group_name(&group)
        .log_stream_name(&stream)
        .log_events(
            aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                .message("hello")
                .timestamp(logged_at.timestamp_millis())
                .build()
                .unwrap_or_else(|e| fail(step, e)),
        )
        .send()
        .await
        .unwrap_or_else(|e| fail(step, aws_sdk_cloudwatchlogs::error::DisplayErrorContext(&e)));
    let step = "read the run's logs through api";
    let (code, logs) = fx
        .request(step, "GET", &format!("/api/v6/{run_id}/logs"), None)
        .await;
    assert_eq!(
        (code, logs["log"].as_str()),
        (200, Some("hello\n")),
        "step \"{step}\": {logs}"
    );

    // retry: one scheduled tick, with nothing left to do.
    let step = "invoke retry with a scheduled event";
    let tick: Value = serde_json::from_str(include_str!("../../events/scheduled-event.json"))
        .unwrap_or_else(|e| fail(step, e));
    let swept = fx.answer("retry", step, &tick).await;
    assert_eq!(
        swept,
        json!({
            "requeued": [], "gave_up": [], "reenqueued": [], "reconciled": [],
            "lost": [], "timed_out": [], "running_long": [], "scheduled": [], "schedule_refused": [], "slots_repaired": [], "failed": [],
            "pods_recorded": 0, "logs_archived": 0
        }),
        "step \"{step}\": a stopped run needs nothing"
    );

    // The bus: each change of the run once.
    let step = "read what the stack's bus carried";
    let mut changes: BTreeMap<String, usize> = BTreeMap::new();
    for event in drain(&clients, &observer, step).await {
        if event["detail"]["run_id"] == json!(run_id) {
            let status = event["detail"]["status"].as_str().unwrap_or_default();
            *changes.entry(status.to_owned()).or_default() += 1;
        }
    }
    let once: BTreeMap<String, usize> = ["QUEUED", "PENDING", "RUNNING", "STOPPED"]
        .map(|s| (s.to_owned(), 1))
        .into();
    assert_eq!(
        changes, once,
        "step \"{step}\": every state change exactly once"
    );

    // The processes: still serving, and what they cost.
    println!("function  cold start  VmRSS     VmHWM     (memory size)");
    for (name, p) in &mut fx.processes {
        assert!(
            matches!(p.child.try_wait(), Ok(None)),
            "{name} is still running after the flow{}",
            p.output_tail()
        );
        let (rss, hwm) = p.memory_kb();
        println!(
            "{name:<9} {:>7.1} ms  {:>6} kB  {:>6} kB  ({} MB)",
            p.cold_start.as_secs_f64() * 1000.0,
            rss,
            hwm,
            p.config.memory_mb
        );
        assert!(
            p.cold_start < COLD_START_BOUND,
            "{name}: cold start {:?}",
            p.cold_start
        );
        assert!(
            hwm < p.config.memory_mb * 1024,
            "{name}: peak RSS {hwm} kB is over the function's {} MB",
            p.config.memory_mb
        );
    }
    println!("the whole test took {:?}", started.elapsed());
}
