//! The CDK construct (`infra/cdk`) against the SAM template and against the
//! code: for every parameter set, the stack it synthesizes is the one the
//! SAM template translates to, resource by resource; and the checks of the
//! template against the code (each function's variables, the table's keys
//! and indexes, the queue and ECS cluster names, the rules' patterns) hold
//! on what each path deploys. The IAM actions measured on moto are checked
//! against both paths in `infra::each_function_is_allowed_exactly_the_aws_actions_its_code_calls`,
//! and a run goes end to end on the CDK stack in `processes`.
//!
//! Needs the SAM translator (scripts/check-infra) and the compiled construct
//! (scripts/check-cdk); scripts/test runs both first.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use shared::adapters::dynamo::{TableLayout, keys};
use shared::lambda::config;

use super::cfn::{self, Evaluated};

const BINARIES: [&str; 4] = ["api", "submit", "status", "retry"];

/// Both paths' stacks for the parameter set `name`: (path, stack).
pub fn both_paths(name: &str) -> Vec<(&'static str, Evaluated)> {
    let file = cfn::parameter_set(name);
    let given = cfn::read_parameters(&file);
    let workdir = tempfile::tempdir().unwrap_or_else(|e| panic!("a work directory: {e}"));
    let sam = cfn::sam_translated(&file, workdir.path());
    let cdk = cfn::cdk_synthesized(&file, &[], workdir.path());
    vec![
        ("SAM", cfn::evaluate(&sam, &given)),
        ("CDK", cfn::evaluate(&cdk, &given)),
    ]
}

/// The parameter set the checks of the code run on: two clusters, one with
/// a hyphen, JWT auth and a task role (`infra/translate.py`'s own).
pub const CHECKED: &str = "jwt-two-clusters";

#[test]
#[ignore = "needs the SAM translator and the compiled CDK app: scripts/test makes both"]
fn the_cdk_construct_makes_the_same_stack_as_the_sam_template_for_every_parameter_set() {
    let sets = cfn::parameter_sets();
    assert!(
        sets.len() >= 3,
        "the equivalence is checked on several parameter sets: {sets:?}"
    );
    for (name, file) in &sets {
        let given = cfn::read_parameters(file);
        let workdir = tempfile::tempdir().unwrap_or_else(|e| panic!("a work directory: {e}"));
        let sam = cfn::evaluate(&cfn::sam_translated(file, workdir.path()), &given);
        let cdk = cfn::evaluate(&cfn::cdk_synthesized(file, &[], workdir.path()), &given);
        let sam_names: BTreeSet<&String> = sam.resources.keys().collect();
        let cdk_names: BTreeSet<&String> = cdk.resources.keys().collect();
        assert_eq!(
            sam_names.difference(&cdk_names).collect::<Vec<_>>(),
            Vec::<&&String>::new(),
            "{name}: resources only the SAM template makes"
        );
        assert_eq!(
            cdk_names.difference(&sam_names).collect::<Vec<_>>(),
            Vec::<&&String>::new(),
            "{name}: resources only the CDK construct makes"
        );
        for (resource, from_sam) in &sam.resources {
            let from_cdk = &cdk.resources[resource];
            if let Some(difference) = cfn::first_difference(resource, from_sam, from_cdk) {
                panic!("{name}: SAM and CDK differ at {difference}");
            }
        }
        assert_eq!(sam.outputs, cdk.outputs, "{name}: the outputs");
        println!(
            "{name}: {} resources and {} outputs, the same on both paths",
            sam.resources.len(),
            sam.outputs.len()
        );
    }
}

#[test]
#[ignore = "needs the SAM translator and the compiled CDK app: scripts/test makes both"]
fn on_either_path_every_function_gets_every_variable_its_config_reads() {
    for (path, stack) in both_paths(CHECKED) {
        for binary in BINARIES {
            let vars = stack.environment(binary);
            super::infra::assert_sets_what_the_config_reads(
                &format!("{path}: {binary}"),
                vars.keys(),
            );
            for name in config::REQUIRED {
                assert!(
                    vars.get(name).is_some_and(|v| !v.is_empty()),
                    "{path}: {binary}'s required {name} is empty"
                );
            }
            // What the code parses, parsed: the configuration a cold start
            // reads from exactly these variables.
            let env: BTreeMap<String, String> = vars.clone();
            let parsed = config::Config::from_lookup(|name| env.get(name).cloned());
            assert!(
                parsed.is_ok(),
                "{path}: {binary}'s configuration: {parsed:?}"
            );
        }
    }
}

#[test]
#[ignore = "needs the SAM translator and the compiled CDK app: scripts/test makes both"]
fn on_either_path_the_table_has_exactly_the_keys_and_indexes_the_code_queries() {
    for (path, stack) in both_paths(CHECKED) {
        let tables = stack.of_type("AWS::DynamoDB::Table");
        assert_eq!(tables.len(), 1, "{path}: one table");
        let (name, table) = tables[0];
        assert_eq!(
            stack.environment("api")[config::TABLE],
            format!("«{name}»"),
            "{path}: the functions use the table"
        );
        let p = &table["Properties"];
        assert_eq!(
            table["DeletionPolicy"], "Retain",
            "{path}: the runs outlive the stack"
        );
        assert_eq!(p["BillingMode"], "PAY_PER_REQUEST", "{path}");
        assert_eq!(
            p["TimeToLiveSpecification"]["AttributeName"],
            keys::EXPIRES_AT,
            "{path}"
        );
        assert_eq!(
            p["KeySchema"],
            json!([
                {"AttributeName": keys::PK, "KeyType": "HASH"},
                {"AttributeName": keys::SK, "KeyType": "RANGE"}
            ]),
            "{path}"
        );
        let indexes: BTreeSet<(String, String, String, String)> = p["GlobalSecondaryIndexes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|gsi| {
                let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
                (
                    text(&gsi["IndexName"]),
                    text(&gsi["KeySchema"][0]["AttributeName"]),
                    text(&gsi["KeySchema"][1]["AttributeName"]),
                    text(&gsi["Projection"]["ProjectionType"]),
                )
            })
            .collect();
        let code: BTreeSet<(String, String, String, String)> = TableLayout::INDEXES
            .iter()
            .map(|(i, pk, sk)| {
                let projection = if TableLayout::KEYS_ONLY.contains(i) {
                    "KEYS_ONLY"
                } else {
                    "ALL"
                };
                (
                    (*i).to_owned(),
                    (*pk).to_owned(),
                    (*sk).to_owned(),
                    projection.to_owned(),
                )
            })
            .collect();
        assert_eq!(indexes, code, "{path}: the indexes");
        let defined: BTreeSet<&str> = p["AttributeDefinitions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["AttributeName"].as_str())
            .collect();
        let mut keyed: BTreeSet<&str> = [keys::PK, keys::SK].into();
        for (_, pk, sk) in TableLayout::INDEXES {
            keyed.insert(pk);
            keyed.insert(sk);
        }
        assert_eq!(
            defined, keyed,
            "{path}: attribute definitions are exactly the keys"
        );
    }
}

#[test]
#[ignore = "needs the SAM translator and the compiled CDK app: scripts/test makes both"]
fn on_either_path_each_cluster_has_the_queue_and_ecs_cluster_the_code_names_and_an_isolated_mapping()
 {
    for (path, stack) in both_paths(CHECKED) {
        let env = stack.environment("submit");
        let clusters: Vec<&str> = env[config::CLUSTERS].split(',').collect();
        assert_eq!(clusters, ["default", "team-a"], "{path}");
        let (submit_name, submit) = stack.named_function("submit");
        let timeout: u64 = submit["Properties"]["Timeout"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .unwrap_or_default();
        for cluster in clusters {
            let queue_name = format!("{}{cluster}", env[config::QUEUE_PREFIX]);
            let (queue, q) = stack
                .of_type("AWS::SQS::Queue")
                .into_iter()
                .find(|(_, q)| q["Properties"]["QueueName"] == queue_name.as_str())
                .unwrap_or_else(|| panic!("{path}: no queue {queue_name}"));
            let ecs_name = format!("{}{cluster}", env[config::ECS_CLUSTER_PREFIX]);
            assert!(
                stack
                    .of_type("AWS::ECS::Cluster")
                    .iter()
                    .any(|(_, c)| c["Properties"]["ClusterName"] == ecs_name.as_str()),
                "{path}: no ECS cluster {ecs_name}"
            );
            let dead_letters = q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]
                .as_str()
                .and_then(|r| stack.referenced(r))
                .unwrap_or_else(|| panic!("{path}: {queue_name} has no dead-letter queue"));
            assert_eq!(dead_letters["Type"], "AWS::SQS::Queue", "{path}");
            let visibility: u64 = q["Properties"]["VisibilityTimeout"]
                .as_str()
                .and_then(|t| t.parse().ok())
                .unwrap_or_default();
            assert!(
                visibility >= 6 * timeout,
                "{path}: {queue_name}'s visibility"
            );
            let mappings: Vec<&Value> = stack
                .of_type("AWS::Lambda::EventSourceMapping")
                .into_iter()
                .map(|(_, m)| &m["Properties"])
                .filter(|m| m["EventSourceArn"] == format!("«{queue}.Arn»").as_str())
                .collect();
            assert_eq!(mappings.len(), 1, "{path}: one mapping reads {queue_name}");
            let m = mappings[0];
            assert_eq!(
                m["FunctionName"],
                format!("«{submit_name}»").as_str(),
                "{path}"
            );
            assert_eq!(
                m["FunctionResponseTypes"],
                json!(["ReportBatchItemFailures"]),
                "{path}"
            );
            assert_eq!(m["ScalingConfig"]["MaximumConcurrency"], "5", "{path}");
        }
    }
}

#[test]
#[ignore = "needs the SAM translator and the compiled CDK app: scripts/test makes both"]
fn on_either_path_the_status_rule_picks_the_tasks_this_stack_started_and_retry_ticks() {
    for (path, stack) in both_paths(CHECKED) {
        let env = stack.environment("status");
        let target_of = |binary: &str| format!("«{}.Arn»", stack.named_function(binary).0);
        let rules = stack.of_type("AWS::Events::Rule");
        let status: Vec<&Value> = rules
            .iter()
            .map(|(_, r)| &r["Properties"])
            .filter(|r| r["Targets"][0]["Arn"] == target_of("status").as_str())
            .collect();
        assert_eq!(status.len(), 1, "{path}: one rule feeds status");
        let pattern = &status[0]["EventPattern"];
        assert_eq!(pattern["source"], json!(["aws.ecs"]), "{path}");
        assert_eq!(
            pattern["detail-type"],
            json!(["ECS Task State Change"]),
            "{path}"
        );
        assert_eq!(
            pattern["detail"]["startedBy"],
            json!([env[config::STARTED_BY]]),
            "{path}: the tasks the functions start"
        );
        assert_eq!(
            pattern["detail"]["clusterArn"],
            json!([{"prefix": format!("arn:aws:ecs:us-east-1:123456789012:cluster/{}", env[config::ECS_CLUSTER_PREFIX])}]),
            "{path}: in the stack's clusters"
        );
        let dead_letters = status[0]["Targets"][0]["DeadLetterConfig"]["Arn"]
            .as_str()
            .and_then(|r| stack.referenced(r))
            .unwrap_or_else(|| panic!("{path}: the status rule has no dead-letter queue"));
        assert_eq!(dead_letters["Type"], "AWS::SQS::Queue", "{path}");
        let retry: Vec<&Value> = rules
            .iter()
            .map(|(_, r)| &r["Properties"])
            .filter(|r| r["Targets"][0]["Arn"] == target_of("retry").as_str())
            .collect();
        assert_eq!(retry.len(), 1, "{path}: one rule ticks retry");
        assert_eq!(retry[0]["ScheduleExpression"], "rate(1 minute)", "{path}");
        for binary in ["status", "retry"] {
            let function = target_of(binary).replace(".Arn»", "»");
            let rule = rules
                .iter()
                .find(|(_, r)| r["Properties"]["Targets"][0]["Arn"] == target_of(binary).as_str())
                .map(|(n, _)| format!("«{n}.Arn»"))
                .unwrap_or_default();
            assert!(
                stack
                    .of_type("AWS::Lambda::Permission")
                    .iter()
                    .any(|(_, p)| {
                        let p = &p["Properties"];
                        p["Principal"] == "events.amazonaws.com"
                            && p["FunctionName"] == function.as_str()
                            && p["SourceArn"] == rule.as_str()
                    }),
                "{path}: the rule may invoke {binary}"
            );
        }
    }
}
