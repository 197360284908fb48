//! The SAM template against the code: every variable a function's `Config`
//! needs is set on it, every AWS action its code calls (measured on moto, one
//! request counter per function) is allowed by its policy and nothing more,
//! and the table, queues, ECS clusters and EventBridge rule match what the
//! adapters use.

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

#[test]
fn every_function_gets_every_variable_its_config_reads() {
    let t = template();
    for function in FUNCTIONS {
        let vars = environment(&t, function);
        for name in config::REQUIRED {
            assert!(
                vars.contains_key(name),
                "{function} lacks the required {name}"
            );
        }
        for name in vars.keys() {
            assert!(
                config::ALL.contains(&name.as_str()),
                "{function} sets {name}, which no code reads"
            );
        }
        for name in config::ALL {
            // Lambda sets AWS_REGION; the endpoint override is for emulators.
            if name != config::AWS_REGION && name != config::AWS_ENDPOINT_URL {
                assert!(
                    vars.contains_key(name),
                    "{function} leaves {name} to its default: set it from the template"
                );
            }
        }
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
            assert_eq!(gsi["Projection"]["ProjectionType"], "ALL");
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
/// requests needed.
#[tokio::test]
#[ignore = "needs moto: scripts/test installs it and runs these"]
async fn each_function_is_allowed_exactly_the_aws_actions_its_code_calls() {
    let s = stack().await;
    let [api, submit, status, retry_fn] = [0, 1, 2, 3].map(|i| s.functions[i].clone());
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
    // The event source mapping, not the code, receives and deletes messages.
    let poller: BTreeSet<String> = [
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
    ]
    .map(str::to_owned)
    .into();
    for (function, counter, implied) in [
        ("ApiFunction", &api.1, BTreeSet::new()),
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
        ("StatusFunction", &status.1, BTreeSet::new()),
        ("RetryFunction", &retry_fn.1, BTreeSet::new()),
    ] {
        let used = counter.iam_actions();
        let allowed = allowed_actions(&t, function);
        let missing: Vec<_> = used.difference(&allowed).collect();
        assert!(
            missing.is_empty(),
            "{function} calls {missing:?}, which its policy does not allow"
        );
        let needed: BTreeSet<String> = used.union(&implied).cloned().collect();
        let unused: Vec<_> = allowed.difference(&needed).collect();
        assert!(
            unused.is_empty(),
            "{function} is allowed {unused:?}, which its code never calls"
        );
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
