//! What a data scientist does in the UI, end to end: define a task, launch
//! it, watch it finish with its log, stop a long run, find runs, read the
//! API's refusals beside the fields, launch a template from its schema.

use std::time::Duration;

use serde_json::json;

use crate::harness::{Ui, WAIT};
use crate::webdriver::{KEY_ENTER, KEY_TAB};

#[tokio::test]
#[ignore = "needs chromium and chromedriver (scripts/test installs them)"]
async fn a_task_defined_in_the_form_launches_and_its_run_reaches_success_with_its_log_shown() {
    let ui = Ui::start("define-and-launch").await;
    ui.open("#/tasks").await;
    ui.wait_text("main", "No tasks yet").await;
    ui.shot("tasks-empty").await;

    ui.find("#new-task").await.click().await;
    ui.wait_heading("New task").await;
    ui.fill("#task-form [name=alias]", "hello-ui").await;
    ui.fill("#task-form [name=group_name]", "demos").await;
    ui.fill("#task-form [name=image]", "python:3.12").await;
    ui.fill(
        "#task-form [name=command]",
        "for i in 1 2 3; do echo \"line $i for $GREETING\"; done",
    )
    .await;
    ui.fill("#task-form [name=memory]", "256").await;
    ui.find("#task-form .add-env").await.click().await;
    ui.fill("#task-form .env-row:last-child .env-name", "GREETING")
        .await;
    ui.fill("#task-form .env-row:last-child .env-value", "the ui")
        .await;
    ui.shot("task-form").await;
    ui.find("#save-task").await.click().await;

    ui.wait_heading("hello-ui").await;
    ui.wait_text("#task-attrs", "python:3.12").await;
    ui.wait_text("#task-attrs", "GREETING").await;
    ui.wait_text("main", "No runs yet").await;
    ui.shot("task-detail").await;

    ui.find("#launch-task").await.click().await;
    ui.wait_heading("Launch hello-ui").await;
    ui.fill("#launch-form [name=owner]", "ada").await;
    ui.find("#launch-form [name=cluster]")
        .await
        .select("default")
        .await;
    ui.shot("launch-form").await;
    ui.find("#launch-run").await.click().await;

    ui.wait_text("#run-status", "SUCCESS").await;
    ui.wait_text("#run-log", "line 3 for the ui").await;
    ui.wait_text("#log-state", "whole log").await;
    let log = ui.find("#run-log").await.text().await;
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        [
            "line 1 for the ui",
            "line 2 for the ui",
            "line 3 for the ui"
        ],
        "the run view shows the run's output, line by line"
    );
    for event in ["Queued", "Launched", "Started", "Stopped"] {
        ui.wait_text("#run-timeline", event).await;
    }
    assert!(
        ui.browser.find_all("#stop-run").await.is_empty(),
        "a finished run offers no stop button"
    );
    let run_id = ui.run_id_in_url().await;
    let run = ui.run(&run_id).await;
    assert_eq!(run["status"], "STOPPED");
    assert_eq!(run["exit_code"], 0);
    assert_eq!(run["user"], "ada");
    assert_eq!(run["alias"], "hello-ui");
    ui.wait_text("#run-attrs", "ada").await;
    let shot = ui.shot("run-view").await;
    if std::env::var_os("FLOTILLA_UPDATE_README_SCREENSHOT").is_some() {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/run-view.png");
        std::fs::copy(&shot, &docs).unwrap_or_else(|e| panic!("{}: {e}", docs.display()));
    }

    ui.fill("#log-search", "line 2").await;
    ui.wait_text("#log-matches", "1 of 1 matches").await;
    let marked = ui.find("#run-log mark.current").await.text().await;
    assert_eq!(marked, "line 2");
    ui.fill("#log-search", "nowhere").await;
    ui.wait_text("#log-matches", "No match").await;

    // The owner is remembered for the next launch.
    ui.find("#launch-again").await.click().await;
    ui.wait_heading("Launch hello-ui").await;
    assert_eq!(
        ui.find("#launch-form [name=owner]").await.value().await,
        "ada"
    );
}

#[tokio::test]
#[ignore = "needs chromium and chromedriver (scripts/test installs them)"]
async fn a_long_run_is_stopped_from_the_run_view_only_after_confirmation() {
    let ui = Ui::start("stop").await;
    let def = ui
        .server
        .define("sleeper", "echo started; sleep 300; echo never")
        .await;
    let id = def["definition_id"].as_str().unwrap_or_default().to_owned();
    ui.open(&format!("#/tasks/{id}/launch")).await;
    ui.fill("#launch-form [name=owner]", "bob").await;
    ui.find("#launch-run").await.click().await;

    ui.wait_text("#run-status", "RUNNING").await;
    ui.wait_text("#run-log", "started").await;
    ui.wait_text("#log-state", "Following").await;
    let run_id = ui.run_id_in_url().await;

    ui.find("#stop-run").await.click().await;
    ui.wait_text("#confirm-dialog", "Stop run").await;
    ui.shot("confirm-stop").await;
    ui.find("#dialog-cancel").await.click().await;
    ui.browser.wait_gone("#confirm-dialog", WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        ui.run(&run_id).await["status"],
        "RUNNING",
        "cancelling the dialog leaves the run running"
    );

    ui.find("#stop-run").await.click().await;
    ui.find("#dialog-confirm").await.click().await;
    ui.wait_text("#run-status", "FAILED").await;
    ui.wait_text("#run-attrs", "stopped by").await;
    ui.wait_text("#run-timeline", "Stop requested").await;
    ui.wait_text("#log-state", "whole log").await;
    let run = ui.run(&run_id).await;
    assert_eq!(run["status"], "STOPPED");
    assert_ne!(run["exit_code"], 0);
    assert!(
        !ui.find("#run-log").await.text().await.contains("never"),
        "the run was stopped before its command finished"
    );
    ui.shot("stopped-run").await;
}

#[tokio::test]
#[ignore = "needs chromium and chromedriver (scripts/test installs them)"]
async fn the_runs_list_shows_active_runs_first_and_filters_by_status_owner_alias_and_time() {
    let ui = Ui::start("runs-list").await;
    ui.server.define("alpha", "echo alpha").await;
    ui.server.define("alpha-fails", "exit 3").await;
    ui.server.define("beta", "sleep 300").await;
    let ok = ui
        .server
        .execute("alpha", json!({"run_tags": {"owner_id": "ada"}}))
        .await;
    let failed = ui
        .server
        .execute("alpha-fails", json!({"run_tags": {"owner_id": "ada"}}))
        .await;
    let running = ui
        .server
        .execute("beta", json!({"run_tags": {"owner_id": "bob"}}))
        .await;
    let id = |run: &serde_json::Value| run["run_id"].as_str().unwrap_or_default().to_owned();
    ui.server.wait_stopped(&id(&ok)).await;
    ui.server.wait_stopped(&id(&failed)).await;
    ui.server
        .wait_for(&id(&running), "RUNNING", |r| r["status"] == "RUNNING")
        .await;

    ui.open("#/runs").await;
    ui.wait_heading("Runs").await;
    ui.wait_text("#runs-table", "beta").await;
    let rows = ui.rows("#runs-table").await;
    assert_eq!(rows.len(), 1, "by default only active runs show: {rows:?}");
    assert_eq!(rows[0][1], "beta");
    assert_eq!(rows[0][2], "RUNNING");
    ui.shot("active").await;

    // Tick STOPPED too, and ask for ada's runs only.
    ui.find("#status-STOPPED").await.click().await;
    ui.fill("#runs-filters [name=owner_id]", "ada").await;
    ui.find("#apply-filters").await.click().await;
    ui.wait_text("#runs-table", "alpha-fails").await;
    let rows = ui.wait_rows("#runs-table", 2).await;
    let mut summary: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| (r[1].as_str(), r[2].as_str(), r[4].as_str()))
        .collect();
    summary.sort();
    assert_eq!(
        summary,
        [
            ("alpha", "SUCCESS", "ada"),
            ("alpha-fails", "FAILED", "ada")
        ],
        "STOPPED runs show SUCCESS or FAILED by their exit code"
    );
    assert_eq!(
        ui.find("#runs-filters [name=owner_id]").await.value().await,
        "ada",
        "the filters stay filled in"
    );
    ui.shot("stopped-by-owner").await;

    // An alias narrows further.
    ui.fill("#runs-filters [name=alias]", "fails").await;
    ui.find("#runs-filters [name=alias]")
        .await
        .send_keys(KEY_ENTER)
        .await;
    let rows = ui.wait_rows("#runs-table", 1).await;
    assert_eq!(rows[0][1], "alpha-fails");

    // A time range before any run was queued matches nothing.
    ui.open("#/runs?status=any&until=2001-01-01T00:00").await;
    ui.wait_text("main", "No run matches these filters").await;
    ui.open("#/runs?status=any").await;
    ui.wait_text("#runs-table", "alpha-fails").await;
    assert_eq!(ui.rows("#runs-table").await.len(), 3);

    // Readable on a narrow screen: nothing scrolls sideways but the table itself.
    ui.browser.set_viewport_size(390, 844).await;
    ui.open(&format!("#/runs/{}", id(&running))).await;
    ui.wait_text("#run-status", "RUNNING").await;
    ui.shot("narrow-run-view").await;
    ui.open("#/runs?status=any").await;
    ui.wait_text("#runs-table", "alpha").await;
    ui.shot("narrow-runs").await;
}

#[tokio::test]
#[ignore = "needs chromium and chromedriver (scripts/test installs them)"]
async fn an_invalid_form_shows_the_apis_message_beside_the_field_and_saves_nothing() {
    let ui = Ui::start("invalid").await;
    ui.open("#/tasks/new").await;
    ui.wait_heading("New task").await;
    ui.fill("#task-form [name=alias]", "has space").await;
    ui.fill("#task-form [name=memory]", "0").await;
    ui.find("#save-task").await.click().await;

    ui.wait_text("#form-problems", "image is required").await;
    ui.wait_text("#form-problems", "memory must be greater than 0")
        .await;
    let image = ui.find("#task-form [name=image]").await;
    assert_eq!(image.attr("aria-invalid").await.as_deref(), Some("true"));
    let described = image.attr("aria-describedby").await.unwrap_or_default();
    let error_id = described
        .split(' ')
        .find(|i| i.ends_with("-error"))
        .unwrap_or_default()
        .to_owned();
    ui.wait_text(&format!("#{error_id}"), "image is required")
        .await;
    let alias = ui.find("#task-form [name=alias]").await;
    assert_eq!(alias.attr("aria-invalid").await.as_deref(), Some("true"));
    let focused = ui.browser.active_element().await;
    assert_eq!(
        focused.attr("name").await.as_deref(),
        Some("image"),
        "focus moves to the first field in error"
    );
    ui.shot("task-form-errors").await;
    let (_, list) = ui.server.get("/api/v6/task").await;
    assert_eq!(list["total"], 0, "a refused form saves nothing");

    // A launch with a reserved variable is refused with the API's words.
    let def = ui.server.define("ok-task", "true").await;
    let id = def["definition_id"].as_str().unwrap_or_default().to_owned();
    ui.open(&format!("#/tasks/{id}/launch")).await;
    ui.fill("#launch-form [name=owner]", "ada").await;
    ui.find("#launch-form .add-env").await.click().await;
    ui.fill("#launch-form .env-name", "FLOTILLA_RUN_ID").await;
    ui.fill("#launch-form .env-value", "mine").await;
    ui.find("#launch-run").await.click().await;
    ui.wait_text("#form-problems", "FLOTILLA_RUN_ID is reserved")
        .await;
    ui.wait_text("#launch-form fieldset.env .field-error", "reserved")
        .await;
    ui.shot("launch-form-errors").await;
    let (_, runs) = ui.server.get("/api/v6/history").await;
    assert_eq!(runs["total"], 0, "a refused launch queues nothing");

    // A view that cannot load says why instead of going blank.
    ui.open("#/runs/no-such-run").await;
    ui.wait_heading("Something went wrong").await;
    ui.wait_text("main .problem", "no-such-run").await;
    ui.open("#/nowhere").await;
    ui.wait_heading("Not found").await;
}

#[tokio::test]
#[ignore = "needs chromium and chromedriver (scripts/test installs them)"]
async fn the_launch_form_works_with_the_keyboard_alone() {
    let ui = Ui::start("keyboard").await;
    let def = ui
        .server
        .define("keys", "echo typed by $FLOTILLA_RUN_OWNER_ID")
        .await;
    let id = def["definition_id"].as_str().unwrap_or_default().to_owned();
    ui.open(&format!("#/tasks/{id}/launch")).await;
    ui.wait_heading("Launch keys").await;
    let mut reached = false;
    for _ in 0..30 {
        ui.browser.active_element().await.send_keys(KEY_TAB).await;
        if ui
            .browser
            .active_element()
            .await
            .attr("name")
            .await
            .as_deref()
            == Some("owner")
        {
            reached = true;
            break;
        }
    }
    assert!(reached, "Tab reaches the owner field");
    let owner = ui.browser.active_element().await;
    owner.send_keys("kay").await;
    owner.send_keys(KEY_ENTER).await;
    ui.wait_text("#run-status", "SUCCESS").await;
    ui.wait_text("#run-log", "typed by kay").await;
    let focused = ui
        .browser
        .execute("return document.activeElement.id;", vec![])
        .await;
    assert_eq!(
        focused,
        json!("main"),
        "a new view moves the focus to its content, so Tab continues from there"
    );
}

#[tokio::test]
#[ignore = "needs chromium and chromedriver (scripts/test installs them)"]
async fn a_template_launches_from_a_form_generated_from_its_schema() {
    let ui = Ui::start("template").await;
    let template = json!({
        "template_name": "train",
        "image": "python:3.12",
        "memory": 512,
        "cpu": 256,
        "command_template": "echo training {{ .model }} for {{ .epochs }} epochs",
        "schema": {
            "type": "object",
            "required": ["epochs", "model"],
            "properties": {
                "epochs": {"type": "integer", "minimum": 1, "maximum": 100, "description": "Passes over the data"},
                "model": {"type": "string", "enum": ["small", "large"]},
                "verbose": {"type": "boolean"}
            }
        },
        "defaults": {"model": "small", "epochs": 3}
    });
    let (status, created) = ui
        .server
        .send(
            reqwest::Method::POST,
            "/api/v7/template",
            &template.to_string(),
        )
        .await;
    assert_eq!(status, 200, "{created}");

    ui.open("#/templates").await;
    ui.wait_text("#templates-table", "train").await;
    ui.shot("templates").await;
    ui.find("#templates-table a").await.click().await;
    ui.wait_heading("train").await;
    assert_eq!(
        ui.find("#template-launch [name=p-epochs]")
            .await
            .value()
            .await,
        "3",
        "the form starts from the template's defaults"
    );
    ui.fill("#template-launch [name=owner]", "ada").await;
    ui.fill("#template-launch [name=p-epochs]", "0").await;
    ui.find("#preview-template").await.click().await;
    ui.wait_text("#form-problems", "template_payload/epochs")
        .await;
    let epochs = ui.find("#template-launch [name=p-epochs]").await;
    assert_eq!(epochs.attr("aria-invalid").await.as_deref(), Some("true"));
    ui.shot("template-errors").await;

    ui.fill("#template-launch [name=p-epochs]", "5").await;
    ui.find("#template-launch [name=p-model]")
        .await
        .select("large")
        .await;
    ui.find("#preview-template").await.click().await;
    ui.wait_text("#preview-command", "echo training large for 5 epochs")
        .await;
    let (_, runs) = ui.server.get("/api/v6/history").await;
    assert_eq!(runs["total"], 0, "a preview queues nothing");
    ui.shot("template-preview").await;

    ui.find("#launch-template").await.click().await;
    ui.wait_text("#run-status", "SUCCESS").await;
    ui.wait_text("#run-log", "training large for 5 epochs")
        .await;
    ui.wait_text("#run-details", "\"epochs\": 5").await;
}

#[tokio::test]
#[ignore = "needs chromium and chromedriver (scripts/test installs them)"]
async fn the_clusters_page_lists_each_cluster_with_its_status() {
    let ui = Ui::start("clusters").await;
    let (status, body) = ui
        .server
        .send(
            reqwest::Method::POST,
            "/api/v6/clusters",
            &json!({"name": "gpu", "status": "maintenance", "status_reason": "driver upgrade", "allowed_tiers": ["gpu"]}).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    ui.open("#/clusters").await;
    ui.wait_text("#clusters-table", "gpu").await;
    let mut rows = ui.rows("#clusters-table").await;
    rows.sort();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0][..3], ["default", "active", "—"]);
    assert_eq!(
        rows[1][..4],
        ["gpu", "maintenance", "driver upgrade", "gpu"]
    );
    ui.shot("clusters").await;
}

#[tokio::test]
#[ignore = "needs chromium and chromedriver (scripts/test installs them)"]
async fn a_task_is_edited_and_copied_from_its_page_and_the_list_filters_and_sorts_tasks() {
    let ui = Ui::start("edit-copy").await;
    let def = ui.server.define("report", "echo v1").await;
    let id = def["definition_id"].as_str().unwrap_or_default().to_owned();
    ui.open(&format!("#/tasks/{id}")).await;
    ui.wait_heading("report").await;

    ui.find("#edit-task").await.click().await;
    ui.wait_heading("Edit report").await;
    assert_eq!(
        ui.find("#task-form [name=command]").await.value().await,
        "echo v1",
        "the form starts from the task's settings"
    );
    ui.fill("#task-form [name=command]", "echo v2").await;
    ui.fill("#task-form [name=cpu]", "512").await;
    ui.find("#save-task").await.click().await;
    ui.wait_heading("report").await;
    ui.wait_text("#task-attrs", "echo v2").await;
    let (_, saved) = ui.server.get(&format!("/api/v6/task/{id}")).await;
    assert_eq!(saved["command"], "echo v2");
    assert_eq!(saved["cpu"], 512);

    ui.find("#copy-task").await.click().await;
    ui.wait_heading("Copy of report").await;
    assert_eq!(
        ui.find("#task-form [name=alias]").await.value().await,
        "report-copy"
    );
    ui.find("#save-task").await.click().await;
    ui.wait_heading("report-copy").await;
    ui.wait_text("#task-attrs", "echo v2").await;
    let (_, list) = ui.server.get("/api/v6/task").await;
    assert_eq!(list["total"], 2, "the copy is a new task beside the first");

    ui.open("#/tasks").await;
    ui.wait_rows("#tasks-table", 2).await;
    ui.fill("form.filters [name=alias]", "copy").await;
    ui.find("#apply-filters").await.click().await;
    let rows = ui.wait_rows("#tasks-table", 1).await;
    assert_eq!(rows[0][0], "report-copy");
    ui.open("#/tasks?sort_by=alias&order=desc").await;
    ui.wait_text("#tasks-table", "report-copy").await;
    let rows = ui.wait_rows("#tasks-table", 2).await;
    let aliases: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(aliases, ["report-copy", "report"]);
    assert_eq!(
        ui.find("form.filters [name=order]").await.value().await,
        "desc"
    );
    ui.shot("tasks-sorted").await;
}

#[tokio::test]
#[ignore = "needs chromium and chromedriver (scripts/test installs them)"]
async fn the_ui_asks_for_the_servers_token_and_shows_a_refused_stop_as_a_clear_message() {
    let ana = "ana-0123456789abcdef";
    let bo = "bo-0123456789abcdef0";
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{ana} ana\n{bo} bo\n")).unwrap_or_else(|e| panic!("{e}"));
    let file = tokens.to_string_lossy().into_owned();
    let ui = Ui::start_with("tokens", &["--auth-token-file", &file]).await;
    let as_ana = |method: reqwest::Method, path: &str, body: serde_json::Value| {
        ui.server
            .http()
            .request(method, ui.server.url(path))
            .bearer_auth(ana)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let created: serde_json::Value = as_ana(
        reqwest::Method::POST,
        "/api/v6/task",
        json!({"alias": "anas", "image": "i", "command": "echo started; sleep 300"}),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
    .json()
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let id = created["definition_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let run: serde_json::Value = as_ana(
        reqwest::Method::PUT,
        "/api/v6/task/alias/anas/execute",
        json!({}),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
    .json()
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let run_id = run["run_id"].as_str().unwrap_or_default().to_owned();

    ui.open(&format!("#/runs/{run_id}")).await;
    ui.wait_heading("Sign in").await;
    ui.assert_controls_labelled().await;
    ui.shot("sign-in").await;
    ui.fill("#token", bo).await;
    ui.find("#sign-in-submit").await.click().await;
    ui.wait_text("#run-status", "RUNNING").await;

    ui.find("#stop-run").await.click().await;
    ui.find("#dialog-confirm").await.click().await;
    let said = ui.wait_text("[role=alert]", "belongs to ana").await;
    assert!(said.contains("not stopped"), "{said}");
    ui.shot("stop-refused").await;
    let still: serde_json::Value = as_ana(
        reqwest::Method::GET,
        &format!("/api/v6/history/{run_id}"),
        json!({}),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
    .json()
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        still["status"], "RUNNING",
        "bo's refused stop stopped nothing"
    );
    let stopped = as_ana(
        reqwest::Method::DELETE,
        &format!("/api/v6/task/{id}/history/{run_id}"),
        json!({}),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stopped.status().as_u16(), 200, "ana stops her own run");
}

#[tokio::test]
#[ignore = "needs chromium and chromedriver (scripts/test installs them)"]
async fn behind_a_jwt_gateway_the_ui_signs_in_at_the_issuer_with_pkce_and_sends_the_id_token() {
    let listener = crate::gateway::bind().await;
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .port();
    let issuer = format!("http://127.0.0.1:{port}/issuer");
    let ui = Ui::start_with(
        "oauth",
        &[
            "--oauth-issuer",
            &issuer,
            "--oauth-client-id",
            crate::gateway::CLIENT_ID,
        ],
    )
    .await;
    let gateway = crate::gateway::serve(listener, &ui.server.base);
    ui.server.define("nightly", "true").await;

    ui.browser.goto(&format!("{}/#/tasks", gateway.base)).await;
    ui.wait_heading("Sign in").await;
    ui.wait_text("#sign-in-oauth", "127.0.0.1").await;
    ui.shot("oauth-sign-in").await;
    ui.find("#sign-in-oauth").await.click().await;
    ui.wait_heading("Tasks").await;
    let rows = ui.wait_rows("#tasks-table", 1).await;
    assert!(rows[0].iter().any(|c| c == "nightly"), "{rows:?}");
    assert_eq!(
        ui.browser.current_url().await,
        format!("{}/#/tasks", gateway.base),
        "the code and state are gone from the address"
    );
    let (tokens, exchanges, refused, forwarded) = gateway.seen(|s| {
        (
            s.tokens.len(),
            s.token_requests,
            s.refused.clone(),
            s.forwarded,
        )
    });
    assert_eq!(
        (tokens, exchanges),
        (1, 1),
        "one code, exchanged once with its verifier"
    );
    assert!(refused.is_empty(), "{refused:?}");
    assert!(forwarded >= 1, "the UI's calls carried the issued ID token");

    // An answer this tab did not ask for (a forged state) is never taken to
    // the issuer, and the page says why.
    ui.browser
        .execute(
            "localStorage.clear(); sessionStorage.clear(); return null;",
            vec![],
        )
        .await;
    ui.browser
        .goto(&format!(
            "{}/?code=code-forged&state=forged#/tasks",
            gateway.base
        ))
        .await;
    ui.wait_text("#sign-in-problem", "not started from this page")
        .await;
    ui.shot("oauth-forged-state").await;
    assert_eq!(
        gateway.seen(|s| s.token_requests),
        1,
        "a forged answer is not exchanged"
    );
    assert_eq!(
        ui.browser.current_url().await,
        format!("{}/#/tasks", gateway.base)
    );
}

#[tokio::test]
#[ignore = "needs chromium and chromedriver (scripts/test installs them)"]
async fn the_runs_pager_moves_by_next_token_and_back() {
    let ui = Ui::start("pager").await;
    ui.server.define("many", "true").await;
    let mut first = String::new();
    for i in 0..52 {
        let run = ui.server.execute("many", json!({})).await;
        if i == 0 {
            first = run["run_id"].as_str().unwrap_or_default().to_owned();
        }
    }
    ui.open("#/runs?status=any").await;
    ui.wait_text("#page-range", "1–50 of 52").await;
    assert_eq!(ui.rows("#runs-table").await.len(), 50);
    ui.find("#page-next").await.click().await;
    ui.wait_text("#page-range", "51–52 of 52").await;
    ui.wait_rows("#runs-table", 2).await;
    let shown = ui
        .browser
        .execute(
            "return [...document.querySelectorAll('#runs-table a.run-link')].map(a => a.dataset.runId);",
            vec![],
        )
        .await;
    assert!(
        shown
            .as_array()
            .is_some_and(|ids| ids.contains(&json!(first))),
        "the oldest run is on the last page: {shown}"
    );
    let url = ui.browser.current_url().await;
    assert!(
        url.contains("page="),
        "the page's token is in the address: {url}"
    );
    assert!(
        ui.find("#page-next").await.property("disabled").await == json!(true),
        "no page after the last"
    );
    ui.shot("runs-last-page").await;
    ui.find("#page-previous").await.click().await;
    ui.wait_text("#page-range", "1–50 of 52").await;
    assert_eq!(ui.rows("#runs-table").await.len(), 50);
}

#[tokio::test]
#[ignore = "needs chromium and chromedriver (scripts/test installs them)"]
async fn a_queued_run_shows_why_it_waits_and_its_place_in_the_queue_until_a_slot_frees() {
    let ui = Ui::start("waiting").await;
    let (status, cluster) = ui
        .server
        .send(
            reqwest::Method::POST,
            "/api/v6/clusters",
            &json!({"name": "single", "max_concurrency": 1}).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{cluster}");
    let def = ui.server.define("sleeper", "echo started; sleep 300").await;
    let definition_id = def["definition_id"].as_str().unwrap_or_default().to_owned();
    let id = |run: &serde_json::Value| run["run_id"].as_str().unwrap_or_default().to_owned();
    let first = id(&ui
        .server
        .execute("sleeper", json!({"cluster": "single"}))
        .await);
    ui.server
        .wait_for(&first, "RUNNING", |r| r["status"] == "RUNNING")
        .await;
    let second = id(&ui
        .server
        .execute("sleeper", json!({"cluster": "single"}))
        .await);
    let reason = "cluster single is at its cap: 1 of 1 running";
    ui.server
        .wait_for(&second, "at its cap", |r| r["waiting_reason"] == reason)
        .await;

    ui.open("#/runs").await;
    ui.wait_text("#runs-table", reason).await;
    let rows = ui.wait_rows("#runs-table", 2).await;
    let waiting: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r[2].as_str(), r[7].as_str()))
        .collect();
    assert!(
        waiting.contains(&("QUEUED", reason)) && waiting.contains(&("RUNNING", "—")),
        "the list's Waiting column says why a queued run waits: {rows:?}"
    );
    ui.shot("list").await;

    ui.open(&format!("#/runs/{second}")).await;
    let shown = ui
        .wait_text("#run-waiting", "position 1 in cluster single's queue")
        .await;
    assert!(shown.contains(reason), "{shown}");
    ui.shot("queued-run").await;

    // The run ahead stops; the waiting one takes its slot and the notice goes.
    let (status, stopped) = ui
        .server
        .delete(
            &format!("/api/v6/task/{definition_id}/history/{first}"),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{stopped}");
    ui.wait_text("#run-status", "RUNNING").await;
    ui.browser
        .wait_gone("#run-waiting:not([hidden])", WAIT)
        .await;
}

#[tokio::test]
#[ignore = "needs chromium and chromedriver (scripts/test installs them)"]
async fn the_insights_page_shows_the_top_ten_by_cost_and_a_chart_of_each_days_cost() {
    let ui = Ui::start_with("insights", &["--price-vcpu-hour", "3600"]).await;
    let mut ids = Vec::new();
    for i in 1..=11u64 {
        let alias = format!("job-{i:02}");
        ui.server.define(&alias, "sleep 0.2").await;
        let run = ui
            .server
            .execute(&alias, json!({"cpu": 256 * i, "memory": 256}))
            .await;
        ids.push(run["run_id"].as_str().unwrap_or_default().to_owned());
    }
    for id in &ids {
        ui.server.wait_stopped(id).await;
    }
    let (_, board) = ui.server.get("/api/v6/insights/top?limit=10").await;
    let expected: Vec<String> = board["top"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["label"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(expected.len(), 10, "{board}");

    ui.open("#/insights").await;
    ui.wait_heading("Insights").await;
    let rows = ui.wait_rows("#insights-top", 10).await;
    let shown: Vec<String> = rows.iter().map(|r| r[1].clone()).collect();
    assert_eq!(shown, expected, "the API's top 10, in its order");
    let costs: Vec<f64> = rows
        .iter()
        .map(|r| {
            r[2].trim_start_matches('$')
                .replace(',', "")
                .parse()
                .unwrap_or(f64::NAN)
        })
        .collect();
    assert!(
        costs.windows(2).all(|w| w[0] >= w[1]),
        "most expensive first: {costs:?}"
    );
    let bars = ui
        .browser
        .execute(
            "return [...document.querySelectorAll('#insights-chart rect.bar')].map(b => [b.dataset.day, Number(b.getAttribute('height'))]);",
            vec![],
        )
        .await;
    let bars: Vec<(String, f64)> = serde_json::from_value(bars).unwrap_or_default();
    assert_eq!(bars.len(), 7, "a bar per day of the week: {bars:?}");
    let today = board["to"].as_str().unwrap_or_default();
    assert!(
        bars.iter()
            .any(|(day, height)| day == today && *height > 0.0),
        "today's bar shows today's cost: {bars:?}"
    );
    let label = ui
        .find("#insights-chart")
        .await
        .attr("aria-label")
        .await
        .unwrap_or_default();
    assert!(label.starts_with("Estimated cost per day"), "{label}");
    ui.assert_controls_labelled().await;
    ui.shot("week").await;

    ui.find("#insights-by").await.select("Owners").await;
    let rows = ui.wait_rows("#insights-top", 1).await;
    assert_eq!(rows[0][1], "tester", "{rows:?}");

    // A run's page says what it used and what it cost.
    ui.open(&format!("#/runs/{}", ids[10])).await;
    let used = ui.wait_text("#run-usage", "CPU seconds").await;
    assert!(used.contains("asked 256 MB, peaked at"), "{used}");
    ui.wait_text("[data-attr='Cost (estimate)']", "$").await;
}

#[tokio::test]
#[ignore = "needs chromium and chromedriver (scripts/test installs them)"]
async fn a_run_longer_than_its_job_usually_takes_shows_a_slow_badge_in_the_list_and_on_its_page() {
    let ui = Ui::start_with("slow", &["--long-run-minimum-seconds", "1"]).await;
    ui.server.define("nightly", "sleep $NAP").await;
    let nap = |seconds: &str| json!({"env": [{"name": "NAP", "value": seconds}]});
    for _ in 0..5 {
        let run = ui.server.execute("nightly", nap("0.1")).await;
        ui.server
            .wait_stopped(run["run_id"].as_str().unwrap_or_default())
            .await;
    }
    let slow = ui.server.execute("nightly", nap("120")).await;
    let slow_id = slow["run_id"].as_str().unwrap_or_default().to_owned();
    ui.open(&format!("#/runs/{slow_id}")).await;
    // The page follows the run: the flag appears without a reload.
    let note = ui.wait_text("#run-long", "longer than usual").await;
    assert!(note.contains("last 5 successful runs"), "{note}");
    ui.wait_text("main h1 .badge.SLOW", "SLOW").await;
    ui.shot("run").await;
    ui.open("#/runs").await;
    let rows = ui.wait_rows("#runs-table", 1).await;
    assert!(
        rows[0].iter().any(|cell| cell.contains("SLOW")),
        "the running run's row says it is slow: {rows:?}"
    );
}

#[tokio::test]
#[ignore = "needs chromium and chromedriver (scripts/test installs them)"]
async fn a_schedule_made_from_a_task_page_fires_and_is_paused_and_deleted_from_the_schedules_page()
{
    let ui = Ui::start("schedule").await;
    let def = ui.server.define("ticker", "echo tick").await;
    let id = def["definition_id"].as_str().unwrap_or_default().to_owned();
    ui.open(&format!("#/tasks/{id}")).await;
    ui.find("#schedule-task").await.click().await;
    ui.wait_heading("Schedule ticker").await;
    ui.assert_controls_labelled().await;
    // A cron the API refuses: the problem shows beside its field.
    ui.fill("#schedule-form [name=owner]", "ada").await;
    ui.fill("#schedule-form [name=cron]", "every second").await;
    ui.fill("#schedule-form [name=time_zone]", "UTC").await;
    ui.find("#save-schedule").await.click().await;
    ui.wait_text(
        "#schedule-form .field-error:not([hidden])",
        "not a cron expression",
    )
    .await;
    let (_, none) = ui.server.get("/api/v6/schedules").await;
    assert_eq!(none["total"], 0, "a refused schedule is not saved: {none}");
    ui.fill("#schedule-form [name=cron]", "* * * * * *").await;
    ui.find("#save-schedule").await.click().await;
    ui.wait_heading("Schedules").await;
    ui.wait_text("#schedules-table", "ticker").await;
    // It fires every second: the list, read again every 5 s, shows its
    // newest run.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let rows = ui.wait_rows("#schedules-table", 1).await;
        if rows[0][5] != "0" && rows[0][4] != "—" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no fire shown: {rows:?}\n{}",
            ui.server.server_log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ui.shot("list").await;
    ui.find(".pause-schedule").await.click().await;
    ui.find(".resume-schedule").await;
    let (_, list) = ui.server.get("/api/v6/schedules").await;
    assert_eq!(list["schedules"][0]["enabled"], false, "{list}");
    assert_eq!(list["schedules"][0]["owner"], "ada", "{list}");
    let (_, runs) = ui.server.get("/api/v6/history?alias=ticker").await;
    assert!(runs["total"].as_u64().unwrap_or_default() >= 1, "{runs}");
    ui.find(".delete-schedule").await.click().await;
    ui.find("#dialog-confirm").await.click().await;
    ui.wait_text("#schedules-table", "No schedules yet").await;
}
