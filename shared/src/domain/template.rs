//! Job templates (Flotilla's v7): a command written as a Go text/template, a
//! JSON Schema for its payload, defaults, and the resources of the runs it
//! makes. A template is versioned by name: creating one whose content differs
//! from the latest version of that name makes the next version; creating the
//! same content again returns the latest.
//!
//! Executing a template merges the payload over the defaults (objects
//! recursively, the payload winning), validates the result against the schema
//! (every violation reported, with its location), and renders the command.
//!
//! Rendering is Go's text/template syntax (through `gtmpl`): `{{ .field }}`,
//! `{{ .a.b }}`, `{{ if }}`/`{{ else }}`/`{{ end }}`, `{{ range }}`, `{{ with }}`,
//! pipelines, comparisons (`eq`, `ne`, `lt`, `le`, `gt`, `ge`), `and`, `or`,
//! `not`, `len`, `index`, `print`, `printf`, and these sprig helpers:
//! `default`, `upper`, `lower`, `trim`, `quote`, `squote`, `join`, `toJson`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::EnvVar;
use crate::domain::error::ValidationError;
use crate::domain::spec::Resources;

/// Memory of a template's runs when the template gives none (MB).
pub const DEFAULT_MEMORY: u64 = 512;
/// CPU of a template's runs when the template gives none (CPU units).
pub const DEFAULT_CPU: u64 = 256;

/// One version of a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Template {
    /// `tpl-<uuid tail>`.
    pub template_id: String,
    /// Name shared by every version.
    pub template_name: String,
    /// Version, from 1.
    pub version: u32,
    /// JSON Schema of the payload.
    pub schema: Value,
    /// The command, a Go text/template.
    pub command_template: String,
    /// Payload defaults.
    pub defaults: Value,
    /// Picture for UIs.
    #[serde(default)]
    pub avatar_uri: String,
    /// Image of its runs.
    pub image: String,
    /// Resources of its runs; memory and cpu are always set (their defaults
    /// are [`DEFAULT_MEMORY`] and [`DEFAULT_CPU`]).
    #[serde(flatten)]
    pub resources: Resources,
    /// Env of its runs.
    #[serde(default)]
    pub env: Vec<EnvVar>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A template create body.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, schemars::JsonSchema)]
pub struct TemplateInput {
    /// Name (required).
    pub template_name: Option<String>,
    /// JSON Schema (required, an object).
    pub schema: Option<Value>,
    /// Command template (required).
    pub command_template: Option<String>,
    /// Defaults (an object).
    pub defaults: Option<Value>,
    /// Picture.
    pub avatar_uri: Option<String>,
    /// Image (required).
    pub image: Option<String>,
    /// Resources; memory defaults to 512 and cpu to 256.
    #[serde(flatten)]
    pub resources: Resources,
    /// Env.
    pub env: Option<Vec<EnvVar>>,
    /// Tags.
    pub tags: Option<Vec<String>>,
}

fn is_template_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl Template {
    /// Validates a create body into version `version` with id `template_id`.
    pub fn create(
        template_id: String,
        version: u32,
        input: TemplateInput,
    ) -> Result<Self, ValidationError> {
        let mut problems = Vec::new();
        let name = input.template_name.unwrap_or_default();
        if name.is_empty() {
            problems.push("template_name is required".to_owned());
        } else if !is_template_name(&name) {
            problems.push(format!(
                "template_name \"{name}\" is not valid: use up to 128 letters, digits, '-', '_' or '.'"
            ));
        }
        let image = input.image.unwrap_or_default();
        if image.trim().is_empty() {
            problems.push("image is required, e.g. \"python:3.12\"".to_owned());
        }
        let command_template = input.command_template.unwrap_or_default();
        if command_template.trim().is_empty() {
            problems.push(
                "command_template is required, e.g. \"python train.py --epochs {{ .epochs }}\""
                    .to_owned(),
            );
        } else if let Err(e) = parse(&command_template) {
            problems.push(format!("command_template does not parse: {e}"));
        }
        let schema = input.schema.unwrap_or(Value::Null);
        if !schema.is_object() {
            problems.push(
                "schema is required and must be a JSON Schema object, e.g. {\"type\": \"object\"}"
                    .to_owned(),
            );
        } else if let Err(e) = jsonschema::validator_for(&schema) {
            problems.push(format!("schema is not a valid JSON Schema: {e}"));
        }
        let defaults = input.defaults.unwrap_or_else(|| Value::Object(Map::new()));
        if !defaults.is_object() {
            problems.push("defaults must be a JSON object".to_owned());
        }
        let env = input.env.unwrap_or_default();
        if let Err(e) = crate::domain::validate_env(&env, "env") {
            problems.extend(e.problems);
        }
        problems.extend(input.resources.problems());
        ValidationError::from_problems(problems)?;
        Ok(Self {
            template_id,
            template_name: name,
            version,
            schema,
            command_template,
            defaults,
            avatar_uri: input.avatar_uri.unwrap_or_default(),
            image,
            resources: input.resources.or(Resources {
                memory: Some(DEFAULT_MEMORY),
                cpu: Some(DEFAULT_CPU),
                ..Resources::default()
            }),
            env,
            tags: input.tags.unwrap_or_default(),
        })
    }

    /// Whether `other` says the same thing (ids and versions aside).
    pub fn same_content(&self, other: &Template) -> bool {
        let strip = |t: &Template| Template {
            template_id: String::new(),
            version: 0,
            ..t.clone()
        };
        strip(self) == strip(other)
    }

    /// The command for `payload`: merged over the defaults, validated against
    /// the schema, rendered. Every schema violation is reported.
    pub fn command_for(&self, payload: Option<&Value>) -> Result<String, ValidationError> {
        let mut merged = self.defaults.clone();
        match payload {
            None | Some(Value::Null) => {}
            Some(p @ Value::Object(_)) => merge(&mut merged, p),
            Some(_) => {
                return Err(ValidationError::new(
                    "template_payload must be a JSON object",
                ));
            }
        }
        let validator = jsonschema::validator_for(&self.schema).map_err(|e| {
            ValidationError::new(format!(
                "template {} v{} has an invalid schema: {e}",
                self.template_name, self.version
            ))
        })?;
        let problems: Vec<String> = validator
            .iter_errors(&merged)
            .map(|e| {
                let at = e.instance_path().to_string();
                if at.is_empty() {
                    format!("template_payload: {e}")
                } else {
                    format!("template_payload{at}: {e}")
                }
            })
            .collect();
        ValidationError::from_problems(problems)?;
        render(&self.command_template, &merged)
    }
}

/// Merges `over` into `base`: objects key by key, recursively; anything else
/// replaces.
pub fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

fn to_gtmpl(value: &Value) -> gtmpl::Value {
    match value {
        Value::Null => gtmpl::Value::Nil,
        Value::Bool(b) => gtmpl::Value::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => gtmpl::Value::from(i),
            (_, Some(u), _) => gtmpl::Value::from(u),
            (_, _, Some(f)) => gtmpl::Value::from(f),
            _ => gtmpl::Value::Nil,
        },
        Value::String(s) => gtmpl::Value::String(s.clone()),
        Value::Array(items) => gtmpl::Value::Array(items.iter().map(to_gtmpl).collect()),
        Value::Object(map) => gtmpl::Value::Map(
            map.iter()
                .map(|(k, v)| (k.clone(), to_gtmpl(v)))
                .collect::<HashMap<_, _>>(),
        ),
    }
}

fn to_json(value: &gtmpl::Value) -> Value {
    match value {
        gtmpl::Value::NoValue | gtmpl::Value::Nil | gtmpl::Value::Function(_) => Value::Null,
        gtmpl::Value::Bool(b) => Value::Bool(*b),
        gtmpl::Value::String(s) => Value::String(s.clone()),
        gtmpl::Value::Number(n) => n
            .as_i64()
            .map(Value::from)
            .or_else(|| n.as_u64().map(Value::from))
            .or_else(|| n.as_f64().map(Value::from))
            .unwrap_or(Value::Null),
        gtmpl::Value::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        gtmpl::Value::Map(m) | gtmpl::Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
    }
}

/// The text of a value as a template prints it.
fn text(value: &gtmpl::Value) -> String {
    match value {
        gtmpl::Value::String(s) => s.clone(),
        gtmpl::Value::NoValue | gtmpl::Value::Nil => String::new(),
        other => other.to_string(),
    }
}

fn is_empty(value: &gtmpl::Value) -> bool {
    match value {
        gtmpl::Value::NoValue | gtmpl::Value::Nil => true,
        gtmpl::Value::Bool(b) => !b,
        gtmpl::Value::String(s) => s.is_empty(),
        gtmpl::Value::Array(a) => a.is_empty(),
        gtmpl::Value::Map(m) | gtmpl::Value::Object(m) => m.is_empty(),
        gtmpl::Value::Number(n) => n.as_f64() == Some(0.0),
        gtmpl::Value::Function(_) => false,
    }
}

type FuncResult = Result<gtmpl::Value, gtmpl::FuncError>;

fn one<'a>(name: &str, args: &'a [gtmpl::Value]) -> Result<&'a gtmpl::Value, gtmpl::FuncError> {
    match args {
        [a] => Ok(a),
        _ => Err(gtmpl::FuncError::ExactlyXArgs(name.to_owned(), 1)),
    }
}

fn f_default(args: &[gtmpl::Value]) -> FuncResult {
    match args {
        [fallback] => Ok(fallback.clone()),
        [fallback, given] => Ok(if is_empty(given) {
            fallback.clone()
        } else {
            given.clone()
        }),
        _ => Err(gtmpl::FuncError::AtLeastXArgs("default".into(), 1)),
    }
}

fn f_upper(args: &[gtmpl::Value]) -> FuncResult {
    Ok(text(one("upper", args)?).to_uppercase().into())
}

fn f_lower(args: &[gtmpl::Value]) -> FuncResult {
    Ok(text(one("lower", args)?).to_lowercase().into())
}

fn f_trim(args: &[gtmpl::Value]) -> FuncResult {
    Ok(text(one("trim", args)?).trim().to_owned().into())
}

fn f_quote(args: &[gtmpl::Value]) -> FuncResult {
    let parts: Vec<String> = args
        .iter()
        .map(|a| format!("\"{}\"", text(a).replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    Ok(parts.join(" ").into())
}

fn f_squote(args: &[gtmpl::Value]) -> FuncResult {
    let parts: Vec<String> = args
        .iter()
        .map(|a| format!("'{}'", text(a).replace('\'', "'\\''")))
        .collect();
    Ok(parts.join(" ").into())
}

fn f_join(args: &[gtmpl::Value]) -> FuncResult {
    match args {
        [sep, gtmpl::Value::Array(items)] => {
            let parts: Vec<String> = items.iter().map(text).collect();
            Ok(parts.join(&text(sep)).into())
        }
        [_, other] => Ok(text(other).into()),
        _ => Err(gtmpl::FuncError::ExactlyXArgs("join".into(), 2)),
    }
}

fn f_to_json(args: &[gtmpl::Value]) -> FuncResult {
    Ok(to_json(one("toJson", args)?).to_string().into())
}

fn parse(command_template: &str) -> Result<gtmpl::Template, String> {
    let mut tmpl = gtmpl::Template::default();
    let funcs: [(&str, gtmpl::Func); 8] = [
        ("default", f_default),
        ("upper", f_upper),
        ("lower", f_lower),
        ("trim", f_trim),
        ("quote", f_quote),
        ("squote", f_squote),
        ("join", f_join),
        ("toJson", f_to_json),
    ];
    tmpl.add_funcs(&funcs);
    tmpl.parse(command_template).map_err(|e| e.to_string())?;
    Ok(tmpl)
}

/// Renders a command template with `data`.
pub fn render(command_template: &str, data: &Value) -> Result<String, ValidationError> {
    let tmpl = parse(command_template)
        .map_err(|e| ValidationError::new(format!("command_template does not parse: {e}")))?;
    tmpl.render(&gtmpl::Context::from(to_gtmpl(data)))
        .map_err(|e| ValidationError::new(format!("the command could not be rendered: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template() -> Template {
        Template::create(
            "tpl-1".into(),
            1,
            TemplateInput {
                template_name: Some("train".into()),
                image: Some("python:3.12".into()),
                command_template: Some(
                    "python train.py --epochs {{ .epochs }}{{ if .gpu }} --gpu{{ end }}{{ range .tags }} --tag {{ . }}{{ end }} --name {{ .name | default \"anon\" | upper }}"
                        .into(),
                ),
                schema: Some(json!({
                    "type": "object",
                    "required": ["epochs"],
                    "properties": {
                        "epochs": {"type": "integer", "minimum": 1},
                        "gpu": {"type": "boolean"},
                        "tags": {"type": "array", "items": {"type": "string"}},
                        "name": {"type": "string"}
                    }
                })),
                defaults: Some(json!({"gpu": false, "tags": []})),
                ..Default::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn a_payload_merged_over_the_defaults_renders_the_command() {
        let t = template();
        assert_eq!(t.resources.memory, Some(DEFAULT_MEMORY));
        let cmd = t
            .command_for(Some(
                &json!({"epochs": 3, "gpu": true, "tags": ["a", "b"], "name": "x"}),
            ))
            .unwrap();
        assert_eq!(
            cmd,
            "python train.py --epochs 3 --gpu --tag a --tag b --name X"
        );
        let cmd = t.command_for(Some(&json!({"epochs": 1}))).unwrap();
        assert_eq!(cmd, "python train.py --epochs 1 --name ANON");
    }

    #[test]
    fn every_schema_violation_is_reported_with_its_location() {
        let err = template()
            .command_for(Some(&json!({"epochs": 0, "gpu": "yes"})))
            .unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        assert!(err.to_string().contains("/epochs"), "{err}");
        assert!(err.to_string().contains("/gpu"), "{err}");
        let err = template().command_for(None).unwrap_err();
        assert!(err.to_string().contains("epochs"), "{err}");
    }

    #[test]
    fn a_template_needs_a_name_image_command_and_schema_that_parse() {
        let err = Template::create(
            "tpl-2".into(),
            1,
            TemplateInput {
                command_template: Some("{{ if }".into()),
                schema: Some(json!({"type": 12})),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(err.problems.len(), 4, "{err}");
    }

    #[test]
    fn objects_merge_recursively_and_the_payload_wins() {
        let mut base = json!({"a": {"x": 1, "y": 2}, "b": [1]});
        merge(&mut base, &json!({"a": {"y": 3}, "b": [2, 3]}));
        assert_eq!(base, json!({"a": {"x": 1, "y": 3}, "b": [2, 3]}));
    }
}
