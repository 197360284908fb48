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
        } else if let Some(problem) = sub_template_problem(&command_template) {
            problems.push(problem);
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
        {
            use crate::domain::limits::{
                MAX_DOCUMENT_BYTES, MAX_IMAGE_BYTES, MAX_ITEMS, MAX_TEXT_BYTES, count_problem,
                document_problem, length_problem, names_problems, nul_problem,
            };
            problems.extend(length_problem(
                "command_template",
                &command_template,
                MAX_DOCUMENT_BYTES,
            ));
            problems.extend(nul_problem("command_template", &command_template));
            problems.extend(length_problem("image", &image, MAX_IMAGE_BYTES));
            problems.extend(document_problem("schema", &schema));
            problems.extend(document_problem("defaults", &defaults));
            problems.extend(count_problem("env", env.len(), MAX_ITEMS));
            if let Some(uri) = &input.avatar_uri {
                problems.extend(length_problem("avatar_uri", uri, MAX_TEXT_BYTES));
            }
            if let Some(tags) = &input.tags {
                problems.extend(names_problems("tags", tags));
            }
        }
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
        if let Some(problem) =
            payload.and_then(|p| crate::domain::limits::document_problem("template_payload", p))
        {
            return Err(ValidationError::new(problem));
        }
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
        Ok(render(&self.command_template, &merged)?)
    }

    /// Renders the command with the defaults alone, to catch at create what
    /// would fail every execute: a render over a limit. (Other failures may
    /// be a payload's to fix, and are not checked here.)
    pub fn check_render(&self) -> Result<(), ValidationError> {
        match render(&self.command_template, &self.defaults) {
            Err(RenderError::Limit(problem)) => Err(ValidationError::new(problem)),
            _ => Ok(()),
        }
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

/// Most bytes a rendered command may have.
pub const MAX_RENDERED_BYTES: usize = 64 * 1024;
/// Largest width or precision a `printf` verb may ask for.
pub const MAX_PRINTF_WIDTH: usize = 256;

/// Why a template cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderError {
    /// It asked for more than a limit allows; the message names the limit.
    Limit(String),
    /// It failed for its own reasons (a missing key, a bad call).
    Failed(String),
}

impl From<RenderError> for ValidationError {
    fn from(e: RenderError) -> Self {
        match e {
            RenderError::Limit(m) | RenderError::Failed(m) => ValidationError::new(m),
        }
    }
}

/// Templates may not define or call templates: `template` and `block` can
/// recurse deeper than any stack.
fn sub_template_problem(command_template: &str) -> Option<String> {
    let actions = command_template.split("{{").skip(1);
    actions
        .filter_map(|action| {
            let action = action.trim_start_matches('-').trim_start();
            ["define", "template", "block"]
                .into_iter()
                .find(|word| {
                    action.starts_with(word)
                        && action[word.len()..]
                            .chars()
                            .next()
                            .is_none_or(|c| !c.is_alphanumeric() && c != '_')
                })
        })
        .next()
        .map(|word| {
            format!(
                "command_template may not use `{word}`: sub-templates can recurse without end; write the command in one template"
            )
        })
}

/// A writer that takes at most [`MAX_RENDERED_BYTES`], then refuses: the
/// render stops at the first byte over the limit.
struct Bounded(Vec<u8>);

/// The message of a render stopped by [`Bounded`].
const TOO_LONG: &str = "rendered command over the limit";

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_RENDERED_BYTES {
            return Err(std::io::Error::other(TOO_LONG));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `printf`, refusing widths and precisions over [`MAX_PRINTF_WIDTH`] (a
/// `%065536d` would otherwise make a string as large as it asks).
fn f_printf(args: &[gtmpl::Value]) -> FuncResult {
    if let Some(gtmpl::Value::String(format)) = args.first() {
        let mut rest = format.as_str();
        while let Some(at) = rest.find('%') {
            rest = &rest[at + 1..];
            let spec: String = rest
                .chars()
                .take_while(|c| {
                    c.is_ascii_digit()
                        || matches!(c, '.' | '-' | '+' | '#' | ' ' | '0' | '*' | '[' | ']')
                })
                .collect();
            let too_wide = spec.contains('*')
                || spec
                    .split(|c: char| !c.is_ascii_digit())
                    .filter(|n| !n.is_empty())
                    .any(|n| n.len() > 3 || n.parse::<usize>().is_ok_and(|w| w > MAX_PRINTF_WIDTH));
            if too_wide {
                return Err(gtmpl::FuncError::Generic(format!(
                    "printf width or precision over {MAX_PRINTF_WIDTH} in \"%{spec}\": ask for less"
                )));
            }
        }
    }
    gtmpl::funcs::printf(args)
}

fn parse(command_template: &str) -> Result<gtmpl::Template, String> {
    let mut tmpl = gtmpl::Template::default();
    let funcs: [(&str, gtmpl::Func); 9] = [
        ("printf", f_printf),
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

/// Renders a command template with `data`, within [`MAX_RENDERED_BYTES`]
/// and [`MAX_PRINTF_WIDTH`].
pub fn render(command_template: &str, data: &Value) -> Result<String, RenderError> {
    let tmpl = parse(command_template)
        .map_err(|e| RenderError::Failed(format!("command_template does not parse: {e}")))?;
    let mut out = Bounded(Vec::new());
    match tmpl.execute(&mut out, &gtmpl::Context::from(to_gtmpl(data))) {
        Ok(()) => String::from_utf8(out.0)
            .map_err(|_| RenderError::Failed("the rendered command is not UTF-8 text".into())),
        Err(e) => {
            let text = e.to_string();
            if text.contains(TOO_LONG) {
                Err(RenderError::Limit(format!(
                    "the rendered command would be over {} KiB, the most a command may be: render less (fewer loop rounds, shorter values)",
                    MAX_RENDERED_BYTES / 1024
                )))
            } else if text.contains("printf width") {
                Err(RenderError::Limit(format!(
                    "the command could not be rendered: {text}"
                )))
            } else {
                Err(RenderError::Failed(format!(
                    "the command could not be rendered: {text}"
                )))
            }
        }
    }
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
