//! Following one run to its end: its log as it grows (paged with
//! `last_seen`), a progress line while it waits (its reason and place in the
//! queue), the final status line, and the exit code that mirrors the run's,
//! so `flotilla run … --follow && next-step` works in scripts.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use serde_json::Value;

use crate::client::{CliError, Client, segment};
use crate::output::Progress;

/// How long to wait between two reads of a run that has not ended.
const POLL: Duration = Duration::from_millis(500);

/// The exit code of an interrupted follow (128 + SIGINT), as shells use.
pub const INTERRUPTED: u8 = 130;

/// What to show while following.
#[derive(Debug, Clone, Copy)]
pub struct FollowOptions {
    /// Print the log as it grows.
    pub logs: bool,
    /// Show the waiting line on a terminal.
    pub progress: bool,
    /// On Ctrl-C, stop the run without asking.
    pub stop_on_interrupt: bool,
}

/// The exit code a run ended with: its own when it has one that fits,
/// otherwise 1 (it was stopped, or failed before its code ran).
pub fn exit_code_of(run: &Value) -> u8 {
    run.get("exit_code")
        .and_then(Value::as_i64)
        .and_then(|c| u8::try_from(c).ok())
        .unwrap_or(1)
}

/// The last line a follow prints: how the run ended.
pub fn final_line(run: &Value) -> String {
    let id = run["run_id"].as_str().unwrap_or("?");
    let reason = run
        .get("exit_reason")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty());
    match (run.get("exit_code").and_then(Value::as_i64), reason) {
        (Some(code), Some(reason)) => format!("run {id} STOPPED: exit code {code} ({reason})"),
        (Some(code), None) => format!("run {id} STOPPED: exit code {code}"),
        (None, Some(reason)) => format!("run {id} STOPPED without an exit code: {reason}"),
        (None, None) => format!("run {id} STOPPED without an exit code"),
    }
}

/// The waiting line of a run that has not started.
pub fn waiting_line(run: &Value) -> String {
    let status = run["status"].as_str().unwrap_or("?");
    let mut line = format!("{} {status}", run["run_id"].as_str().unwrap_or("?"));
    if let Some(position) = run.get("queue_position").and_then(Value::as_u64) {
        line.push_str(&format!(", number {position} in its queue"));
    }
    if let Some(reason) = run.get("waiting_reason").and_then(Value::as_str) {
        line.push_str(": ");
        line.push_str(reason);
    }
    line
}

/// Reads the run's log from `last_seen` to its current end, printing it.
async fn drain_log(
    client: &Client,
    run_id: &str,
    attempt: Option<u64>,
    last_seen: &mut Option<String>,
    progress: &Progress,
) -> Result<(), CliError> {
    loop {
        let mut query = Vec::new();
        if let Some(seen) = last_seen.as_ref() {
            query.push(("last_seen".to_owned(), seen.clone()));
        }
        if let Some(attempt) = attempt {
            query.push(("attempt".to_owned(), attempt.to_string()));
        }
        let page = match client
            .get(&format!("/api/v6/{}/logs", segment(run_id)), &query)
            .await
        {
            Ok(page) => page,
            // No log yet (nothing written, or the engine has none to read).
            Err(CliError::Api { status: 404, .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let log = page["log"].as_str().unwrap_or_default();
        let next = page["last_seen"].as_str().map(str::to_owned);
        if !log.is_empty() {
            progress.clear();
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(log.as_bytes());
            let _ = out.flush();
        }
        let moved = next.is_some() && next != *last_seen;
        if next.is_some() {
            *last_seen = next;
        }
        if log.is_empty() || !moved {
            return Ok(());
        }
    }
}

/// Stops `run` (by its definition's stop route).
pub async fn stop_run(client: &Client, run: &Value) -> Result<Value, CliError> {
    let run_id = run["run_id"].as_str().unwrap_or_default();
    let definition = run["definition_id"].as_str().unwrap_or_default();
    client
        .delete(&format!(
            "/api/v6/task/{}/history/{}",
            segment(definition),
            segment(run_id)
        ))
        .await
}

/// What the user answered to a Ctrl-C.
async fn ask_to_stop(run_id: &str) -> bool {
    if !std::io::stdin().is_terminal() {
        return false;
    }
    eprint!("stop run {run_id}? [y/N] ");
    let _ = std::io::stderr().flush();
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await;
    matches!(answer, Ok(Ok(line)) if matches!(line.trim(), "y" | "Y" | "yes"))
}

/// Follows `run_id` until it is STOPPED; answers the exit code to leave
/// with.
pub async fn follow(client: &Client, run_id: &str, options: FollowOptions) -> Result<u8, CliError> {
    let progress = Progress::new(options.progress);
    let mut attempt: Option<u64> = None;
    let mut last_seen: Option<String> = None;
    let mut stopping = false;
    let path = format!("/api/v6/history/{}", segment(run_id));
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    loop {
        let run = client.get(&path, &[]).await?;
        let status = run["status"].as_str().unwrap_or_default().to_owned();
        let now = run.get("attempt_count").and_then(Value::as_u64);
        if attempt.is_some() && now != attempt {
            // The attempt before may have written more since the last read.
            if options.logs {
                drain_log(client, run_id, attempt, &mut last_seen, &progress).await?;
            }
            last_seen = None;
            progress.note(&format!(
                "run {run_id}: attempt {} ({})",
                now.unwrap_or(0),
                run.get("waiting_reason")
                    .and_then(Value::as_str)
                    .unwrap_or("retried")
            ));
        }
        attempt = now;
        if options.logs && !matches!(status.as_str(), "QUEUED") {
            drain_log(client, run_id, attempt, &mut last_seen, &progress).await?;
        }
        if status == "STOPPED" {
            progress.clear();
            eprintln!("{}", final_line(&run));
            return Ok(exit_code_of(&run));
        }
        if matches!(status.as_str(), "QUEUED" | "PENDING" | "NEEDS_RETRY") {
            progress.show(&waiting_line(&run));
        } else {
            progress.clear();
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            _ = &mut interrupt => {
                progress.clear();
                if stopping {
                    eprintln!("run {run_id} is being stopped; follow it with `flotilla logs {run_id} -f`");
                    return Ok(INTERRUPTED);
                }
                if options.stop_on_interrupt || ask_to_stop(run_id).await {
                    stop_run(client, &run).await?;
                    eprintln!("stopping run {run_id}; Ctrl-C again leaves it to stop on its own");
                    stopping = true;
                    interrupt.set(tokio::signal::ctrl_c());
                } else {
                    eprintln!("run {run_id} goes on; follow it with `flotilla logs {run_id} -f`");
                    return Ok(INTERRUPTED);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_run_exits_with_its_own_code_and_one_without_a_code_it_can_give_exits_1() {
        assert_eq!(exit_code_of(&json!({"exit_code": 0})), 0);
        assert_eq!(exit_code_of(&json!({"exit_code": 3})), 3);
        assert_eq!(exit_code_of(&json!({"exit_code": 255})), 255);
        assert_eq!(exit_code_of(&json!({"exit_code": 256})), 1);
        assert_eq!(exit_code_of(&json!({"exit_code": -9})), 1);
        assert_eq!(exit_code_of(&json!({"exit_code": null})), 1);
        assert_eq!(exit_code_of(&json!({})), 1);
    }

    #[test]
    fn the_final_line_says_the_code_and_the_reason_when_there_are_some() {
        assert_eq!(
            final_line(&json!({"run_id": "r", "exit_code": 3, "exit_reason": "Error"})),
            "run r STOPPED: exit code 3 (Error)"
        );
        assert_eq!(
            final_line(&json!({"run_id": "r", "exit_code": null, "exit_reason": "stopped by ann"})),
            "run r STOPPED without an exit code: stopped by ann"
        );
    }

    #[test]
    fn the_waiting_line_gives_the_place_in_the_queue_and_the_reason() {
        assert_eq!(
            waiting_line(
                &json!({"run_id": "r", "status": "QUEUED", "queue_position": 2, "waiting_reason": "cluster c is at its cap"})
            ),
            "r QUEUED, number 2 in its queue: cluster c is at its cap"
        );
    }
}
