//! `flotilla run -f` in a real terminal: tmux runs it, and its screen is
//! read with `capture-pane` while the run waits and after it ends, as a
//! person at the terminal would see it. (`scripts/install-terminal`, run by
//! `scripts/test`, installs Debian's tmux.)

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{Server, flotilla_bin};

/// A tmux server of its own (its own socket), ended when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn tmux(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!("tmux could not start ({e}): scripts/install-terminal installs it")
            })
    }

    /// Starts session `name` running `shell` (with a trap, so that a
    /// Ctrl-C reaches the command and not the shell around it) in a 150x30
    /// terminal, as a user of `server`.
    fn session(&self, server: &Server, name: &str, shell: &str) {
        let shell = format!("trap true INT; {shell}; echo \"EXIT=$?\"; sleep 600");
        let started = Command::new("tmux")
            .args([
                "-L",
                &self.socket,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                name,
            ])
            .args(["-x", "150", "-y", "30", &shell])
            .env("FLOTILLA_URL", &server.base)
            .env("USER", "tester")
            .env("TERM", "xterm-256color")
            .env("XDG_CONFIG_HOME", "/nonexistent/flotilla-tests")
            .env_remove("FLOTILLA_TOKEN")
            .env_remove("FLOTILLA_PROFILE")
            .env_remove("NO_COLOR")
            .output()
            .unwrap_or_else(|e| {
                panic!("tmux could not start ({e}): scripts/install-terminal installs it")
            });
        assert!(started.status.success(), "{started:?}");
    }

    /// What session `name`'s pane shows now.
    fn screen(&self, name: &str) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p", "-t", name]).stdout).into_owned()
    }

    /// Types `keys` (tmux's names: `C-c`, `Enter`) into session `name`.
    fn keys(&self, name: &str, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", name];
        args.extend_from_slice(keys);
        assert!(self.tmux(&args).status.success());
    }

    /// Waits (up to 2 minutes) until session `name`'s screen shows `what`.
    async fn wait_for(&self, name: &str, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let screen = self.screen(name);
            if screen.contains(what) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the terminal did not show {what:?} within 2 minutes:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

#[tokio::test]
async fn in_a_terminal_the_follow_shows_why_the_run_waits_clears_that_line_for_its_log_and_asks_before_a_ctrl_c_stops_it()
 {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), 2).await;
    let (status, answer) = server
        .send(
            reqwest::Method::POST,
            "/api/v6/clusters",
            &json!({"name": "single", "max_concurrency": 1}).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let gate = dir.path().join("gate");
    server
        .define(
            "blocker",
            &format!("while [ ! -e {} ]; do sleep 0.1; done", gate.display()),
        )
        .await;
    server
        .define("greet", "echo hello from the terminal; exit 5")
        .await;
    let blocker = server
        .execute("blocker", json!({"cluster": "single"}))
        .await;
    let blocker = blocker["run_id"].as_str().unwrap().to_owned();
    server
        .wait_within(&blocker, "RUNNING", Duration::from_secs(120), |run| {
            run["status"] == "RUNNING"
        })
        .await;

    let tmux = Tmux {
        socket: format!("flotilla-test-{}", std::process::id()),
    };
    let flotilla = flotilla_bin().display().to_string();
    tmux.session(
        &server,
        "t",
        &format!("{flotilla} run greet --cluster single -f"),
    );

    // While the blocker holds the cluster's one slot, the line says why the
    // run waits and where it is in the queue.
    let waiting = tmux
        .wait_for(
            "t",
            "QUEUED, number 1 in its queue: cluster single is at its cap",
        )
        .await;
    assert!(!waiting.contains("EXIT="), "{waiting}");

    std::fs::write(&gate, "").unwrap();
    let ended = tmux.wait_for("t", "EXIT=").await;
    assert!(ended.contains("hello from the terminal"), "{ended}");
    assert!(ended.contains("STOPPED: exit code 5"), "{ended}");
    assert!(ended.contains("EXIT=5"), "the run's exit code: {ended}");
    assert!(
        !ended.contains("in its queue"),
        "the progress line is gone once the run has ended:\n{ended}"
    );

    // Ctrl-C asks whether to stop the run; "y" stops it, and the command
    // exits non-zero once it has.
    server.define("long", "echo started long; sleep 600").await;
    tmux.session(&server, "u", &format!("{flotilla} run long -f"));
    tmux.wait_for("u", "started long").await;
    tmux.keys("u", &["C-c"]);
    let asked = tmux.wait_for("u", "? [y/N]").await;
    assert!(asked.contains("stop run "), "{asked}");
    tmux.keys("u", &["y", "Enter"]);
    let stopped = tmux.wait_for("u", "EXIT=").await;
    assert!(!stopped.contains("EXIT=0"), "{stopped}");
    let (_, page) = server.get("/api/v6/history?alias=long").await;
    let run = &page["history"][0];
    assert_eq!(run["status"], "STOPPED", "{page}");
    assert!(
        stopped.contains(&format!("run {} STOPPED", run["run_id"].as_str().unwrap())),
        "{stopped}"
    );
}
