//! Where the `flotilla` client commands talk to, and as whom: profiles of
//! the config file against the real `flotilla serve`, and requests signed
//! for IAM (SigV4) through a gateway in front of it that checks every
//! signature the way API Gateway does, by SigV4's published steps
//! (`shared::testing::sigv4`), not by the signer that made it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::{Value, json};
use shared::testing::sigv4::{Received, verify_header_signed};

use crate::cli::{bare_command, code, json_out, stderr, stdout};
use crate::support::Server;

#[tokio::test]
async fn a_profile_names_the_server_and_its_token_and_options_beat_it() {
    let dir = tempfile::tempdir().unwrap();
    let config_dir = dir.path().join("config").join("flotilla");
    std::fs::create_dir_all(&config_dir).unwrap();
    // The token file beside the config file, named relative to it.
    std::fs::write(config_dir.join("tokens"), "bo-0123456789abcdef0 bo\n").unwrap();
    let tokens = config_dir.join("tokens");
    let server = Server::start_with(
        &dir.path().join("data"),
        1,
        &["--auth-token-file", tokens.to_str().unwrap()],
    )
    .await;
    std::fs::write(
        config_dir.join("config.toml"),
        format!(
            "default_profile = \"here\"\n\n\
             [profiles.here]\nserver = \"{}\"\ntoken_file = \"tokens\"\n\n\
             [profiles.elsewhere]\nserver = \"http://127.0.0.1:9\"\n",
            server.base
        ),
    )
    .unwrap();
    let def = dir.path().join("def.json");
    std::fs::write(
        &def,
        json!({"alias": "hello", "image": "ubuntu", "command": "echo hello from a profile"})
            .to_string(),
    )
    .unwrap();
    let xdg = dir.path().join("config");
    let flotilla = |args: &[&str]| {
        bare_command(args)
            .env("XDG_CONFIG_HOME", &xdg)
            .output()
            .unwrap()
    };

    // The default profile: its server and its token, with no option given.
    let created = flotilla(&["task", "create", "-f", def.to_str().unwrap()]);
    assert_eq!(code(&created), 0, "{}", stderr(&created));
    let ran = flotilla(&["run", "hello", "-f"]);
    assert_eq!(
        (code(&ran), stdout(&ran)),
        (0, "hello from a profile\n".to_owned()),
        "{}",
        stderr(&ran)
    );
    let runs = json_out(&flotilla(&["runs", "-o", "json"]));
    assert_eq!(runs["history"][0]["user"], "bo", "the token's user: {runs}");

    // A named profile replaces it: nothing listens there.
    let elsewhere = flotilla(&["--profile", "elsewhere", "runs"]);
    assert_eq!(code(&elsewhere), 1, "{}", stderr(&elsewhere));
    assert!(
        stderr(&elsewhere).contains("cannot reach http://127.0.0.1:9"),
        "{}",
        stderr(&elsewhere)
    );

    // An option beats the profile: the server given, without the profile's
    // credentials (it has none), is refused and says how to give some.
    let overridden = bare_command(&["runs", "--server", &server.base])
        .env("XDG_CONFIG_HOME", &xdg)
        .env("FLOTILLA_PROFILE", "elsewhere")
        .output()
        .unwrap();
    assert_eq!(code(&overridden), 1, "{}", stderr(&overridden));
    assert!(
        stderr(&overridden).contains("401") && stderr(&overridden).contains("profile"),
        "{}",
        stderr(&overridden)
    );

    // A profile that is not there is a wrong use, naming those that are.
    let unknown = flotilla(&["--profile", "prod", "runs"]);
    assert_eq!(code(&unknown), 2, "{}", stderr(&unknown));
    assert!(
        stderr(&unknown).contains("profile \"prod\" is named but")
            && stderr(&unknown).contains("only elsewhere, here"),
        "{}",
        stderr(&unknown)
    );

    // A config file named with --config must exist; a misspelt key is
    // refused with where it is.
    let missing = flotilla(&["--config", "/nonexistent/flotilla.toml", "runs"]);
    assert_eq!(code(&missing), 2, "{}", stderr(&missing));
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[profiles.here]\nservr = \"http://x\"\n").unwrap();
    let misspelt = flotilla(&["--config", bad.to_str().unwrap(), "runs"]);
    assert_eq!(code(&misspelt), 2, "{}", stderr(&misspelt));
    assert!(
        stderr(&misspelt).contains("unknown field `servr`")
            && stderr(&misspelt).contains("bad.toml"),
        "{}",
        stderr(&misspelt)
    );
}

/// A gateway in front of `upstream` that lets a request through only when
/// its SigV4 signature, checked with `secret`, is for `execute-api` in
/// `region` by `key_id` with the session token: otherwise a 403 with API
/// Gateway's message. Counts what it let through and what it refused.
struct Gateway {
    base: String,
    passed: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
}

const KEY_ID: &str = "ASIAFLOTILLATEST";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYFLOTILLA";
const SESSION: &str = "IQoJb3JpZ2luX2VjE+session/token==";
const REGION: &str = "eu-west-1";

async fn gateway(upstream: String) -> Gateway {
    let passed = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let http = flotilla_tests::http_client();
    let (p, r) = (passed.clone(), refused.clone());
    let handler = move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
        let (http, upstream, passed, refused) =
            (http.clone(), upstream.clone(), p.clone(), r.clone());
        async move {
            let all: Vec<(String, String)> = headers
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            let received = Received {
                method: method.as_str(),
                path: uri.path(),
                query: uri.query().unwrap_or(""),
                headers: &all,
                body: &body,
            };
            let token = headers
                .get("x-amz-security-token")
                .and_then(|v| v.to_str().ok());
            let verdict = verify_header_signed(&received, SECRET).and_then(|v| {
                let ok = v.key_id == KEY_ID
                    && v.region == REGION
                    && v.service == "execute-api"
                    && token == Some(SESSION)
                    && v.signed_headers.iter().any(|h| h == "x-amz-security-token");
                if ok {
                    Ok(())
                } else {
                    Err(format!("signed as {v:?}"))
                }
            });
            if let Err(why) = verdict {
                refused.fetch_add(1, Ordering::SeqCst);
                let body = json!({"message": format!(
                    "The request signature we calculated does not match the signature you provided. ({why})"
                )});
                return (StatusCode::FORBIDDEN, body.to_string());
            }
            passed.fetch_add(1, Ordering::SeqCst);
            let mut forward = http
                .request(method.clone(), format!("{upstream}{uri}"))
                .body(body.to_vec());
            if let Some(ct) = headers.get("content-type") {
                forward = forward.header("content-type", ct.to_str().unwrap_or(""));
            }
            let answer = forward
                .send()
                .await
                .unwrap_or_else(|e| panic!("the server behind the gateway: {e}"));
            let status =
                StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            (status, answer.text().await.unwrap_or_default())
        }
    };
    let app = axum::Router::new().fallback(handler);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("the gateway cannot listen: {e}"));
    let base = format!(
        "http://{}",
        listener
            .local_addr()
            .unwrap_or_else(|e| panic!("the gateway has no address: {e}"))
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Gateway {
        base,
        passed,
        refused,
    }
}

/// `flotilla args…` whose AWS chain finds `secret` in the environment and
/// nothing else: no profile, no region, no instance metadata.
fn with_aws_keys(args: &[&str], secret: &str) -> std::process::Command {
    let mut c = bare_command(args);
    c.env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_SESSION_TOKEN", SESSION)
        .env("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/aws-credentials",
        )
        .env("AWS_EC2_METADATA_DISABLED", "true");
    for name in ["AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION"] {
        c.env_remove(name);
    }
    c
}

/// `flotilla args…` through `gateway`, signing for IAM in [`REGION`].
fn signed(gateway: &Gateway, secret: &str, args: &[&str]) -> std::process::Output {
    let mut c = with_aws_keys(args, secret);
    c.args([
        "--server",
        &gateway.base,
        "--auth",
        "iam",
        "--region",
        REGION,
    ]);
    c.output()
        .unwrap_or_else(|e| panic!("could not start flotilla: {e}"))
}

// The gateway serves on this test's runtime while the commands block one
// of its threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auth_iam_every_request_is_signed_by_sigv4_as_api_gateway_checks_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), 1).await;
    let gateway = gateway(server.base.clone()).await;
    let def = dir.path().join("def.json");
    std::fs::write(
        &def,
        json!({"alias": "signed+job~1", "image": "ubuntu", "command": "echo \"$GREETING, signed\"; exit 4"})
            .to_string(),
    )
    .unwrap();

    // A POST with a body, a PUT with a body, GETs with queries (a time
    // with colons, log pages), a path with `+` and `~`: each one signed.
    let created = signed(
        &gateway,
        SECRET,
        &["task", "create", "-f", def.to_str().unwrap()],
    );
    assert_eq!(code(&created), 0, "{}", stderr(&created));
    let ran = signed(
        &gateway,
        SECRET,
        &[
            "run",
            "signed+job~1",
            "-e",
            "GREETING=hello there",
            "--owner",
            "cy",
            "-f",
        ],
    );
    assert_eq!(
        (code(&ran), stdout(&ran)),
        (4, "hello there, signed\n".to_owned()),
        "{}",
        stderr(&ran)
    );
    let listed = signed(
        &gateway,
        SECRET,
        &[
            "runs",
            "--status",
            "STOPPED",
            "--since",
            "2020-01-01T00:00:00Z",
            "--alias",
            "signed+job~1",
            "-o",
            "json",
        ],
    );
    assert_eq!(code(&listed), 0, "{}", stderr(&listed));
    let page: Value = json_out(&listed);
    assert_eq!(page["total"], 1, "{page}");
    let run_id = page["history"][0]["run_id"].as_str().unwrap().to_owned();
    let events = signed(&gateway, SECRET, &["events", &run_id]);
    assert_eq!(code(&events), 0, "{}", stderr(&events));
    assert_eq!(
        gateway.refused.load(Ordering::SeqCst),
        0,
        "no request was refused"
    );
    assert!(gateway.passed.load(Ordering::SeqCst) >= 6);

    // The check can fail: signed with another secret, the gateway refuses,
    // and the command says what it was refused for and what to check.
    let forged = signed(&gateway, "not-the-secret", &["runs"]);
    assert_eq!(code(&forged), 1, "{}", stderr(&forged));
    assert!(
        stderr(&forged).contains("error (403)")
            && stderr(&forged).contains("does not match")
            && stderr(&forged).contains("execute-api:Invoke"),
        "{}",
        stderr(&forged)
    );
    assert!(gateway.refused.load(Ordering::SeqCst) >= 1);

    // Without a region from anywhere, it says where to give one.
    let no_region = with_aws_keys(
        &["runs", "--server", &gateway.base, "--auth", "iam"],
        SECRET,
    )
    .output()
    .unwrap();
    assert_eq!(code(&no_region), 2, "{}", stderr(&no_region));
    assert!(
        stderr(&no_region).contains("--region"),
        "{}",
        stderr(&no_region)
    );
}
