//! The SAM template against the code: every variable a function's `Config`
//! needs is set on it, every AWS action its code calls (measured on moto, one
//! request counter per function) is allowed by its policy and nothing more,
//! and the table, queues, ECS clusters and EventBridge rule match what the
//! adapters use. Then what keeps a deployment running: the checks made before
//! CloudFormation changes anything, dead-letter queues and their alarms, the
//! functions' alarms, logs and limits.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::Method;
use serde_json::{Value, json};
use shared::adapters::dynamo::{TableLayout, keys};
use shared::lambda::{config, retry};

use super::{INTERVALS, call, ecs_event, stack};

const FUNCTIONS: [&str; 4] = [
    "ApiFunction",
    "SubmitFunction",
    "StatusFunction",
    "RetryFunction",
];

/// The template as JSON, short-form intrinsics (`!Ref`, `!Sub`…) turned into
/// their long form (`{"Ref": …}`, `{"Fn::Sub": …}`).
fn template() -> Value {
    let path = format!("{}/../infra/template.yaml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let yaml: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    to_json(yaml)
}

fn to_json(value: serde_norway::Value) -> Value {
    use serde_norway::Value as Y;
    match value {
        Y::Null => Value::Null,
        Y::Bool(b) => json!(b),
        Y::Number(n) => serde_json::to_value(n).unwrap(),
        Y::String(s) => json!(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(to_json).collect()),
        Y::Mapping(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k.as_str().unwrap().to_owned(), to_json(v)))
                .collect(),
        ),
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let inner = to_json(tagged.value);
            let key = if name == "Ref" {
                "Ref".to_owned()
            } else {
                format!("Fn::{name}")
            };
            // `!GetAtt A.B` is the string form of `Fn::GetAtt: [A, B]`.
            let inner = match (name, &inner) {
                ("GetAtt", Value::String(s)) => {
                    let (a, b) = s.split_once('.').unwrap();
                    json!([a, b])
                }
                _ => inner,
            };
            json!({ key: inner })
        }
    }
}

/// The per-cluster resources, from the template's `Fn::ForEach` fragment.
fn per_cluster(t: &Value) -> &serde_json::Map<String, Value> {
    t["Resources"]["Fn::ForEach::PerCluster"][2]
        .as_object()
        .unwrap()
}

/// A function's environment: the Globals, then its own.
fn environment(t: &Value, function: &str) -> BTreeMap<String, Value> {
    let mut vars: BTreeMap<String, Value> = t["Globals"]["Function"]["Environment"]["Variables"]
        .as_object()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .collect();
    if let Some(own) =
        t["Resources"][function]["Properties"]["Environment"]["Variables"].as_object()
    {
        vars.extend(own.clone());
    }
    vars
}

/// Every action a function's inline policy statements allow.
fn allowed_actions(t: &Value, function: &str) -> BTreeSet<String> {
    let mut actions = BTreeSet::new();
    for policy in t["Resources"][function]["Properties"]["Policies"]
        .as_array()
        .unwrap()
    {
        for statement in policy["Statement"].as_array().unwrap() {
            assert_eq!(statement["Effect"], "Allow");
            match &statement["Action"] {
                Value::String(a) => {
                    actions.insert(a.clone());
                }
                Value::Array(list) => {
                    actions.extend(list.iter().map(|a| a.as_str().unwrap().to_owned()));
                }
                other => panic!("{function}: unexpected Action {other}"),
            }
        }
    }
    actions
}

/// The template's resources with every `Fn::ForEach` expanded as
/// AWS::LanguageExtensions does, its `Clusters` being `clusters`.
fn expanded_resources(t: &Value, clusters: &[&str]) -> serde_json::Map<String, Value> {
    expand_for_each(t["Resources"].as_object().unwrap(), clusters)
}

fn expand_for_each(
    section: &serde_json::Map<String, Value>,
    clusters: &[&str],
) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    for (key, value) in section {
        if !key.starts_with("Fn::ForEach::") {
            out.insert(key.clone(), value.clone());
            continue;
        }
        let identifier = value[0].as_str().unwrap();
        let names: Vec<String> = match &value[1] {
            Value::Array(names) => names
                .iter()
                .map(|n| n.as_str().unwrap().to_owned())
                .collect(),
            collection => {
                assert_eq!(collection, &json!({"Ref": "Clusters"}), "{key}");
                clusters.iter().map(|c| (*c).to_owned()).collect()
            }
        };
        for name in names {
            let fragment = substitute(&value[2], identifier, &name);
            for (k, v) in expand_for_each(fragment.as_object().unwrap(), clusters) {
                assert!(out.insert(k.clone(), v).is_none(), "{key} makes {k} twice");
            }
        }
    }
    out
}

/// `value` with a loop's identifier replaced by `name`; `Ref` and `GetAtt`
/// of a logical id made with `Fn::Sub` then become plain ones.
fn substitute(value: &Value, identifier: &str, name: &str) -> Value {
    let alnum: String = name.chars().filter(char::is_ascii_alphanumeric).collect();
    let text = |s: &str| {
        s.replace(&format!("&{{{identifier}}}"), &alnum)
            .replace(&format!("${{{identifier}}}"), name)
    };
    let plain_sub = |v: &Value| match v.as_object() {
        Some(m) if m.len() == 1 => m
            .get("Fn::Sub")
            .and_then(Value::as_str)
            .filter(|s| !s.contains("${"))
            .map(str::to_owned),
        _ => None,
    };
    match value {
        Value::Object(map) if map.len() == 1 && map.get("Ref") == Some(&json!(identifier)) => {
            json!(name)
        }
        Value::Object(map) => {
            let mut out: serde_json::Map<String, Value> = map
                .iter()
                .map(|(k, v)| (text(k), substitute(v, identifier, name)))
                .collect();
            if let Some(id) = out.get("Ref").and_then(plain_sub) {
                out.insert("Ref".to_owned(), json!(id));
            }
            if let Some(Value::Array(target)) = out.get("Fn::GetAtt")
                && let Some(id) = plain_sub(&target[0])
            {
                let attribute = target[1].clone();
                out.insert("Fn::GetAtt".to_owned(), json!([id, attribute]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| substitute(v, identifier, name))
                .collect(),
        ),
        Value::String(s) => json!(text(s)),
        other => other.clone(),
    }
}

/// The few intrinsics a deploy-time value is made of, evaluated with the
/// pseudo parameters given.
fn evaluate(expression: &Value, pseudo: &BTreeMap<&str, &str>) -> String {
    if let Some(s) = expression.as_str() {
        return s.to_owned();
    }
    let (function, args) = expression.as_object().unwrap().iter().next().unwrap();
    match function.as_str() {
        "Ref" => pseudo[args.as_str().unwrap()].to_owned(),
        "Fn::Select" => {
            let index = usize::try_from(args[0].as_u64().unwrap()).unwrap();
            let list = &args[1];
            assert!(list.get("Fn::Split").is_some(), "Select of a Split: {list}");
            let split = &list["Fn::Split"];
            let whole = evaluate(&split[1], pseudo);
            whole
                .split(split[0].as_str().unwrap())
                .nth(index)
                .unwrap()
                .to_owned()
        }
        other => panic!("cannot evaluate {other}"),
    }
}

/// The alarm actions every alarm has: the topic, when there is one.
fn alarm_actions() -> Value {
    json!({"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]})
}

/// The alarm of `resources` on `metric` of `namespace` whose dimension
/// `dimension` is `value`, if any.
fn alarm_on<'a>(
    resources: &'a serde_json::Map<String, Value>,
    namespace: &str,
    metric: &str,
    dimension: &str,
    value: &Value,
) -> Option<&'a Value> {
    resources.values().find(|r| {
        let p = &r["Properties"];
        r["Type"] == "AWS::CloudWatch::Alarm"
            && p["Namespace"] == namespace
            && p["MetricName"] == metric
            && p["Dimensions"] == json!([{"Name": dimension, "Value": value}])
    })
}

/// An alarm fires as soon as one is counted, notifies the topic if any
/// both ways, and a period without data is no alarm.
fn assert_fires_on_the_first(alarm: &Value, what: &str) {
    let p = &alarm["Properties"];
    assert_eq!(p["Threshold"], 0, "{what}");
    assert_eq!(p["ComparisonOperator"], "GreaterThanThreshold", "{what}");
    assert_eq!(p["EvaluationPeriods"], 1, "{what}");
    assert_eq!(p["TreatMissingData"], "notBreaching", "{what}");
    assert_eq!(p["AlarmActions"], alarm_actions(), "{what}");
    assert_eq!(p["OKActions"], alarm_actions(), "{what}");
}

/// The status rule: the event of the status function SAM makes it from.
fn status_rule(t: &Value) -> &Value {
    let rule = &t["Resources"]["StatusFunction"]["Properties"]["Events"]["TaskStateChange"];
    assert_eq!(rule["Type"], "EventBridgeRule");
    &rule["Properties"]
}

/// `function` (as `what` names it) sets exactly the variables its
/// configuration reads: the required ones, and every other but those Lambda
/// sets and the emulators' endpoint override.
pub fn assert_sets_what_the_config_reads<'a>(
    what: &str,
    set: impl IntoIterator<Item = &'a String>,
) {
    let set: BTreeSet<&str> = set.into_iter().map(String::as_str).collect();
    for name in config::REQUIRED {
        assert!(set.contains(name), "{what} lacks the required {name}");
    }
    for name in &set {
        assert!(
            config::ALL.contains(name),
            "{what} sets {name}, which no code reads"
        );
    }
    for name in config::ALL {
        if !config::SET_BY_LAMBDA.contains(&name) && name != config::AWS_ENDPOINT_URL {
            assert!(
                set.contains(name),
                "{what} leaves {name} to its default: set it from the template"
            );
        }
    }
}

#[test]
fn every_function_gets_every_variable_its_config_reads() {
    let t = template();
    for function in FUNCTIONS {
        assert_sets_what_the_config_reads(function, environment(&t, function).keys());
    }
}

#[test]
fn the_readmes_variable_table_names_every_variable_the_functions_read() {
    let path = format!("{}/../README.md", env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(&path).unwrap();
    let start = readme
        .find("The functions read:")
        .expect("the README has the functions' variable table");
    let table: Vec<&str> = readme[start..]
        .lines()
        .skip(1)
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| l.starts_with('|'))
        .collect();
    let named: Vec<&str> = table
        .iter()
        .filter_map(|row| row.split('|').nth(1))
        .flat_map(|cell| cell.split('`').skip(1).step_by(2))
        .collect();
    for name in config::ALL {
        assert!(
            named.contains(&name),
            "the README's variable table does not name {name}"
        );
    }
    for name in &named {
        assert!(
            config::ALL.contains(name),
            "the README's variable table names {name}, which no function reads"
        );
    }
}

#[test]
fn every_function_is_a_cargo_lambda_build_of_a_binary_of_this_workspace() {
    let t = template();
    for (function, binary) in FUNCTIONS.iter().zip(["api", "submit", "status", "retry"]) {
        let resource = &t["Resources"][function];
        assert_eq!(resource["Type"], "AWS::Serverless::Function");
        assert_eq!(resource["Metadata"]["BuildMethod"], "rust-cargolambda");
        assert_eq!(resource["Metadata"]["BuildProperties"]["Binary"], binary);
        let manifest = format!(
            "{}/../functions/{binary}/Cargo.toml",
            env!("CARGO_MANIFEST_DIR")
        );
        let manifest = std::fs::read_to_string(&manifest).unwrap();
        assert!(
            manifest.contains(&format!("name = \"{binary}\"")),
            "functions/{binary} builds a binary named {binary}"
        );
    }
    let globals = &t["Globals"]["Function"];
    assert_eq!(globals["Runtime"], "provided.al2023");
    assert_eq!(globals["Architectures"], json!(["arm64"]));
    assert_eq!(globals["Handler"], "bootstrap");
}

#[test]
fn the_table_has_exactly_the_keys_and_indexes_the_code_queries() {
    let t = template();
    let table = &t["Resources"]["Table"]["Properties"];
    assert_eq!(table["BillingMode"], "PAY_PER_REQUEST");
    assert_eq!(
        table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
        true
    );
    assert_eq!(
        table["TimeToLiveSpecification"]["AttributeName"],
        keys::EXPIRES_AT
    );
    assert_eq!(
        table["KeySchema"],
        json!([
            {"AttributeName": keys::PK, "KeyType": "HASH"},
            {"AttributeName": keys::SK, "KeyType": "RANGE"}
        ])
    );
    let indexes: BTreeSet<(String, String, String)> = table["GlobalSecondaryIndexes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|gsi| {
            // The waiting index only counts a run's place in its queue, and
            // the cluster's start index only its recent start times.
            let name = gsi["IndexName"].as_str().unwrap_or_default();
            let projection = if TableLayout::KEYS_ONLY.contains(&name) {
                "KEYS_ONLY"
            } else {
                "ALL"
            };
            assert_eq!(gsi["Projection"]["ProjectionType"], projection, "{gsi}");
            (
                gsi["IndexName"].as_str().unwrap().to_owned(),
                gsi["KeySchema"][0]["AttributeName"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                gsi["KeySchema"][1]["AttributeName"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    let code: BTreeSet<(String, String, String)> = TableLayout::INDEXES
        .iter()
        .map(|(i, p, s)| ((*i).to_owned(), (*p).to_owned(), (*s).to_owned()))
        .collect();
    assert_eq!(indexes, code);
    let defined: BTreeSet<&str> = table["AttributeDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["AttributeName"].as_str().unwrap())
        .collect();
    let mut keyed: BTreeSet<&str> = [keys::PK, keys::SK].into();
    for (_, p, s) in TableLayout::INDEXES {
        keyed.insert(p);
        keyed.insert(s);
    }
    assert_eq!(defined, keyed, "attribute definitions are exactly the keys");
}

#[test]
fn each_cluster_has_its_queue_its_ecs_cluster_and_an_isolated_submit_mapping() {
    let t = template();
    let env = environment(&t, "SubmitFunction");
    let prefix = env[config::QUEUE_PREFIX]["Fn::Sub"].as_str().unwrap();
    let ecs_prefix = env[config::ECS_CLUSTER_PREFIX]["Fn::Sub"].as_str().unwrap();
    let r = per_cluster(&t);
    // The code names a cluster's queue `<prefix><cluster>` and its ECS
    // cluster `<ecs prefix><cluster>`.
    assert_eq!(
        r["Queue&{Cluster}"]["Properties"]["QueueName"]["Fn::Sub"],
        format!("{prefix}${{Cluster}}")
    );
    assert_eq!(
        r["EcsCluster&{Cluster}"]["Properties"]["ClusterName"]["Fn::Sub"],
        format!("{ecs_prefix}${{Cluster}}")
    );
    let queue = &r["Queue&{Cluster}"]["Properties"];
    assert_eq!(
        queue["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]["Fn::Sub"],
        "DeadLetters&{Cluster}"
    );
    let mapping = &r["SubmitFrom&{Cluster}"]["Properties"];
    assert_eq!(mapping["FunctionName"], json!({"Ref": "SubmitFunction"}));
    assert_eq!(
        mapping["EventSourceArn"]["Fn::GetAtt"][0]["Fn::Sub"],
        "Queue&{Cluster}"
    );
    assert_eq!(
        mapping["FunctionResponseTypes"],
        json!(["ReportBatchItemFailures"])
    );
    assert_eq!(
        mapping["ScalingConfig"]["MaximumConcurrency"],
        json!({"Ref": "SubmitMaxConcurrency"})
    );
    // Lambda's advice: visibility at least six times the function's timeout.
    let timeout = t["Resources"]["SubmitFunction"]["Properties"]["Timeout"]
        .as_u64()
        .unwrap();
    assert!(queue["VisibilityTimeout"].as_u64().unwrap() >= 6 * timeout);
}

#[test]
fn the_status_rule_picks_the_tasks_this_stack_started() {
    let t = template();
    let env = environment(&t, "StatusFunction");
    let pattern = &t["Resources"]["StatusFunction"]["Properties"]["Events"]["TaskStateChange"]["Properties"]
        ["Pattern"];
    assert_eq!(pattern["source"], json!(["aws.ecs"]));
    assert_eq!(pattern["detail-type"], json!(["ECS Task State Change"]));
    assert_eq!(
        pattern["detail"]["startedBy"],
        json!([env[config::STARTED_BY]])
    );
    let cluster_prefix = pattern["detail"]["clusterArn"][0]["prefix"]["Fn::Sub"]
        .as_str()
        .unwrap();
    let ecs_prefix = env[config::ECS_CLUSTER_PREFIX]["Fn::Sub"].as_str().unwrap();
    assert!(cluster_prefix.ends_with(&format!(":cluster/{ecs_prefix}")));
    let schedule = &t["Resources"]["RetryFunction"]["Properties"]["Events"]["Tick"];
    assert_eq!(schedule["Type"], "Schedule");
}

#[test]
fn the_run_log_bucket_expires_the_objects_the_archive_writes_and_only_those_are_readable() {
    let t = template();
    let key =
        shared::adapters::eks::logs::archive_key("", "eks-8a2e-9b7d-4c1e-8f2a-1b2c3d4e5f60", 2);
    let bucket = &t["Resources"]["RunLogBucket"]["Properties"];
    let rule = &bucket["LifecycleConfiguration"]["Rules"][0];
    assert_eq!(rule["Status"], "Enabled");
    let prefix = rule["Prefix"].as_str().unwrap();
    assert!(key.starts_with(prefix), "{key} is not under {prefix}");
    assert_eq!(rule["ExpirationInDays"], json!({"Ref": "LogArchiveDays"}));
    assert_eq!(
        bucket["PublicAccessBlockConfiguration"]["RestrictPublicBuckets"],
        true
    );
    for function in ["ApiFunction", "RetryFunction"] {
        let objects: Vec<&Value> =
            t["Resources"][function]["Properties"]["Policies"][0]["Statement"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["Action"].to_string().contains("s3:GetObject"))
                .collect();
        assert_eq!(objects.len(), 1, "{function}");
        assert_eq!(
            objects[0]["Resource"],
            json!({"Fn::Sub": format!("${{RunLogBucket.Arn}}/{prefix}*")}),
            "{function} reads the archive's objects only"
        );
    }
}

#[test]
fn no_function_is_allowed_a_wildcard_action() {
    let t = template();
    for function in FUNCTIONS {
        for action in allowed_actions(&t, function) {
            assert!(!action.contains('*'), "{function} allows {action}");
        }
    }
}

/// Runs every use case through the app of the function that runs it in a
/// deployment, and checks each function's policy against the actions its
/// requests needed: in the template, and in the stacks the SAM translator
/// and the CDK construct make of it.
#[tokio::test]
#[ignore = "needs moto, the SAM translator and the compiled CDK app: scripts/test makes them"]
async fn each_function_is_allowed_exactly_the_aws_actions_its_code_calls() {
    let s = stack().await;
    let [submit, status, retry_fn] = [1, 2, 3].map(|i| s.functions[i].clone());
    let api = s.api_function.clone();
    let (api_app, submit_app, status_app, retry_app) = (&api.0, &submit.0, &status.0, &retry_fn.0);

    // api: definitions, execute (one run to finish, one to time out, one
    // whose image cannot be pulled), lists.
    let (code, def) = call(
        api_app,
        Method::POST,
        "/api/v6/task",
        json!({"alias": "iam", "group_name": "g", "image": "ubuntu:latest", "command": "sleep 60"}),
    )
    .await;
    assert_eq!(code, 200, "{def}");
    let id = def["definition_id"].as_str().unwrap().to_owned();
    let (code, _) = call(
        api_app,
        Method::PUT,
        &format!("/api/v6/task/{id}"),
        json!({"memory": 1024}),
    )
    .await;
    assert_eq!(code, 200);
    for path in [
        "/api/v6/task",
        &format!("/api/v6/task/{id}"),
        "/api/v6/task/alias/iam",
        "/api/v6/history?status=QUEUED",
    ] {
        assert_eq!(
            call(api_app, Method::GET, path, Value::Null).await.0,
            200,
            "{path}"
        );
    }
    let mut runs = Vec::new();
    for extra in [json!({}), json!({"active_deadline_seconds": 1}), json!({})] {
        let mut body = json!({"run_tags": {"owner_id": "me"}});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (code, run) = call(api_app, Method::PUT, "/api/v6/task/alias/iam/execute", body).await;
        assert_eq!(code, 200, "{run}");
        runs.push(run["run_id"].as_str().unwrap().to_owned());
    }

    // submit: the SQS batch.
    assert_eq!(s.deliver_queue_to(submit_app, false).await, 3);
    let mut tasks = BTreeMap::new();
    for run_id in &runs {
        let (_, run) = call(
            api_app,
            Method::GET,
            &format!("/api/v6/history/{run_id}"),
            Value::Null,
        )
        .await;
        tasks.insert(run_id.clone(), run["task_id"].as_str().unwrap().to_owned());
    }

    // status: ECS events.
    ecs_event(
        status_app,
        "ecs-task-running",
        &runs[0],
        1,
        &tasks[&runs[0]],
    )
    .await;
    ecs_event(
        status_app,
        "ecs-task-running",
        &runs[1],
        1,
        &tasks[&runs[1]],
    )
    .await;
    ecs_event(
        status_app,
        "ecs-task-stopped-cannot-pull-container",
        &runs[2],
        1,
        &tasks[&runs[2]],
    )
    .await;

    // api: logs and a stop.
    assert_eq!(
        call(
            api_app,
            Method::GET,
            &format!("/api/v6/{}/logs", runs[0]),
            Value::Null
        )
        .await
        .0,
        200
    );
    let (code, stopped) = call(
        api_app,
        Method::DELETE,
        &format!("/api/v6/task/{id}/history/{}", runs[0]),
        Value::Null,
    )
    .await;
    assert_eq!(code, 200, "{stopped}");

    // retry: a NEEDS_RETRY run requeued, a run past its deadline stopped.
    // Five seconds after the fixtures' tasks started: past the 1 s deadline,
    // far within the default 48 h one.
    let started = chrono::DateTime::parse_from_rfc3339("2026-11-23T10:00:20.500Z").unwrap();
    s.clock.set(started.to_utc() + chrono::Duration::seconds(5));
    let tick = retry::tick(retry_app, INTERVALS).await.unwrap();
    assert_eq!(
        (tick.requeued.len(), tick.timed_out.len()),
        (1, 1),
        "{tick:?}"
    );
    // retry: the stopped run's STOPPED event never came; once it has been
    // quiet long enough, its task is looked up.
    s.clock.advance(chrono::Duration::minutes(
        i64::from(INTERVALS.reconcile_after_minutes) + 1,
    ));
    let tick = retry::tick(retry_app, INTERVALS).await.unwrap();
    assert!(tick.failed.is_empty(), "{tick:?}");

    // api: the definition deleted.
    assert_eq!(
        call(
            api_app,
            Method::DELETE,
            &format!("/api/v6/task/{id}"),
            Value::Null
        )
        .await
        .0,
        200
    );

    let t = template();
    // The SAM translation and the CDK synthesis of the same parameters.
    let paths = super::cdk::both_paths(super::cdk::CHECKED);
    let s3 = |actions: &[&str]| -> BTreeSet<String> {
        actions.iter().map(|a| (*a).to_owned()).collect()
    };
    // The event source mapping, not the code, receives and deletes messages.
    let poller: BTreeSet<String> = [
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
    ]
    .map(str::to_owned)
    .into();
    for (function, counter, implied) in [
        // Logs of Kubernetes clusters' runs: read (api) and archived
        // (retry) in S3. This scenario has no Kubernetes cluster; the EKS
        // flow test (`adapters::eks::flow_tests`) makes these calls on moto.
        (
            "ApiFunction",
            &api.1,
            s3(&["s3:GetObject", "s3:ListBucket"]),
        ),
        ("SubmitFunction", &submit.1, {
            let mut implied = poller.clone();
            // RunTask and RegisterTaskDefinition hand ECS the task roles.
            implied.insert("iam:PassRole".to_owned());
            // A run stopped by a user while its task was being launched has
            // that task stopped (`App::submit`): a race this scenario does
            // not stage.
            implied.insert("ecs:StopTask".to_owned());
            implied
        }),
        ("StatusFunction", &status.1, {
            // Lambda sends an event the function failed on to the status
            // dead-letter queue with the function's role.
            ["sqs:SendMessage".to_owned()].into()
        }),
        (
            "RetryFunction",
            &retry_fn.1,
            s3(&["s3:GetObject", "s3:PutObject", "s3:ListBucket"]),
        ),
    ] {
        let used = counter.iam_actions();
        let binary = function.trim_end_matches("Function").to_lowercase();
        // The template, then what each deploy path makes of it.
        let mut policies = vec![("the template".to_owned(), allowed_actions(&t, function))];
        for (path, stack) in &paths {
            policies.push((format!("{path}'s stack"), stack.allowed(&binary)));
        }
        for (source, allowed) in policies {
            let missing: Vec<_> = used.difference(&allowed).collect();
            assert!(
                missing.is_empty(),
                "{source}: {function} calls {missing:?}, which its policy does not allow"
            );
            let needed: BTreeSet<String> = used.union(&implied).cloned().collect();
            let unused: Vec<_> = allowed.difference(&needed).collect();
            assert!(
                unused.is_empty(),
                "{source}: {function} is allowed {unused:?}, which its code never calls"
            );
        }
    }
}

#[test]
fn tasks_may_read_only_the_secrets_under_the_stacks_prefix_with_named_actions() {
    let t = template();
    let policies = t["Resources"]["TaskExecutionRole"]["Properties"]["Policies"]
        .as_array()
        .unwrap();
    let secrets = policies
        .iter()
        .find(|p| p["PolicyName"] == "read-run-secrets")
        .expect("the execution role reads run secrets");
    let statements = secrets["PolicyDocument"]["Statement"].as_array().unwrap();
    let mut actions = BTreeSet::new();
    for statement in statements {
        for action in statement["Action"].as_array().unwrap() {
            let action = action.as_str().unwrap();
            assert!(!action.contains('*'), "a wildcard action: {action}");
            actions.insert(action.to_owned());
        }
        let resource = statement["Resource"].to_string();
        assert!(resource.contains("${SecretsPrefix}*"), "{resource}");
    }
    assert_eq!(
        actions,
        ["secretsmanager:GetSecretValue", "ssm:GetParameters"]
            .map(str::to_owned)
            .into_iter()
            .collect()
    );
}

#[test]
fn the_gateway_lets_through_without_a_credential_exactly_the_routes_the_code_serves_so() {
    let t = template();
    let public = &t["Resources"]["Fn::ForEach::PublicRoutes"];
    let keys: BTreeSet<&str> = public[1]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        shared::http::access::PUBLIC_ROUTES.into_iter().collect(),
        "the stack's unauthenticated routes and the code's public routes differ"
    );
    let route = &public[2]["Public&{PublicRoute}"]["Properties"];
    assert_eq!(route["AuthorizationType"], "NONE");
    assert_eq!(route["RouteKey"], json!({"Ref": "PublicRoute"}));
    let default = &t["Resources"]["HttpApiRoute"]["Properties"];
    assert_eq!(default["RouteKey"], "$default");
    assert_eq!(
        default["AuthorizationType"],
        json!({"Fn::If": ["UseJwt", "JWT", "AWS_IAM"]}),
        "every other route needs a JWT or a SigV4 signature"
    );
}

#[test]
fn tasks_are_started_by_a_name_ecs_takes_whatever_the_stack_name_and_the_status_rule_matches_it() {
    let t = template();
    let started_by = &t["Globals"]["Function"]["Environment"]["Variables"][config::STARTED_BY];
    // The longest stack name CloudFormation takes: 128 characters.
    let name = "s".repeat(128);
    let id = format!(
        "arn:aws:cloudformation:us-east-1:123456789012:stack/{name}/0b6f2a10-5c8e-11f0-9f6e-0a1b2c3d4e5f"
    );
    let pseudo: BTreeMap<&str, &str> = [
        ("AWS::StackName", name.as_str()),
        ("AWS::StackId", id.as_str()),
        ("AWS::Region", "us-east-1"),
    ]
    .into();
    let value = evaluate(started_by, &pseudo);
    assert!(
        value.len() <= 36,
        "ECS refuses a startedBy of {} characters: {value}",
        value.len()
    );
    assert_eq!(value, "0b6f2a10-5c8e-11f0-9f6e-0a1b2c3d4e5f");
    assert_eq!(
        status_rule(&t)["Pattern"]["detail"]["startedBy"],
        json!([started_by]),
        "the status rule matches the tasks by the same value"
    );
}

#[test]
fn the_stack_refuses_a_default_cluster_that_is_not_one_of_its_clusters() {
    let t = template();
    let rules = t["Rules"].as_object().unwrap();
    let rule = rules
        .values()
        .find(|r| {
            r["Assertions"].as_array().unwrap().iter().any(|a| {
                a["Assert"]
                    == json!({"Fn::Contains": [{"Ref": "Clusters"}, {"Ref": "DefaultCluster"}]})
            })
        })
        .expect("a rule asserts DefaultCluster is one of Clusters");
    assert!(
        rule.get("RuleCondition").is_none(),
        "whatever the other parameters"
    );
}

#[test]
fn the_stack_refuses_jwt_auth_without_an_issuer_or_an_audience() {
    let t = template();
    let rule = t["Rules"]
        .as_object()
        .unwrap()
        .values()
        .find(|r| r["RuleCondition"].to_string().contains("ApiAuth"))
        .expect("a rule for ApiAuth JWT");
    assert_eq!(
        rule["RuleCondition"],
        json!({"Fn::And": [
            {"Fn::Equals": [{"Ref": "ApiAuth"}, "JWT"]},
            {"Fn::Equals": [{"Ref": "CreateUserPool"}, "false"]}
        ]}),
        "with a user pool the stack makes both itself"
    );
    let asserts: Vec<&Value> = rule["Assertions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["Assert"])
        .collect();
    assert!(asserts.contains(&&json!({"Fn::Not": [{"Fn::Equals": [{"Ref": "JwtIssuer"}, ""]}]})));
    assert!(
        asserts.contains(&&json!({"Fn::Not": [{"Fn::Contains": [{"Ref": "JwtAudience"}, ""]}]})),
        "JwtAudience's default is one empty audience"
    );
    assert_eq!(t["Parameters"]["JwtAudience"]["Default"], "");
    assert_eq!(
        t["Parameters"]["JwtIssuer"]["AllowedPattern"], "^(https://.+)?$",
        "API Gateway takes only an https issuer"
    );
}

#[test]
fn the_status_rule_retries_then_dead_letters_into_a_queue_only_it_and_the_status_function_send_to()
{
    let t = template();
    let rule = status_rule(&t);
    let retry = &rule["RetryPolicy"];
    assert!(retry["MaximumRetryAttempts"].as_u64().unwrap() > 0);
    assert!((60..=86_400).contains(&retry["MaximumEventAgeInSeconds"].as_u64().unwrap()));
    let target = rule["DeadLetterConfig"]["Arn"]["Fn::GetAtt"]
        .as_array()
        .expect("the rule's dead-letter queue is a queue of the stack");
    assert_eq!(target[1], "Arn");
    let queue = target[0].as_str().unwrap();
    let resources = t["Resources"].as_object().unwrap();
    assert_eq!(resources[queue]["Type"], "AWS::SQS::Queue");
    assert_eq!(resources[queue]["Properties"]["SqsManagedSseEnabled"], true);
    let queue_arn = json!({"Fn::GetAtt": [queue, "Arn"]});

    // EventBridge may send to it, for this rule only (SAM names the rule
    // after the function and the event).
    let policy = resources
        .values()
        .find(|r| {
            r["Type"] == "AWS::SQS::QueuePolicy"
                && r["Properties"]["Queues"] == json!([{"Ref": queue}])
        })
        .expect("a policy on the status dead-letter queue");
    let statements = policy["Properties"]["PolicyDocument"]["Statement"]
        .as_array()
        .unwrap();
    assert_eq!(statements.len(), 1);
    let statement = &statements[0];
    assert_eq!(statement["Effect"], "Allow");
    assert_eq!(
        statement["Principal"],
        json!({"Service": "events.amazonaws.com"})
    );
    assert_eq!(statement["Action"], "sqs:SendMessage");
    assert_eq!(statement["Resource"], queue_arn);
    assert_eq!(
        statement["Condition"]["ArnEquals"]["aws:SourceArn"],
        json!({"Fn::GetAtt": ["StatusFunctionTaskStateChange", "Arn"]})
    );

    // The function's own failures (after Lambda's retries) end there too,
    // sent with the function's role.
    let invoke = resources
        .values()
        .find(|r| {
            r["Type"] == "AWS::Lambda::EventInvokeConfig"
                && r["Properties"]["FunctionName"] == json!({"Ref": "StatusFunction"})
        })
        .expect("the status function's asynchronous invocations are configured");
    let invoke = &invoke["Properties"];
    assert_eq!(invoke["Qualifier"], "$LATEST");
    assert!(invoke["MaximumRetryAttempts"].as_u64().unwrap() <= 2);
    assert_eq!(
        invoke["DestinationConfig"]["OnFailure"]["Destination"],
        queue_arn
    );
    let sends = t["Resources"]["StatusFunction"]["Properties"]["Policies"][0]["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Action"] == "sqs:SendMessage")
        .expect("the status function's role may send to its destination");
    assert_eq!(sends["Resource"], queue_arn);
}

#[test]
fn every_dead_letter_queue_has_an_alarm_on_its_first_message() {
    let t = template();
    let resources = expanded_resources(&t, &["default", "team-a"]);
    let mut dead_letter_queues: BTreeSet<String> = resources
        .values()
        .filter_map(|r| {
            r["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0].as_str()
        })
        .map(str::to_owned)
        .collect();
    assert_eq!(
        dead_letter_queues,
        ["DeadLettersdefault", "DeadLettersteama"]
            .map(str::to_owned)
            .into(),
        "each cluster's queue has its dead-letter queue"
    );
    dead_letter_queues.insert(
        status_rule(&t)["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    for queue in &dead_letter_queues {
        let alarm = alarm_on(
            &resources,
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            "QueueName",
            &json!({"Fn::GetAtt": [queue, "QueueName"]}),
        )
        .unwrap_or_else(|| panic!("no alarm on the depth of {queue}"));
        assert_eq!(alarm["Properties"]["Statistic"], "Maximum", "{queue}");
        assert_fires_on_the_first(alarm, queue);
    }
}

#[test]
fn each_function_has_errors_and_throttles_alarms_and_a_log_group_that_expires() {
    let t = template();
    let resources = expanded_resources(&t, &["default"]);
    let mut groups = BTreeSet::new();
    for function in FUNCTIONS {
        for metric in ["Errors", "Throttles"] {
            let alarm = alarm_on(
                &resources,
                "AWS/Lambda",
                metric,
                "FunctionName",
                &json!({"Ref": function}),
            )
            .unwrap_or_else(|| panic!("no {metric} alarm on {function}"));
            assert_eq!(alarm["Properties"]["Statistic"], "Sum");
            assert_fires_on_the_first(alarm, &format!("{function} {metric}"));
        }
        let logging = &t["Resources"][function]["Properties"]["LoggingConfig"];
        let group = logging["LogGroup"]["Ref"]
            .as_str()
            .unwrap_or_else(|| panic!("{function} logs to a group of the stack"));
        assert!(groups.insert(group), "{function} shares its log group");
        let group = &resources[group];
        assert_eq!(group["Type"], "AWS::Logs::LogGroup");
        assert_eq!(
            group["Properties"]["RetentionInDays"],
            json!({"Ref": "FunctionLogRetentionDays"}),
            "{function}'s logs expire"
        );
    }
    assert_eq!(
        t["Globals"]["Function"]["LoggingConfig"]["LogFormat"],
        "JSON"
    );
    assert_eq!(
        resources["TaskLogGroup"]["Properties"]["RetentionInDays"],
        json!({"Ref": "LogRetentionDays"}),
        "the runs' logs expire"
    );
    let retention = &t["Parameters"]["FunctionLogRetentionDays"];
    assert!(
        retention["AllowedValues"]
            .as_array()
            .unwrap()
            .contains(&retention["Default"])
    );
}

#[test]
fn the_api_logs_every_request_as_json_and_throttles_its_callers() {
    let t = template();
    let stage = &t["Resources"]["HttpApiStage"]["Properties"];
    let logs = &stage["AccessLogSettings"];
    let group = logs["DestinationArn"]["Fn::GetAtt"][0].as_str().unwrap();
    assert_eq!(logs["DestinationArn"]["Fn::GetAtt"][1], "Arn");
    assert_eq!(t["Resources"][group]["Type"], "AWS::Logs::LogGroup");
    assert_eq!(
        t["Resources"][group]["Properties"]["RetentionInDays"],
        json!({"Ref": "FunctionLogRetentionDays"})
    );
    // API Gateway fills in `$context` variables; the line is JSON as is.
    let format: Value = serde_json::from_str(logs["Format"].as_str().unwrap())
        .expect("the access log format is one JSON object");
    for (field, variable) in [
        ("requestId", "$context.requestId"),
        ("ip", "$context.identity.sourceIp"),
        ("routeKey", "$context.routeKey"),
        ("status", "$context.status"),
        ("latency", "$context.responseLatency"),
        ("integrationError", "$context.integrationErrorMessage"),
    ] {
        assert_eq!(format[field], variable, "{field}");
    }
    assert_eq!(
        stage["DefaultRouteSettings"],
        json!({
            "ThrottlingBurstLimit": {"Ref": "ApiThrottlingBurstLimit"},
            "ThrottlingRateLimit": {"Ref": "ApiThrottlingRateLimit"}
        })
    );
    for limit in ["ApiThrottlingBurstLimit", "ApiThrottlingRateLimit"] {
        let p = &t["Parameters"][limit];
        assert!(
            p["MinValue"].as_u64().unwrap() >= 1,
            "{limit} of 0 would refuse every request"
        );
        assert!(p["Default"].as_u64().unwrap() >= 1);
    }
}

#[test]
fn a_function_has_reserved_concurrency_only_when_one_is_given_and_never_zero() {
    let t = template();
    for function in FUNCTIONS {
        let name = function.trim_end_matches("Function");
        let parameter = format!("{name}ReservedConcurrency");
        let condition = format!("Reserves{name}");
        assert_eq!(
            t["Resources"][function]["Properties"]["ReservedConcurrentExecutions"],
            json!({"Fn::If": [condition, {"Ref": parameter}, {"Ref": "AWS::NoValue"}]}),
            "{function}"
        );
        assert_eq!(
            t["Conditions"][&condition],
            json!({"Fn::Not": [{"Fn::Equals": [{"Ref": parameter}, ""]}]})
        );
        let p = &t["Parameters"][&parameter];
        assert_eq!(p["Type"], "String");
        assert_eq!(p["Default"], "", "{parameter}: unset by default");
        // Empty, or a number without a leading zero: 0 (which would stop
        // the function) does not match.
        assert_eq!(p["AllowedPattern"], "^([1-9][0-9]*)?$", "{parameter}");
    }
}

#[test]
fn the_aws_clients_give_up_before_the_functions_time_out() {
    let t = template();
    let vars = &t["Globals"]["Function"]["Environment"]["Variables"];
    let mut timeouts = Vec::new();
    for (variable, parameter) in [
        ("FLOTILLA_AWS_CONNECT_TIMEOUT_MS", "AwsConnectTimeoutMs"),
        ("FLOTILLA_AWS_ATTEMPT_TIMEOUT_MS", "AwsAttemptTimeoutMs"),
        ("FLOTILLA_AWS_OPERATION_TIMEOUT_MS", "AwsOperationTimeoutMs"),
    ] {
        assert_eq!(vars[variable], json!({"Ref": parameter}));
        let p = &t["Parameters"][parameter];
        timeouts.push((
            p["Default"].as_u64().unwrap(),
            p["MaxValue"].as_u64().unwrap(),
        ));
    }
    let [connect, attempt, operation] = [timeouts[0], timeouts[1], timeouts[2]];
    assert!(
        connect.0 <= attempt.0 && attempt.0 <= operation.0,
        "{timeouts:?}"
    );
    let shortest_function_timeout = FUNCTIONS
        .iter()
        .map(|f| {
            t["Resources"][f]["Properties"]["Timeout"]
                .as_u64()
                .unwrap_or_else(|| t["Globals"]["Function"]["Timeout"].as_u64().unwrap())
        })
        .min()
        .unwrap();
    for (default, max) in timeouts {
        assert!(default <= max);
        assert!(
            max < shortest_function_timeout * 1000,
            "an AWS request may outlast a function's {shortest_function_timeout} s"
        );
    }
}

#[test]
fn tracing_is_a_parameter_that_passes_traces_through_by_default() {
    let t = template();
    assert_eq!(
        t["Globals"]["Function"]["Tracing"],
        json!({"Ref": "Tracing"})
    );
    let p = &t["Parameters"]["Tracing"];
    assert_eq!(p["Default"], "PassThrough");
    assert_eq!(p["AllowedValues"], json!(["Active", "PassThrough"]));
}

#[test]
fn every_cluster_launches_on_fargate_and_may_launch_on_fargate_spot() {
    let t = template();
    let cluster = &per_cluster(&t)["EcsCluster&{Cluster}"]["Properties"];
    let providers = cluster["CapacityProviders"].as_array().unwrap();
    assert!(providers.contains(&json!("FARGATE")));
    assert!(
        providers.contains(&json!("FARGATE_SPOT")),
        "runs on spot launch with a FARGATE_SPOT strategy"
    );
    assert_eq!(
        cluster["DefaultCapacityProviderStrategy"],
        json!([{"CapacityProvider": "FARGATE", "Weight": 1}])
    );
}

#[test]
fn the_retry_function_may_describe_exactly_the_tasks_it_may_stop() {
    let t = template();
    let statements = t["Resources"]["RetryFunction"]["Properties"]["Policies"][0]["Statement"]
        .as_array()
        .unwrap();
    let resource_of = |action: &str| {
        statements
            .iter()
            .find(|s| s["Action"] == action)
            .map(|s| s["Resource"].clone())
            .unwrap_or_else(|| panic!("RetryFunction is not allowed {action}"))
    };
    assert_eq!(
        resource_of("ecs:DescribeTasks"),
        resource_of("ecs:StopTask")
    );
}
