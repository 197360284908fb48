//! The two deploy paths' CloudFormation, made and read alike: the SAM
//! template as `infra/translate.py` translates it, and the CDK construct
//! (`infra/cdk`) as its parameter-driven app synthesizes it, each for a set
//! of SAM parameter values (`infra/cdk/test/parameters/*.json`). Then
//! [`Evaluated`]: a template with every intrinsic function worked out for
//! those values (conditions decided, `Fn::Sub`/`Join`/`Select`/`Split`/`If`
//! computed, `AWS::NoValue` dropped, a resource's `Ref` written `«Name»` and
//! its attribute `«Name.Attr»`) and every logical id replaced by its name
//! (the SAM logical id, or the CDK construct id, which the construct makes
//! the same). Two stacks are the same when their evaluated forms are.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::processes::stack::fail;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The parameter sets both paths are made with, by file stem.
pub fn parameter_sets() -> Vec<(String, PathBuf)> {
    let dir = root().join("infra/cdk/test/parameters");
    let mut sets: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| fail("list the parameter sets", format!("{}: {e}", dir.display())))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let stem = p
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            (stem, p)
        })
        .collect();
    sets.sort();
    sets
}

/// The file of the parameter set `name`.
pub fn parameter_set(name: &str) -> PathBuf {
    parameter_sets()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, path)| path)
        .unwrap_or_else(|| fail("find a parameter set", format!("no {name}")))
}

/// The parameter values of a set.
pub fn read_parameters(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| fail("read a parameter set", format!("{}: {e}", path.display())));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| fail("read a parameter set", format!("{}: {e}", path.display())))
}

/// The pseudo parameters both templates are evaluated with.
pub const PSEUDO: [(&str, &str); 6] = [
    ("AWS::Region", "us-east-1"),
    ("AWS::AccountId", "123456789012"),
    ("AWS::StackName", "flotilla"),
    ("AWS::Partition", "aws"),
    ("AWS::URLSuffix", "amazonaws.com"),
    (
        "AWS::StackId",
        "arn:aws:cloudformation:us-east-1:123456789012:stack/flotilla/0b6f2a10-5c8e-11f0-9f6e-0a1b2c3d4e5f",
    ),
];

fn run(step: &str, command: &mut std::process::Command) {
    let ran = command
        .output()
        .unwrap_or_else(|e| fail(step, format!("{command:?}: {e}")));
    if !ran.status.success() {
        fail(
            step,
            format!(
                "{command:?} exited with {}: {}{}",
                ran.status,
                String::from_utf8_lossy(&ran.stdout),
                String::from_utf8_lossy(&ran.stderr)
            ),
        );
    }
}

fn read_json(step: &str, path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| fail(step, format!("{}: {e}", path.display())));
    serde_json::from_str(&text).unwrap_or_else(|e| fail(step, format!("{}: {e}", path.display())))
}

/// `infra/template.yaml` translated with the parameter set at `parameters`.
pub fn sam_translated(parameters: &Path, workdir: &Path) -> Value {
    let step = "translate infra/template.yaml with infra/translate.py";
    let out = workdir.join("sam.json");
    let python = super::processes::stack::infra_python(step);
    run(
        step,
        std::process::Command::new(&python)
            .arg(root().join("infra/translate.py"))
            .arg("--parameters")
            .arg(parameters)
            .arg(root().join("infra/template.yaml"))
            .arg(&out)
            .env("AWS_DEFAULT_REGION", "us-east-1"),
    );
    read_json(step, &out)
}

/// The CDK construct's app (`infra/cdk/test/sam-parameters-app.ts`, compiled
/// by scripts/check-cdk) synthesized with the parameter set at `parameters`
/// and `context`; the cloud assembly goes to `workdir/cdk.out`.
pub fn cdk_synthesized(parameters: &Path, context: &[(&str, &str)], workdir: &Path) -> Value {
    let step = "synthesize the CDK construct's app";
    let cdk = root().join("infra/cdk");
    let app = cdk.join("dist/test/sam-parameters-app.js");
    if !app.exists() {
        fail(
            step,
            format!(
                "{} does not exist: run scripts/check-cdk (it installs the pinned packages with npm ci and compiles the construct)",
                app.display()
            ),
        );
    }
    let out = workdir.join("cdk.out");
    let mut ctx = serde_json::Map::new();
    ctx.insert("parameters".into(), json!(parameters.to_string_lossy()));
    // As the CLI does: each resource names its construct path, which
    // [`evaluate`] names it by.
    ctx.insert("aws:cdk:enable-path-metadata".into(), json!(true));
    for (k, v) in context {
        ctx.insert((*k).to_owned(), json!(v));
    }
    // What `cdk synth` hands the app: where to write and the context.
    run(
        step,
        std::process::Command::new("node")
            .arg(&app)
            .current_dir(&cdk)
            .env("CDK_OUTDIR", &out)
            .env("CDK_CONTEXT_JSON", Value::Object(ctx).to_string()),
    );
    read_json(step, &out.join("Flotilla.template.json"))
}

/// A template evaluated for one set of parameter values.
#[derive(Debug, Clone)]
pub struct Evaluated {
    /// Resources by name (conditions that are false leave theirs out).
    pub resources: BTreeMap<String, Value>,
    /// Outputs by logical id, each its evaluated value.
    pub outputs: BTreeMap<String, Value>,
}

impl Evaluated {
    /// The resources of `kind`, by name.
    pub fn of_type(&self, kind: &str) -> Vec<(&String, &Value)> {
        self.resources
            .iter()
            .filter(|(_, r)| r["Type"] == kind)
            .collect()
    }

    /// The name of the `AWS::Lambda::Function` that runs `binary` (its
    /// `Metadata.BuildProperties.Binary`, which both paths set), and it.
    pub fn named_function(&self, binary: &str) -> (&String, &Value) {
        self.resources
            .iter()
            .find(|(_, r)| r["Type"] == "AWS::Lambda::Function" && r["Binary"] == binary)
            .unwrap_or_else(|| fail("find a function", format!("no function runs {binary}")))
    }

    /// The `AWS::Lambda::Function` that runs `binary`.
    pub fn function(&self, binary: &str) -> &Value {
        self.named_function(binary).1
    }

    /// The function of `binary`'s environment.
    pub fn environment(&self, binary: &str) -> BTreeMap<String, String> {
        self.function(binary)["Properties"]["Environment"]["Variables"]
            .as_object()
            .map(|vars| {
                vars.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The resource a `«Name»` or `«Name.Attr»` reference names.
    pub fn referenced(&self, reference: &str) -> Option<&Value> {
        let inner = reference.strip_prefix('«')?.strip_suffix('»')?;
        let name = inner.split('.').next()?;
        self.resources.get(name)
    }

    /// Every action the inline policies of the role of `binary`'s function
    /// allow.
    pub fn allowed(&self, binary: &str) -> BTreeSet<String> {
        let role = self.function(binary)["Properties"]["Role"]
            .as_str()
            .and_then(|r| self.referenced(r))
            .unwrap_or_else(|| fail("find a function's role", binary));
        let mut actions = BTreeSet::new();
        for policy in role["Properties"]["Policies"]
            .as_array()
            .into_iter()
            .flatten()
        {
            for statement in policy["PolicyDocument"]["Statement"]
                .as_array()
                .into_iter()
                .flatten()
            {
                assert_eq!(statement["Effect"], "Allow", "{binary}: {statement}");
                match &statement["Action"] {
                    Value::String(a) => {
                        actions.insert(a.clone());
                    }
                    Value::Array(list) => {
                        actions.extend(list.iter().filter_map(Value::as_str).map(str::to_owned));
                    }
                    other => panic!("{binary}: an Action of {other}"),
                }
            }
        }
        actions
    }
}

/// `template` evaluated with the parameter values `given` (the template's
/// defaults for the others) and [`PSEUDO`].
pub fn evaluate(template: &Value, given: &BTreeMap<String, String>) -> Evaluated {
    let resources = template["Resources"]
        .as_object()
        .unwrap_or_else(|| fail("evaluate a template", "it has no Resources"));
    // Names: the CDK construct id (the last part of its path, the part
    // before `/Resource` for a higher-level construct), else the logical id.
    let names: BTreeMap<String, String> = resources
        .iter()
        .map(|(id, r)| {
            let name = r["Metadata"]["aws:cdk:path"]
                .as_str()
                .map(|path| {
                    let mut parts: Vec<&str> = path.split('/').collect();
                    if parts.last() == Some(&"Resource") {
                        parts.pop();
                    }
                    parts.last().copied().unwrap_or(path).to_owned()
                })
                .unwrap_or_else(|| id.clone());
            (id.clone(), name)
        })
        .collect();
    let mut parameters: BTreeMap<String, (String, bool)> = BTreeMap::new();
    for (name, declared) in template["Parameters"].as_object().into_iter().flatten() {
        let kind = declared["Type"].as_str().unwrap_or_default();
        let is_list = kind == "CommaDelimitedList" || kind.starts_with("List<");
        let value = given
            .get(name)
            .cloned()
            .or_else(|| declared.get("Default").map(scalar))
            .unwrap_or_default();
        parameters.insert(name.clone(), (value, is_list));
    }
    let mut e = Evaluator {
        names,
        parameters,
        pseudo: PSEUDO.into_iter().collect(),
        conditions: BTreeMap::new(),
        declared: template["Conditions"]
            .as_object()
            .cloned()
            .unwrap_or_default(),
    };
    let condition_names: Vec<String> = e.declared.keys().cloned().collect();
    for name in condition_names {
        let holds = e.condition(&name);
        e.conditions.insert(name, holds);
    }
    let mut out = BTreeMap::new();
    for (id, resource) in resources {
        if resource["Type"] == "AWS::CDK::Metadata" {
            continue;
        }
        if let Some(condition) = resource["Condition"].as_str()
            && !e.conditions.get(condition).copied().unwrap_or(false)
        {
            continue;
        }
        let mut evaluated = Map::new();
        evaluated.insert("Type".into(), resource["Type"].clone());
        if let Some(binary) = resource["Metadata"]["BuildProperties"]["Binary"].as_str() {
            evaluated.insert("Binary".into(), json!(binary));
        }
        for key in ["DeletionPolicy", "UpdateReplacePolicy"] {
            if let Some(v) = resource.get(key) {
                evaluated.insert(key.into(), v.clone());
            }
        }
        let mut properties = resource.get("Properties").cloned().unwrap_or(json!({}));
        if let Some(props) = properties.as_object_mut() {
            // The code is where each path builds it to; the functions'
            // binaries are compared by `Binary`.
            if props.contains_key("Code") {
                props.insert("Code".into(), json!("<code>"));
            }
            // SAM marks what it made; CloudFormation ignores the tag.
            if let Some(Value::Array(tags)) = props.get_mut("Tags") {
                tags.retain(|t| t["Key"] != "lambda:createdBy");
                if tags.is_empty() {
                    props.remove("Tags");
                }
            }
        }
        evaluated.insert(
            "Properties".into(),
            e.value(&properties).unwrap_or(json!({})),
        );
        let name = e.names[id].clone();
        assert!(
            out.insert(name.clone(), Value::Object(evaluated)).is_none(),
            "two resources are named {name}"
        );
    }
    let outputs = template["Outputs"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(id, o)| Some((id.clone(), e.value(&o["Value"])?)))
        .collect();
    Evaluated {
        resources: out,
        outputs,
    }
}

/// A scalar as CloudFormation passes it (a number or boolean as its text).
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

struct Evaluator {
    names: BTreeMap<String, String>,
    parameters: BTreeMap<String, (String, bool)>,
    pseudo: BTreeMap<&'static str, &'static str>,
    conditions: BTreeMap<String, bool>,
    declared: Map<String, Value>,
}

impl Evaluator {
    fn condition(&self, name: &str) -> bool {
        if let Some(known) = self.conditions.get(name) {
            return *known;
        }
        let expression = self
            .declared
            .get(name)
            .unwrap_or_else(|| fail("evaluate a condition", format!("no condition {name}")));
        self.holds(expression)
    }

    fn holds(&self, expression: &Value) -> bool {
        let (function, args) = single(expression)
            .unwrap_or_else(|| fail("evaluate a condition", expression.to_string()));
        match function {
            "Fn::Equals" => self.value(&args[0]) == self.value(&args[1]),
            "Fn::Not" => !self.holds(&args[0]),
            "Fn::And" => args.as_array().into_iter().flatten().all(|a| self.holds(a)),
            "Fn::Or" => args.as_array().into_iter().flatten().any(|a| self.holds(a)),
            "Condition" => self.condition(args.as_str().unwrap_or_default()),
            other => fail("evaluate a condition", format!("cannot evaluate {other}")),
        }
    }

    fn reference(&self, target: &str) -> Option<Value> {
        if target == "AWS::NoValue" {
            return None;
        }
        if let Some(v) = self.pseudo.get(target) {
            return Some(json!(v));
        }
        if let Some((value, is_list)) = self.parameters.get(target) {
            if *is_list {
                let items: Vec<&str> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect();
                return Some(json!(items));
            }
            return Some(json!(value));
        }
        let name = self
            .names
            .get(target)
            .unwrap_or_else(|| fail("evaluate a Ref", format!("nothing is named {target}")));
        Some(json!(format!("«{name}»")))
    }

    fn attribute(&self, id: &str, attribute: &str) -> String {
        let name = self
            .names
            .get(id)
            .unwrap_or_else(|| fail("evaluate a GetAtt", format!("nothing is named {id}")));
        format!("«{name}.{attribute}»")
    }

    fn text(&self, v: &Value) -> String {
        match self.value(v) {
            Some(Value::String(s)) => s,
            Some(other) => scalar(&other),
            None => String::new(),
        }
    }

    /// `v` evaluated; `None` for `AWS::NoValue`.
    fn value(&self, v: &Value) -> Option<Value> {
        if let Some((function, args)) = single(v) {
            return self.intrinsic(function, args);
        }
        match v {
            Value::Object(map) => Some(Value::Object(
                map.iter()
                    .filter_map(|(k, v)| Some((k.clone(), self.value(v)?)))
                    .collect(),
            )),
            Value::Array(items) => Some(Value::Array(
                items.iter().filter_map(|v| self.value(v)).collect(),
            )),
            Value::Number(_) | Value::Bool(_) => Some(json!(scalar(v))),
            other => Some(other.clone()),
        }
    }

    fn intrinsic(&self, function: &str, args: &Value) -> Option<Value> {
        let step = "evaluate an intrinsic function";
        match function {
            "Ref" => self.reference(args.as_str().unwrap_or_default()),
            "Fn::GetAtt" => {
                let (id, attribute) = match args {
                    Value::Array(a) => (
                        a[0].as_str().unwrap_or_default().to_owned(),
                        a[1].as_str().unwrap_or_default().to_owned(),
                    ),
                    Value::String(s) => {
                        let (id, attribute) = s.split_once('.').unwrap_or((s, ""));
                        (id.to_owned(), attribute.to_owned())
                    }
                    other => fail(step, format!("Fn::GetAtt of {other}")),
                };
                Some(json!(self.attribute(&id, &attribute)))
            }
            "Fn::Sub" => {
                let (text, vars) = match args {
                    Value::String(s) => (s.clone(), Map::new()),
                    Value::Array(a) => (
                        a[0].as_str().unwrap_or_default().to_owned(),
                        a[1].as_object().cloned().unwrap_or_default(),
                    ),
                    other => fail(step, format!("Fn::Sub of {other}")),
                };
                Some(json!(self.substitute(&text, &vars)))
            }
            "Fn::Join" => {
                let separator = args[0].as_str().unwrap_or_default();
                let parts = match self.value(&args[1]) {
                    Some(Value::Array(parts)) => parts,
                    other => fail(step, format!("Fn::Join of {other:?}")),
                };
                let texts: Vec<String> = parts.iter().map(scalar).collect();
                Some(json!(texts.join(separator)))
            }
            "Fn::Select" => {
                let index = self.text(&args[0]).parse::<usize>().unwrap_or(usize::MAX);
                match self.value(&args[1]) {
                    Some(Value::Array(items)) => items.get(index).cloned(),
                    other => fail(step, format!("Fn::Select of {other:?}")),
                }
            }
            "Fn::Split" => {
                let separator = args[0].as_str().unwrap_or_default();
                let whole = self.text(&args[1]);
                Some(json!(whole.split(separator).collect::<Vec<_>>()))
            }
            "Fn::If" => {
                let condition = args[0].as_str().unwrap_or_default();
                let branch = if self.condition(condition) {
                    &args[1]
                } else {
                    &args[2]
                };
                self.value(branch)
            }
            other => fail(step, format!("cannot evaluate {other}: {args}")),
        }
    }

    /// `Fn::Sub`'s text with each `${X}` replaced.
    fn substitute(&self, text: &str, vars: &Map<String, Value>) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[start..]);
                return out;
            };
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(v) = vars.get(name) {
                out.push_str(&self.text(v));
            } else if let Some((id, attribute)) = name.split_once('.')
                && !self.pseudo.contains_key(name)
            {
                out.push_str(&self.attribute(id, attribute));
            } else {
                let value = self.reference(name).unwrap_or(json!(""));
                out.push_str(&scalar(&value));
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }
}

/// The function and argument of an intrinsic (`{"Ref": …}`, `{"Fn::…": …}`,
/// `{"Condition": …}`), else `None`.
fn single(v: &Value) -> Option<(&str, &Value)> {
    let map = v.as_object().filter(|m| m.len() == 1)?;
    let (k, args) = map.iter().next()?;
    (k == "Ref" || k == "Condition" || k.starts_with("Fn::")).then_some((k.as_str(), args))
}

/// The first place `a` and `b` differ, as a path and both values.
pub fn first_difference(path: &str, a: &Value, b: &Value) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                let here = format!("{path}.{k}");
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => first_difference(&here, p, q),
                    (p, q) => Some(format!("{here}: {p:?} ≠ {q:?}")),
                }
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| first_difference(&format!("{path}[{i}]"), p, q)),
        _ if a == b => None,
        _ => Some(format!("{path}: {a} ≠ {b}")),
    }
}
