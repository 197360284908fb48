//! The stack of the process test: `infra/template.yaml` translated by
//! `infra/translate.py`, adapted where moto cannot take it (each adaptation
//! is listed in [`super`]'s docs and returned in [`Deployed::adaptations`]),
//! created in moto's CloudFormation, then read back as the functions see it:
//! each function's configuration from moto's Lambda, the event source
//! mappings that feed `submit`, and the EventBridge rules that feed the
//! others.
//!
//! Every failure names the step and the resource it failed on, since the
//! template changes under this test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_sdk_cloudformation::types::{Capability, Parameter, StackStatus};
use serde_json::{Value, json};
use shared::lambda::AwsClients;
use shared::testing::moto::Moto;

/// The clusters `infra/translate.py` expands the per-cluster resources for:
/// the stack's `Clusters` parameter must name the same ones.
pub const TRANSLATED_CLUSTERS: &str = "default,team-a";

/// A function of the stack, as moto's Lambda describes it.
#[derive(Debug, Clone)]
pub struct FunctionConfig {
    /// Its logical id in the template.
    pub logical_id: String,
    /// The workspace binary it is a build of (`Metadata.BuildProperties.Binary`).
    pub binary: String,
    /// `FunctionName`.
    pub name: String,
    /// `FunctionArn`.
    pub arn: String,
    /// `MemorySize`, in MB.
    pub memory_mb: u64,
    /// `Timeout`.
    pub timeout: Duration,
    /// `LoggingConfig.LogFormat`.
    pub log_format: Option<String>,
    /// `LoggingConfig.ApplicationLogLevel`.
    pub log_level: Option<String>,
    /// `Environment.Variables`, every value as the string a process gets.
    pub env: BTreeMap<String, String>,
}

/// An SQS event source mapping of the stack.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// The queue.
    pub queue_arn: String,
    /// The function it invokes.
    pub function_arn: String,
    /// Records per invocation at most.
    pub batch_size: usize,
    /// Whether the function reports per-item failures.
    pub reports_item_failures: bool,
}

/// The stack, created and wired for the test.
#[derive(Debug)]
pub struct Deployed {
    /// Stack name.
    pub name: String,
    /// What was changed for moto, in words.
    pub adaptations: Vec<String>,
    /// Resources moto's CloudFormation has no support for (created as
    /// placeholders): `(logical id, type)`.
    pub unsupported: Vec<(String, String)>,
    /// The functions, by binary.
    pub functions: BTreeMap<String, FunctionConfig>,
    /// The event source mappings (disabled in moto: the test polls).
    pub mappings: Vec<Mapping>,
    /// For each binary, the queues that now receive what the stack's
    /// EventBridge rules with an event pattern would invoke it with.
    pub rule_queues: BTreeMap<String, Vec<String>>,
}

/// Panics with the step that failed and why.
pub fn fail(step: &str, why: impl std::fmt::Display) -> ! {
    panic!("step \"{step}\" failed: {why}")
}

/// The Python that has the SAM translator: `FLOTILLA_INFRA_PYTHON`, or the
/// one of `FLOTILLA_INFRA_VENV`, or the newest virtualenv scripts/check-infra
/// made under `~/.cache/flotilla-on-lambda`.
pub fn infra_python(step: &str) -> PathBuf {
    if let Some(python) = std::env::var_os("FLOTILLA_INFRA_PYTHON") {
        return PathBuf::from(python);
    }
    if let Some(venv) = std::env::var_os("FLOTILLA_INFRA_VENV") {
        return Path::new(&venv).join("bin/python");
    }
    let cache = std::env::var_os("HOME")
        .map(|home| Path::new(&home).join(".cache/flotilla-on-lambda"))
        .unwrap_or_default();
    let newest = std::fs::read_dir(&cache)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("infra-tools-"))
        .map(|e| e.path().join("bin/python"))
        .filter(|p| p.exists())
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok());
    newest.unwrap_or_else(|| {
        fail(
            step,
            "no Python with the SAM translator: run scripts/check-infra (it installs one under ~/.cache/flotilla-on-lambda), or set FLOTILLA_INFRA_PYTHON",
        )
    })
}

fn resources(template: &Value) -> &serde_json::Map<String, Value> {
    template["Resources"]
        .as_object()
        .unwrap_or_else(|| fail("read the translated template", "it has no Resources"))
}

/// Logical ids of the resources of `kind`.
fn of_type(template: &Value, kind: &str) -> Vec<String> {
    resources(template)
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .map(|(id, _)| id.clone())
        .collect()
}

/// Replaces, everywhere in `value`, what `f` replaces; counts the changes.
fn rewrite(value: &mut Value, f: &dyn Fn(&Value) -> Option<Value>, changed: &mut usize) {
    if let Some(new) = f(value) {
        *value = new;
        *changed += 1;
        return;
    }
    match value {
        Value::Object(map) => map.values_mut().for_each(|v| rewrite(v, f, changed)),
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite(v, f, changed)),
        _ => {}
    }
}

/// The `Fn::Sub` string of `value`, in either form.
fn sub_text(value: &Value) -> Option<&str> {
    let sub = value.as_object().filter(|m| m.len() == 1)?.get("Fn::Sub")?;
    sub.as_str().or_else(|| sub.get(0).and_then(Value::as_str))
}

/// A generated secret's stand-in: `length` letters and digits, the same for
/// a given stack name.
fn generated_secret(seed: &str, length: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut state = seed.bytes().fold(0x9e37_79b9_7f4a_7c15_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (0..length)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            char::from(ALPHABET[(state >> 33) as usize % ALPHABET.len()])
        })
        .collect()
}

/// The template changes moto needs; returns each, in words.
pub fn adapt_for_moto(template: &mut Value, stack: &str) -> Vec<String> {
    let mut done = Vec::new();
    for bus in of_type(template, "AWS::Events::EventBus") {
        let mut changed = 0;
        let (id, name) = (bus.clone(), format!("${{{bus}.Name}}"));
        let by_name = move |v: &Value| -> Option<Value> {
            if *v == json!({"Ref": id}) {
                return Some(json!({"Fn::GetAtt": [id, "Name"]}));
            }
            let text = sub_text(v)?;
            let placeholder = format!("${{{id}}}");
            text.contains(&placeholder).then(|| {
                let mut new = v.clone();
                let replaced = text.replace(&placeholder, &name);
                match &mut new["Fn::Sub"] {
                    Value::Array(parts) => parts[0] = json!(replaced),
                    sub => *sub = json!(replaced),
                }
                new
            })
        };
        rewrite(template, &by_name, &mut changed);
        if changed > 0 {
            done.push(format!(
                "{changed} Ref of the bus {bus} made Fn::GetAtt {bus}.Name (moto resolves Ref of an AWS::Events::EventBus to an internal object; on AWS both are the bus's name)"
            ));
        }
    }
    for secret in of_type(template, "AWS::SecretsManager::Secret") {
        let generate = &resources(template)[&secret]["Properties"]["GenerateSecretString"];
        let length = generate["PasswordLength"].as_u64().unwrap_or(32) as usize;
        let value = generated_secret(stack, length);
        let reference = format!("{{{{resolve:secretsmanager:${{{secret}}}}}}}");
        let mut changed = 0;
        let (secret_in, value_in) = (secret.clone(), value.clone());
        let resolved = move |v: &Value| -> Option<Value> {
            let text = sub_text(v)?;
            // `${<secret>}`, or `${X}` with X the secret's Ref in the
            // Fn::Sub's variables (as the CDK construct writes it).
            let mut names = vec![secret_in.clone()];
            if let Some(vars) = v["Fn::Sub"].get(1).and_then(Value::as_object) {
                names.extend(
                    vars.iter()
                        .filter(|(_, r)| **r == json!({"Ref": secret_in}))
                        .map(|(k, _)| k.clone()),
                );
            }
            let placeholder = names
                .iter()
                .map(|n| format!("{{{{resolve:secretsmanager:${{{n}}}}}}}"))
                .find(|p| text.contains(p.as_str()))?;
            Some(json!({"Fn::Sub": text.replace(&placeholder, &value_in)}))
        };
        rewrite(template, &resolved, &mut changed);
        if changed > 0 {
            done.push(format!(
                "{changed} dynamic reference {reference} replaced by a generated {length}-character value (moto's CloudFormation neither creates an AWS::SecretsManager::Secret nor resolves dynamic references; on AWS the function gets the generated secret the same way)"
            ));
        }
    }
    done
}

/// An unsigned request to moto's REST APIs (its credential scope names the
/// service): the status and body.
pub async fn moto_rest(
    moto: &Moto,
    service: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<(u16, Vec<u8>), reqwest::Error> {
    let request = flotilla_tests::http_client()
        .request(method, format!("{}{path}", moto.endpoint))
        .header(
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"
            ),
        );
    let request = match body {
        Some(body) => request
            .header("content-type", "application/json")
            .body(body),
        None => request,
    };
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.bytes().await?.to_vec()))
}

/// [`moto_rest`] that must answer 2xx with JSON (or nothing).
async fn moto_json(
    moto: &Moto,
    step: &str,
    service: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let what = format!("{method} {path}");
    let (status, bytes) = moto_rest(
        moto,
        service,
        method,
        path,
        body.map(|b| b.to_string().into_bytes()),
    )
    .await
    .unwrap_or_else(|e| fail(step, format!("{what}: {e}")));
    if !(200..300).contains(&status) {
        fail(
            step,
            format!(
                "{what} answered {status}: {}{}",
                String::from_utf8_lossy(&bytes),
                moto_log_tail(moto)
            ),
        );
    }
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

/// The end of moto's own log (where it writes why it answered 500).
pub fn moto_log_tail(moto: &Moto) -> String {
    let port = moto.endpoint.rsplit(':').next().unwrap_or_default();
    let path = std::env::temp_dir().join(format!("flotilla-moto-{port}.log"));
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.contains("HTTP/1.1\"")).collect();
    let tail = lines[lines.len().saturating_sub(15)..].join("\n");
    if tail.is_empty() {
        String::new()
    } else {
        format!("\nmoto's log ends with:\n{tail}")
    }
}

/// Each `Code` S3 object the template's functions name, made in moto's S3.
async fn put_code_objects(moto: &Moto, template: &Value) -> Vec<String> {
    let step = "put the functions' code objects in moto's S3";
    let mut objects: Vec<(String, String)> = Vec::new();
    for id in of_type(template, "AWS::Lambda::Function") {
        let code = &resources(template)[&id]["Properties"]["Code"];
        match (code["S3Bucket"].as_str(), code["S3Key"].as_str()) {
            (Some(bucket), Some(key)) => objects.push((bucket.to_owned(), key.to_owned())),
            _ => fail(
                step,
                format!("{id} has no literal Code.S3Bucket/S3Key: {code}"),
            ),
        }
    }
    objects.sort();
    objects.dedup();
    for (bucket, key) in &objects {
        for (path, body) in [
            (format!("/{bucket}"), None),
            (
                format!("/{bucket}/{key}"),
                Some(b"placeholder: the test runs the workspace's binaries".to_vec()),
            ),
        ] {
            let (status, answer) = moto_rest(moto, "s3", reqwest::Method::PUT, &path, body)
                .await
                .unwrap_or_else(|e| fail(step, format!("PUT {path}: {e}")));
            if status != 200 {
                fail(
                    step,
                    format!("PUT {path}: {status} {}", String::from_utf8_lossy(&answer)),
                );
            }
        }
    }
    objects
        .iter()
        .map(|(bucket, key)| format!("s3://{bucket}/{key}"))
        .collect()
}

/// Creates the stack and waits for it; names every resource that failed.
pub async fn create(
    moto: &Moto,
    clients: &AwsClients,
    cfn: &aws_sdk_cloudformation::Client,
    mut template: Value,
    name: &str,
) -> Deployed {
    let mut adaptations = adapt_for_moto(&mut template, name);
    let objects = put_code_objects(moto, &template).await;
    adaptations.push(format!(
        "the functions' code ({}) is a placeholder object in moto's S3 (where the template points each function's code; the processes are the workspace's binaries)",
        objects.join(", ")
    ));

    let step = "create the stack in moto's CloudFormation";
    let (subnet, group) = moto.default_network();
    // The SAM template's parameters; a CDK template has them as values.
    let parameters: Vec<Parameter> = [
        ("Clusters", TRANSLATED_CLUSTERS.to_owned()),
        ("Subnets", subnet),
        ("SecurityGroups", group),
    ]
    .into_iter()
    .filter(|(k, _)| template["Parameters"].get(k).is_some())
    .map(|(k, v)| {
        Parameter::builder()
            .parameter_key(k)
            .parameter_value(v)
            .build()
    })
    .collect();
    cfn.create_stack()
        .stack_name(name)
        .template_body(template.to_string())
        .set_parameters(Some(parameters))
        .capabilities(Capability::CapabilityIam)
        .capabilities(Capability::CapabilityNamedIam)
        .send()
        .await
        .unwrap_or_else(|e| {
            fail(
                step,
                format!(
                    "CreateStack: {}{}",
                    aws_sdk_cloudformation::error::DisplayErrorContext(&e),
                    moto_log_tail(moto)
                ),
            )
        });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let described = cfn
            .describe_stacks()
            .stack_name(name)
            .send()
            .await
            .unwrap_or_else(|e| {
                fail(
                    step,
                    format!(
                        "DescribeStacks: {}",
                        aws_sdk_cloudformation::error::DisplayErrorContext(&e)
                    ),
                )
            });
        let status = described
            .stacks()
            .first()
            .and_then(|s| s.stack_status().cloned());
        match status {
            Some(s) if !s.as_str().ends_with("_IN_PROGRESS") => break s,
            _ if Instant::now() > deadline => fail(step, format!("still {status:?} after 60 s")),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    if status != StackStatus::CreateComplete {
        let events = cfn
            .describe_stack_events()
            .stack_name(name)
            .send()
            .await
            .map(|e| e.stack_events().to_vec())
            .unwrap_or_default();
        let failed: Vec<String> = events
            .iter()
            .filter(|e| {
                e.resource_status()
                    .is_some_and(|s| s.as_str().ends_with("_FAILED"))
            })
            .map(|e| {
                format!(
                    "{} ({}): {}",
                    e.logical_resource_id().unwrap_or_default(),
                    e.resource_type().unwrap_or_default(),
                    e.resource_status_reason().unwrap_or_default()
                )
            })
            .collect();
        fail(
            step,
            format!("the stack is {status:?}; failed resources: {failed:?}"),
        );
    }

    let step = "list the stack's resources";
    let mut physical: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut token = None;
    loop {
        let page = cfn
            .list_stack_resources()
            .stack_name(name)
            .set_next_token(token)
            .send()
            .await
            .unwrap_or_else(|e| fail(step, aws_sdk_cloudformation::error::DisplayErrorContext(&e)));
        for r in page.stack_resource_summaries() {
            physical.insert(
                r.logical_resource_id().unwrap_or_default().to_owned(),
                (
                    r.resource_type().unwrap_or_default().to_owned(),
                    r.physical_resource_id().unwrap_or_default().to_owned(),
                ),
            );
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    let unsupported = resources(&template)
        .iter()
        .filter(|(id, r)| {
            r.get("Condition").is_none() && physical.get(*id).is_none_or(|(_, p)| p.is_empty())
        })
        .map(|(id, r)| {
            (
                id.clone(),
                r["Type"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();

    let functions = read_functions(moto, &template, &physical).await;
    let mappings = take_over_mappings(moto, &functions).await;
    let rule_queues = take_over_rules(clients, &functions, name).await;
    adaptations.push(
        "moto's Lambda keeps no LoggingConfig: the log format and level Lambda puts in AWS_LAMBDA_LOG_FORMAT and AWS_LAMBDA_LOG_LEVEL are the template's".to_owned(),
    );
    adaptations.push(
        "each SQS event source mapping is disabled in moto (which would hand the messages to its own Lambda), and the test polls its queue as Lambda does, with its batch size and ReportBatchItemFailures".to_owned(),
    );
    adaptations.push(
        "each EventBridge rule's Lambda target is replaced: moto cannot invoke one; a rule with an event pattern gets an SQS queue instead, which the test drains into the function; a schedule rule gets none (moto runs no schedules: the test invokes retry with events/scheduled-event.json)".to_owned(),
    );
    Deployed {
        name: name.to_owned(),
        adaptations,
        unsupported,
        functions,
        mappings,
        rule_queues,
    }
}

fn env_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Each `AWS::Lambda::Function` of the template, as moto's Lambda has it.
async fn read_functions(
    moto: &Moto,
    template: &Value,
    physical: &BTreeMap<String, (String, String)>,
) -> BTreeMap<String, FunctionConfig> {
    let mut functions = BTreeMap::new();
    for id in of_type(template, "AWS::Lambda::Function") {
        let step = format!("read the configuration of {id} from moto's Lambda");
        let declared = &resources(template)[&id]["Properties"];
        let binary = resources(template)[&id]["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap_or_else(|| fail(&step, "it names no Metadata.BuildProperties.Binary"))
            .to_owned();
        let name = physical
            .get(&id)
            .map(|(_, p)| p.clone())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| fail(&step, "the stack has no physical id for it"));
        let c = moto_json(
            moto,
            &step,
            "lambda",
            reqwest::Method::GET,
            &format!("/2015-03-31/functions/{name}/configuration"),
            None,
        )
        .await;
        let env = c["Environment"]["Variables"]
            .as_object()
            .map(|vars| vars.iter().map(|(k, v)| (k.clone(), env_text(v))).collect())
            .unwrap_or_default();
        functions.insert(
            binary.clone(),
            FunctionConfig {
                logical_id: id.clone(),
                binary,
                name,
                arn: c["FunctionArn"]
                    .as_str()
                    .unwrap_or_else(|| fail(&step, format!("no FunctionArn in {c}")))
                    .to_owned(),
                memory_mb: c["MemorySize"].as_u64().unwrap_or(128),
                timeout: Duration::from_secs(c["Timeout"].as_u64().unwrap_or(3)),
                // moto's Lambda keeps no LoggingConfig: the template's.
                log_format: c["LoggingConfig"]["LogFormat"]
                    .as_str()
                    .or(declared["LoggingConfig"]["LogFormat"].as_str())
                    .map(str::to_owned),
                log_level: c["LoggingConfig"]["ApplicationLogLevel"]
                    .as_str()
                    .or(declared["LoggingConfig"]["ApplicationLogLevel"].as_str())
                    .map(str::to_owned),
                env,
            },
        );
    }
    functions
}

/// The stack's SQS event source mappings, disabled in moto.
async fn take_over_mappings(
    moto: &Moto,
    functions: &BTreeMap<String, FunctionConfig>,
) -> Vec<Mapping> {
    let mut mappings = Vec::new();
    for f in functions.values() {
        let step = format!("take over the event source mappings of {}", f.logical_id);
        let listed = moto_json(
            moto,
            &step,
            "lambda",
            reqwest::Method::GET,
            &format!("/2015-03-31/event-source-mappings/?FunctionName={}", f.name),
            None,
        )
        .await;
        for m in listed["EventSourceMappings"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let uuid = m["UUID"].as_str().unwrap_or_default();
            moto_json(
                moto,
                &step,
                "lambda",
                reqwest::Method::PUT,
                &format!("/2015-03-31/event-source-mappings/{uuid}"),
                Some(json!({"Enabled": false})),
            )
            .await;
            mappings.push(Mapping {
                queue_arn: m["EventSourceArn"].as_str().unwrap_or_default().to_owned(),
                function_arn: f.arn.clone(),
                batch_size: m["BatchSize"].as_u64().unwrap_or(10) as usize,
                reports_item_failures: m["FunctionResponseTypes"]
                    .as_array()
                    .is_some_and(|t| t.contains(&json!("ReportBatchItemFailures"))),
            });
        }
    }
    mappings
}

/// The stack's EventBridge rules (on the default bus) that target its
/// functions: the Lambda target removed, an SQS queue in its place for a
/// rule with an event pattern. Returns the queues by binary.
async fn take_over_rules(
    clients: &AwsClients,
    functions: &BTreeMap<String, FunctionConfig>,
    stack: &str,
) -> BTreeMap<String, Vec<String>> {
    let step = "take over the EventBridge rules that target the functions";
    let events = &clients.events;
    let mut queues: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let rules = events
        .list_rules()
        .send()
        .await
        .unwrap_or_else(|e| fail(step, aws_sdk_eventbridge::error::DisplayErrorContext(&e)));
    for rule in rules.rules() {
        let rule_name = rule.name().unwrap_or_default();
        let targets = events
            .list_targets_by_rule()
            .rule(rule_name)
            .send()
            .await
            .unwrap_or_else(|e| {
                fail(
                    step,
                    format!(
                        "{rule_name}: {}",
                        aws_sdk_eventbridge::error::DisplayErrorContext(&e)
                    ),
                )
            });
        for target in targets.targets() {
            let Some(f) = functions.values().find(|f| f.arn == target.arn()) else {
                continue;
            };
            events
                .remove_targets()
                .rule(rule_name)
                .ids(target.id())
                .send()
                .await
                .unwrap_or_else(|e| {
                    fail(
                        step,
                        format!(
                            "{rule_name}: {}",
                            aws_sdk_eventbridge::error::DisplayErrorContext(&e)
                        ),
                    )
                });
            if rule.event_pattern().is_none() {
                continue;
            }
            let n = queues.values().map(Vec::len).sum::<usize>();
            let url = clients
                .sqs
                .create_queue()
                .queue_name(format!("{stack}-rule-{n}-to-{}", f.binary))
                .send()
                .await
                .ok()
                .and_then(|q| q.queue_url)
                .unwrap_or_else(|| fail(step, format!("{rule_name}: no queue")));
            let arn = super::queue_arn(clients, &url).await;
            events
                .put_targets()
                .rule(rule_name)
                .targets(
                    aws_sdk_eventbridge::types::Target::builder()
                        .id("process-test")
                        .arn(arn)
                        .build()
                        .unwrap_or_else(|e| fail(step, e)),
                )
                .send()
                .await
                .unwrap_or_else(|e| {
                    fail(
                        step,
                        format!(
                            "{rule_name}: {}",
                            aws_sdk_eventbridge::error::DisplayErrorContext(&e)
                        ),
                    )
                });
            queues.entry(f.binary.clone()).or_default().push(url);
        }
    }
    queues
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_adaptations_name_the_bus_and_resolve_the_secret_and_leave_the_rest() {
        let mut t = json!({"Resources": {
            "Bus": {"Type": "AWS::Events::EventBus", "Properties": {"Name": "b"}},
            "Key": {"Type": "AWS::SecretsManager::Secret",
                    "Properties": {"GenerateSecretString": {"PasswordLength": 40}}},
            "F": {"Type": "AWS::Lambda::Function", "Properties": {"Environment": {"Variables": {
                "BUS": {"Ref": "Bus"},
                "BUS_ARN": {"Fn::GetAtt": ["Bus", "Arn"]},
                "BUS_TEXT": {"Fn::Sub": "bus ${Bus}"},
                "KEY": {"Fn::Sub": "{{resolve:secretsmanager:${Key}}}"},
                "TABLE": {"Ref": "Table"}
            }}}}
        }});
        let done = adapt_for_moto(&mut t, "s");
        let vars = &t["Resources"]["F"]["Properties"]["Environment"]["Variables"];
        assert_eq!(vars["BUS"], json!({"Fn::GetAtt": ["Bus", "Name"]}));
        assert_eq!(vars["BUS_ARN"], json!({"Fn::GetAtt": ["Bus", "Arn"]}));
        assert_eq!(vars["BUS_TEXT"], json!({"Fn::Sub": "bus ${Bus.Name}"}));
        let key = vars["KEY"]["Fn::Sub"].as_str().unwrap();
        assert_eq!(key.len(), 40);
        assert!(key.chars().all(|c| c.is_ascii_alphanumeric()), "{key}");
        assert_eq!(vars["TABLE"], json!({"Ref": "Table"}));
        assert_eq!(done.len(), 2, "{done:?}");
    }
}
