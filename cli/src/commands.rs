//! The commands for people at a terminal: definitions (`task`), templates,
//! launching (`run`), following (`logs`, `status`, `events`), finding
//! (`runs`) and stopping runs, each one or a few API calls through
//! [`Client`], printed as a table or as the API's JSON.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};

use shared::domain::template::Template;

use crate::client::{CliError, Client, segment};
use crate::follow::{FollowOptions, exit_code_of, follow, stop_run};
use crate::output::{Format, Out, record, table, text, time};

/// `flotilla task …`: job definitions.
#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// List definitions.
    #[command(visible_alias = "list")]
    Ls {
        /// Only aliases containing this.
        #[arg(long)]
        alias: Option<String>,
        /// Only this group.
        #[arg(long)]
        group: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show one definition.
    Show {
        /// Its alias.
        alias: String,
    },
    /// Create a definition from a JSON file (`-` reads stdin).
    Create {
        /// The definition: `alias` and `image` required.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Change a definition: the fields in the file replace its own.
    Update {
        /// Its alias.
        alias: String,
        /// The fields to change, as JSON (`-` reads stdin).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Delete a definition (its runs stay).
    #[command(visible_alias = "delete")]
    Rm {
        /// Its alias.
        alias: String,
    },
}

/// `flotilla template …`: parameterised jobs.
#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// List templates (the latest version of each, or --all).
    #[command(visible_alias = "list")]
    Ls {
        /// Every version, not only the latest.
        #[arg(long)]
        all: bool,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show a template: by id, or NAME[@VERSION] (the latest without one).
    Show {
        /// Template id, or NAME[@VERSION].
        template: String,
    },
    /// Create a template (or its next version) from a JSON file (`-` reads stdin).
    Create {
        /// `template_name`, `image`, `command_template` and `schema` required.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
}

/// `flotilla run`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  flotilla run hello-flotilla -e USERNAME=ana --follow
  flotilla run train --memory 4096 --cpu 1024 --cluster gpu --timeout 3600
  flotilla run --template train@latest -p epochs=3 -p gpu=true --follow && next-step")]
pub struct RunArgs {
    /// The definition's alias (or --template).
    #[arg(required_unless_present = "template", conflicts_with = "template")]
    pub alias: Option<String>,
    /// Run a template: NAME[@VERSION], the latest without a version.
    #[arg(long, value_name = "NAME[@VERSION]")]
    pub template: Option<String>,
    /// A template parameter, KEY=VALUE; VALUE is read as JSON when it is
    /// JSON (3, true, [1,2], "x"), else as text. Repeat it.
    #[arg(
        short = 'p',
        long = "param",
        value_name = "KEY=VALUE",
        requires = "template"
    )]
    pub params: Vec<String>,
    /// An environment variable of the run, KEY=VALUE. Repeat it.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// CPU units (1024 to a vCPU).
    #[arg(long)]
    pub cpu: Option<u64>,
    /// Memory in MB.
    #[arg(long)]
    pub memory: Option<u64>,
    /// GPUs.
    #[arg(long)]
    pub gpu: Option<u64>,
    /// The cluster to run on [default: the server's].
    #[arg(long)]
    pub cluster: Option<String>,
    /// The command, instead of the definition's.
    #[arg(long)]
    pub command: Option<String>,
    /// Seconds the run may take before it is stopped.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// A key that makes launching again return the same run.
    #[arg(long)]
    pub idempotence_key: Option<String>,
    /// Who owns the run [default: the token's user; without a token, $USER].
    #[arg(long, env = "FLOTILLA_OWNER")]
    pub owner: Option<String>,
    /// Follow the run: print its log as it grows and exit with its exit code.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// With --follow: on Ctrl-C, stop the run without asking.
    #[arg(long, requires = "follow")]
    pub stop_on_interrupt: bool,
}

/// `flotilla runs`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  flotilla runs --status RUNNING --status QUEUED
  flotilla runs --alias train --since 1d --limit 20
  flotilla runs --owner ana --watch")]
pub struct RunsArgs {
    /// Only runs in this status (QUEUED, PENDING, RUNNING, STOPPED,
    /// NEEDS_RETRY). Repeat it for any of several.
    #[arg(long, value_parser = ["QUEUED", "PENDING", "RUNNING", "STOPPED", "NEEDS_RETRY"], ignore_case = true)]
    pub status: Vec<String>,
    /// Only runs of aliases containing this.
    #[arg(long)]
    pub alias: Option<String>,
    /// Only runs of this owner.
    #[arg(long)]
    pub owner: Option<String>,
    /// Only runs queued in the last span (30s, 15m, 1h, 2d, 1w) or since a
    /// time (2026-11-01T09:30:00Z, or a date).
    #[arg(long)]
    pub since: Option<String>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// Show the list again every 2 seconds until Ctrl-C.
    #[arg(long)]
    pub watch: bool,
}

fn read_json(file: &Path) -> Result<Value, CliError> {
    let (name, text) = if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CliError::Usage(format!("cannot read stdin: {e}")))?;
        ("stdin".to_owned(), text)
    } else {
        let text = std::fs::read_to_string(file)
            .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
        (file.display().to_string(), text)
    };
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| CliError::Usage(format!("{name} is not JSON: {e}")))?;
    if !value.is_object() {
        return Err(CliError::Usage(format!("{name} must hold a JSON object")));
    }
    Ok(value)
}

/// `KEY=VALUE` split at its first `=`.
fn pair<'a>(flag: &str, given: &'a str) -> Result<(&'a str, &'a str), CliError> {
    match given.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim(), value)),
        _ => Err(CliError::Usage(format!(
            "{flag} {given:?} is not KEY=VALUE (e.g. {flag} MODE=test)"
        ))),
    }
}

async fn definition(client: &Client, alias: &str) -> Result<Value, CliError> {
    client
        .get(&format!("/api/v6/task/alias/{}", segment(alias)), &[])
        .await
}

fn definition_id(definition: &Value) -> Result<&str, CliError> {
    definition["definition_id"]
        .as_str()
        .ok_or_else(|| CliError::Transport("the server's definition has no definition_id".into()))
}

/// Runs a `task` command.
pub async fn task(client: &Client, out: Out, command: TaskCommand) -> Result<u8, CliError> {
    match command {
        TaskCommand::Ls {
            alias,
            group,
            limit,
        } => {
            let mut query = vec![
                ("limit".to_owned(), limit.to_string()),
                ("sort_by".to_owned(), "alias".to_owned()),
            ];
            query.extend(alias.map(|a| ("alias".to_owned(), a)));
            query.extend(group.map(|g| ("group_name".to_owned(), g)));
            let page = client.get("/api/v6/task", &query).await?;
            if out.format == Format::Json {
                out.json(&page);
                return Ok(0);
            }
            let rows: Vec<Vec<String>> = page["definitions"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|d| {
                    vec![
                        text(d, "alias"),
                        text(d, "group_name"),
                        text(d, "image"),
                        text(d, "memory"),
                        text(d, "cpu"),
                        text(d, "definition_id"),
                    ]
                })
                .collect();
            println!(
                "{}",
                table(
                    &["ALIAS", "GROUP", "IMAGE", "MEMORY", "CPU", "DEFINITION ID"],
                    &rows
                )
            );
            Ok(0)
        }
        TaskCommand::Show { alias } => {
            let d = definition(client, &alias).await?;
            out.show(&d, || {
                println!(
                    "{}",
                    record(
                        &d,
                        &[
                            "alias",
                            "definition_id",
                            "group_name",
                            "image",
                            "command",
                            "memory",
                            "cpu",
                            "gpu",
                            "env",
                            "tags",
                            "target_cluster",
                            "retry",
                        ]
                    )
                );
            });
            Ok(0)
        }
        TaskCommand::Create { file } => {
            let body = read_json(&file)?;
            let d = client.call(Method::POST, "/api/v6/task", &body).await?;
            out.show(&d, || {
                println!(
                    "created {} ({})",
                    text(&d, "alias"),
                    text(&d, "definition_id")
                );
            });
            Ok(0)
        }
        TaskCommand::Update { alias, file } => {
            let body = read_json(&file)?;
            let current = definition(client, &alias).await?;
            let id = definition_id(&current)?;
            let d = client
                .call(Method::PUT, &format!("/api/v6/task/{}", segment(id)), &body)
                .await?;
            out.show(&d, || {
                println!("updated {} ({id})", text(&d, "alias"));
            });
            Ok(0)
        }
        TaskCommand::Rm { alias } => {
            let current = definition(client, &alias).await?;
            let id = definition_id(&current)?;
            let answer = client
                .delete(&format!("/api/v6/task/{}", segment(id)))
                .await?;
            out.show(&answer, || {
                println!("deleted {alias} ({id}); its runs stay");
            });
            Ok(0)
        }
    }
}

/// `NAME[@VERSION]` as the name and the version (`latest` without one).
fn name_and_version(given: &str) -> Result<(&str, &str), CliError> {
    let (name, version) = given.rsplit_once('@').unwrap_or((given, "latest"));
    if name.is_empty() || version.is_empty() {
        return Err(CliError::Usage(format!(
            "{given:?} is not NAME[@VERSION] (e.g. train or train@3)"
        )));
    }
    Ok((name, version))
}

async fn find_template(client: &Client, given: &str) -> Result<Value, CliError> {
    match client
        .get(&format!("/api/v7/template/{}", segment(given)), &[])
        .await
    {
        Ok(t) => return Ok(t),
        Err(CliError::Api {
            status: 404 | 400, ..
        }) => {}
        Err(e) => return Err(e),
    }
    let (name, version) = name_and_version(given)?;
    let mut offset = 0u64;
    let mut best: Option<Value> = None;
    loop {
        let query = vec![
            ("latest_only".to_owned(), (version == "latest").to_string()),
            ("limit".to_owned(), "100".to_owned()),
            ("offset".to_owned(), offset.to_string()),
        ];
        let page = client.get("/api/v7/template", &query).await?;
        let templates = page["templates"].as_array().cloned().unwrap_or_default();
        for t in &templates {
            let same = t["template_name"].as_str() == Some(name);
            let wanted = version == "latest"
                || t["version"].as_u64().map(|v| v.to_string()).as_deref() == Some(version);
            if same && wanted {
                let newer = best
                    .as_ref()
                    .is_none_or(|b| b["version"].as_u64() < t["version"].as_u64());
                if newer {
                    best = Some(t.clone());
                }
            }
        }
        if templates.len() < 100 {
            break;
        }
        offset += 100;
    }
    best.ok_or_else(|| CliError::Api {
        status: 404,
        message: format!("no template {given}: `flotilla template ls` lists them"),
        problems: vec![],
    })
}

/// Runs a `template` command.
pub async fn template(client: &Client, out: Out, command: TemplateCommand) -> Result<u8, CliError> {
    match command {
        TemplateCommand::Ls { all, limit } => {
            let query = vec![
                ("latest_only".to_owned(), (!all).to_string()),
                ("limit".to_owned(), limit.to_string()),
            ];
            let page = client.get("/api/v7/template", &query).await?;
            if out.format == Format::Json {
                out.json(&page);
                return Ok(0);
            }
            let rows: Vec<Vec<String>> = page["templates"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|t| {
                    vec![
                        text(t, "template_name"),
                        text(t, "version"),
                        text(t, "image"),
                        text(t, "template_id"),
                    ]
                })
                .collect();
            println!(
                "{}",
                table(&["NAME", "VERSION", "IMAGE", "TEMPLATE ID"], &rows)
            );
            Ok(0)
        }
        TemplateCommand::Show { template } => {
            let t = find_template(client, &template).await?;
            out.show(&t, || {
                println!(
                    "{}",
                    record(
                        &t,
                        &[
                            "template_name",
                            "version",
                            "template_id",
                            "image",
                            "command_template",
                            "schema",
                            "defaults",
                            "memory",
                            "cpu",
                        ]
                    )
                );
            });
            Ok(0)
        }
        TemplateCommand::Create { file } => {
            let body = read_json(&file)?;
            let answer = client.call(Method::POST, "/api/v7/template", &body).await?;
            out.show(&answer, || {
                let t = &answer["template"];
                let verb = if answer["did_create"] == true {
                    "created"
                } else {
                    "unchanged:"
                };
                println!(
                    "{verb} {} version {} ({})",
                    text(t, "template_name"),
                    text(t, "version"),
                    text(t, "template_id")
                );
            });
            Ok(0)
        }
    }
}

/// The owner a launch names: the one given, none when the credentials
/// name the caller (a token's user, an IAM principal), else the profile's
/// `owner`, else `$USER` (or `$LOGNAME`).
fn owner(client: &Client, given: Option<String>) -> Result<Option<String>, CliError> {
    if let Some(owner) = given.filter(|o| !o.trim().is_empty()) {
        return Ok(Some(owner));
    }
    if client.auth().names_caller() {
        return Ok(None);
    }
    if let Some(owner) = client.owner() {
        return Ok(Some(owner.to_owned()));
    }
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .map(Some)
        .ok_or_else(|| {
            CliError::Usage(
                "a run needs an owner: give --owner (or FLOTILLA_OWNER, or a profile's owner)"
                    .into(),
            )
        })
}

/// The launch fields of `args` as an execute body.
fn launch_body(args: &RunArgs) -> Result<Map<String, Value>, CliError> {
    let mut body = Map::new();
    let mut env = Vec::new();
    for given in &args.env {
        let (name, value) = pair("-e", given)?;
        env.push(json!({"name": name, "value": value}));
    }
    if !env.is_empty() {
        body.insert("env".into(), Value::Array(env));
    }
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            body.insert(key.to_owned(), value);
        }
    };
    put("cpu", args.cpu.map(Value::from));
    put("memory", args.memory.map(Value::from));
    put("gpu", args.gpu.map(Value::from));
    put("command", args.command.clone().map(Value::from));
    put("active_deadline_seconds", args.timeout.map(Value::from));
    put(
        "idempotence_key",
        args.idempotence_key.clone().map(Value::from),
    );
    Ok(body)
}

/// A template parameter's value: JSON when it parses as JSON, else text.
fn param_value(value: &str) -> Value {
    serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()))
}

/// Checks `payload` against `template`'s schema as the server would (the
/// same rules, so the same problems), before anything is sent; answers the
/// template's name and version.
fn check_payload(template: &Value, payload: &Value) -> Result<(String, String), CliError> {
    let template: Template = serde_json::from_value(template.clone())
        .map_err(|e| CliError::Transport(format!("the server's template cannot be read: {e}")))?;
    template.command_for(Some(payload)).map_err(|e| {
        let problems = e.problems;
        CliError::Checked {
            message: format!(
                "template {} version {} does not take these parameters (checked here; no run was launched)",
                template.template_name, template.version
            ),
            problems,
        }
    })?;
    Ok((template.template_name, template.version.to_string()))
}

/// Runs `flotilla run`.
pub async fn run(client: &Client, out: Out, args: RunArgs) -> Result<u8, CliError> {
    let mut body = launch_body(&args)?;
    let owner = owner(client, args.owner.clone())?;
    let run = if let Some(template) = &args.template {
        name_and_version(template)?;
        let mut payload = Map::new();
        for given in &args.params {
            let (key, value) = pair("-p", given)?;
            payload.insert(key.to_owned(), param_value(value));
        }
        let payload = Value::Object(payload);
        // The version checked is the version launched, even if a newer
        // one is created meanwhile.
        let found = find_template(client, template).await?;
        let (name, version) = check_payload(&found, &payload)?;
        body.insert("template_payload".into(), payload);
        if let Some(owner) = owner {
            body.insert("owner_id".into(), Value::from(owner));
        }
        if let Some(cluster) = &args.cluster {
            body.insert("cluster_name".into(), Value::from(cluster.clone()));
        }
        client
            .call(
                Method::PUT,
                &format!(
                    "/api/v7/template/name/{}/version/{}/execute",
                    segment(&name),
                    segment(&version)
                ),
                &Value::Object(body),
            )
            .await?
    } else {
        let alias = args.alias.as_deref().unwrap_or_default();
        if let Some(owner) = owner {
            body.insert("run_tags".into(), json!({ "owner_id": owner }));
        }
        if let Some(cluster) = &args.cluster {
            body.insert("cluster".into(), Value::from(cluster.clone()));
        }
        client
            .call(
                Method::PUT,
                &format!("/api/v6/task/alias/{}/execute", segment(alias)),
                &Value::Object(body),
            )
            .await?
    };
    let run_id = run["run_id"]
        .as_str()
        .ok_or_else(|| CliError::Transport(format!("the server's answer has no run_id: {run}")))?
        .to_owned();
    if !args.follow {
        out.show(&run, || {
            println!("{run_id}");
            eprintln!(
                "run {run_id} {}; follow it with `flotilla logs {run_id} -f`",
                text(&run, "status")
            );
        });
        return Ok(0);
    }
    eprintln!("run {run_id} {}", text(&run, "status"));
    follow(
        client,
        &run_id,
        FollowOptions {
            logs: true,
            progress: true,
            stop_on_interrupt: args.stop_on_interrupt,
        },
    )
    .await
}

/// Runs `flotilla logs`.
pub async fn logs(
    client: &Client,
    run_id: &str,
    follow_it: bool,
    stop_on_interrupt: bool,
) -> Result<u8, CliError> {
    if follow_it {
        return follow(
            client,
            run_id,
            FollowOptions {
                logs: true,
                progress: true,
                stop_on_interrupt,
            },
        )
        .await;
    }
    // The run must exist: a 404 here says so, rather than an empty log.
    client
        .get(&format!("/api/v6/history/{}", segment(run_id)), &[])
        .await?;
    let mut last_seen: Option<String> = None;
    loop {
        let query: Vec<(String, String)> = last_seen
            .iter()
            .map(|s| ("last_seen".to_owned(), s.clone()))
            .collect();
        let page = match client
            .get(&format!("/api/v6/{}/logs", segment(run_id)), &query)
            .await
        {
            Ok(page) => page,
            Err(CliError::Api { status: 404, .. }) => return Ok(0),
            Err(e) => return Err(e),
        };
        let log = page["log"].as_str().unwrap_or_default();
        print!("{log}");
        let next = page["last_seen"].as_str().map(str::to_owned);
        if log.is_empty() || next.is_none() || next == last_seen {
            return Ok(0);
        }
        last_seen = next;
    }
}

/// Runs `flotilla status`.
pub async fn status(client: &Client, out: Out, run_id: &str, wait: bool) -> Result<u8, CliError> {
    if wait {
        let code = follow(
            client,
            run_id,
            FollowOptions {
                logs: false,
                progress: true,
                stop_on_interrupt: false,
            },
        )
        .await?;
        if out.format == Format::Json {
            let run = client
                .get(&format!("/api/v6/history/{}", segment(run_id)), &[])
                .await?;
            out.json(&run);
        }
        return Ok(code);
    }
    let run = client
        .get(&format!("/api/v6/history/{}", segment(run_id)), &[])
        .await?;
    out.show(&run, || {
        let mut shown = run.clone();
        if let Some(s) = run["status"].as_str() {
            shown["status"] = Value::from(out.status(s));
        }
        println!(
            "{}",
            record(
                &shown,
                &[
                    "run_id",
                    "status",
                    "alias",
                    "cluster",
                    "engine",
                    "exit_code",
                    "exit_reason",
                    "attempt_count",
                    "queued_at",
                    "started_at",
                    "finished_at",
                    "waiting_reason",
                    "queue_position",
                    "estimated_start",
                    "log_url",
                ]
            )
        );
    });
    Ok(0)
}

/// Runs `flotilla stop`.
pub async fn stop(client: &Client, out: Out, run_id: &str) -> Result<u8, CliError> {
    let run = client
        .get(&format!("/api/v6/history/{}", segment(run_id)), &[])
        .await?;
    if run["status"] == "STOPPED" {
        eprintln!("run {run_id} has already ended");
        return Ok(exit_code_of(&run).min(1));
    }
    let answer = stop_run(client, &run).await?;
    out.show(&answer, || {
        println!("stopping {run_id}");
    });
    Ok(0)
}

/// Runs `flotilla events`.
pub async fn events(client: &Client, out: Out, run_id: &str) -> Result<u8, CliError> {
    let page = client
        .get(&format!("/api/v6/{}/events", segment(run_id)), &[])
        .await?;
    if out.format == Format::Json {
        out.json(&page);
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = page["pod_events"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|e| {
            vec![
                time(e, "timestamp"),
                text(e, "attempt"),
                text(e, "reason"),
                text(e, "message"),
            ]
        })
        .collect();
    println!("{}", table(&["TIME", "ATTEMPT", "EVENT", "MESSAGE"], &rows));
    Ok(0)
}

/// A `--since` value as the time it names: a span back from now (`30s`,
/// `15m`, `1h`, `2d`, `1w`), or a time or date passed on as it is.
pub fn since(given: &str, now: chrono::DateTime<chrono::Utc>) -> Result<String, CliError> {
    let given = given.trim();
    let digits = given.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &given[digits.len()..];
    if let (Ok(n), Some(seconds)) = (
        digits.parse::<i64>(),
        match unit {
            "s" => Some(1),
            "m" => Some(60),
            "h" => Some(3600),
            "d" => Some(86_400),
            "w" => Some(604_800),
            _ => None,
        },
    ) {
        let span = n
            .checked_mul(seconds)
            .and_then(chrono::TimeDelta::try_seconds)
            .ok_or_else(|| CliError::Usage(format!("--since {given} is too long a span")))?;
        let at = now
            .checked_sub_signed(span)
            .ok_or_else(|| CliError::Usage(format!("--since {given} is too long a span")))?;
        return Ok(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    }
    if given.len() >= 10 && given.as_bytes()[..4].iter().all(u8::is_ascii_digit) {
        return Ok(given.to_owned());
    }
    Err(CliError::Usage(format!(
        "--since {given:?} is neither a span (30s, 15m, 1h, 2d, 1w) nor a time (2026-11-01T09:30:00Z or 2026-11-01)"
    )))
}

/// Runs `flotilla runs`.
pub async fn runs(client: &Client, out: Out, args: RunsArgs) -> Result<u8, CliError> {
    let mut query = vec![
        ("limit".to_owned(), args.limit.to_string()),
        ("sort_by".to_owned(), "queued_at".to_owned()),
        ("order".to_owned(), "desc".to_owned()),
    ];
    query.extend(
        args.status
            .iter()
            .map(|s| ("status".to_owned(), s.to_uppercase())),
    );
    query.extend(args.alias.iter().map(|a| ("alias".to_owned(), a.clone())));
    query.extend(
        args.owner
            .iter()
            .map(|o| ("owner_id".to_owned(), o.clone())),
    );
    let since_given = args.since.clone();
    loop {
        let mut query = query.clone();
        if let Some(given) = &since_given {
            query.push((
                "queued_at_since".to_owned(),
                since(given, chrono::Utc::now())?,
            ));
        }
        let page = client.get("/api/v6/history", &query).await?;
        out.show(&page, || {
            let rows: Vec<Vec<String>> = page["history"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|r| {
                    vec![
                        text(r, "run_id"),
                        text(r, "alias"),
                        out.status(&text(r, "status")),
                        text(r, "exit_code"),
                        text(r, "cluster"),
                        text(r, "user"),
                        time(r, "queued_at"),
                    ]
                })
                .collect();
            if args.watch && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                print!("\x1b[2J\x1b[H");
            }
            println!(
                "{}",
                table(
                    &[
                        "RUN ID", "ALIAS", "STATUS", "EXIT", "CLUSTER", "OWNER", "QUEUED"
                    ],
                    &rows
                )
            );
        });
        if !args.watch {
            return Ok(0);
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(0),
        }
        if out.format == Format::Table {
            println!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_goes_back_from_now_and_a_time_is_passed_on() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-01T12:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(since("1h", now).unwrap(), "2026-11-01T11:00:00Z");
        assert_eq!(since("2d", now).unwrap(), "2026-10-30T12:00:00Z");
        assert_eq!(since("2026-10-01", now).unwrap(), "2026-10-01");
        assert!(matches!(since("soon", now), Err(CliError::Usage(_))));
        assert!(matches!(since("1y", now), Err(CliError::Usage(_))));
        assert!(matches!(
            since("99999999999999w", now),
            Err(CliError::Usage(_))
        ));
    }

    #[test]
    fn a_parameter_is_json_when_it_parses_and_text_otherwise() {
        assert_eq!(param_value("3"), json!(3));
        assert_eq!(param_value("true"), json!(true));
        assert_eq!(param_value("[1,2]"), json!([1, 2]));
        assert_eq!(param_value("resnet"), json!("resnet"));
        assert!(matches!(pair("-e", "NOEQUALS"), Err(CliError::Usage(_))));
        assert_eq!(pair("-e", "A=b=c").unwrap(), ("A", "b=c"));
    }

    #[test]
    fn a_template_is_named_with_an_optional_version() {
        assert_eq!(name_and_version("train").unwrap(), ("train", "latest"));
        assert_eq!(name_and_version("train@3").unwrap(), ("train", "3"));
        assert!(name_and_version("train@").is_err());
    }
}
