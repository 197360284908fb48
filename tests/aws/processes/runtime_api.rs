//! A Lambda Runtime API emulator: what the Lambda service offers a custom
//! runtime (`provided.al2023`) inside each execution environment, so that a
//! function binary runs as a real process, polling for work as it does on AWS.
//!
//! Each function gets a listener of its own (its `AWS_LAMBDA_RUNTIME_API`),
//! as each execution environment has its own endpoint, and one queue of
//! invocations:
//!
//! - `GET /2018-06-01/runtime/invocation/next` waits for the next invocation
//!   and answers its payload with the `Lambda-Runtime-Aws-Request-Id`,
//!   `Lambda-Runtime-Deadline-Ms`, `Lambda-Runtime-Invoked-Function-Arn` and
//!   `Lambda-Runtime-Trace-Id` headers;
//! - `POST /2018-06-01/runtime/invocation/{id}/response` ends it with the
//!   function's answer (at most 6 MB, Lambda's synchronous limit);
//! - `POST /2018-06-01/runtime/invocation/{id}/error` ends it with the error
//!   the function reported (`Lambda-Runtime-Function-Error-Type`, and the
//!   body);
//! - `POST /2018-06-01/runtime/init/error` records that the function could not
//!   start: every invocation waiting on it then fails with that error.
//!
//! [`RuntimeApi::invoke`] is the test's side: one synchronous invocation, as
//! API Gateway, an event source mapping or an EventBridge rule makes it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};

/// Lambda's limit on a synchronous invocation's response.
pub const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;

const REQUEST_ID: &str = "lambda-runtime-aws-request-id";
const DEADLINE_MS: &str = "lambda-runtime-deadline-ms";
const FUNCTION_ARN: &str = "lambda-runtime-invoked-function-arn";
const TRACE_ID: &str = "lambda-runtime-trace-id";
const ERROR_TYPE: &str = "lambda-runtime-function-error-type";

/// Why an invocation has no answer.
#[derive(Debug, Clone, PartialEq)]
pub enum InvocationError {
    /// The function reported an error for it (`.../{id}/error`).
    Function {
        /// `Lambda-Runtime-Function-Error-Type`, when sent.
        error_type: Option<String>,
        /// The error document (`errorType`, `errorMessage`).
        body: Value,
    },
    /// The function reported that it could not initialise (`/init/error`).
    Init {
        /// `Lambda-Runtime-Function-Error-Type`, when sent.
        error_type: Option<String>,
        /// The error document.
        body: Value,
    },
    /// The function answered more than [`MAX_RESPONSE_BYTES`].
    ResponseTooLarge(usize),
    /// No answer within the bound the caller gave.
    TimedOut(Duration),
    /// No function of that name was added.
    UnknownFunction(String),
}

impl std::fmt::Display for InvocationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Function { error_type, body } => {
                write!(f, "the function reported an error ({error_type:?}): {body}")
            }
            Self::Init { error_type, body } => write!(
                f,
                "the function reported an initialisation error ({error_type:?}): {body}"
            ),
            Self::ResponseTooLarge(n) => write!(
                f,
                "the function answered {n} bytes, more than Lambda's {MAX_RESPONSE_BYTES}"
            ),
            Self::TimedOut(bound) => write!(f, "no answer within {bound:?}"),
            Self::UnknownFunction(name) => write!(f, "no function {name} in the emulator"),
        }
    }
}

type Outcome = Result<Value, InvocationError>;

struct Invocation {
    id: String,
    payload: Vec<u8>,
    reply: oneshot::Sender<Outcome>,
}

/// One function's execution environment, as its runtime sees it.
struct Function {
    arn: String,
    timeout: Duration,
    queue: mpsc::UnboundedSender<Invocation>,
    /// Taken by one `next` request at a time (a runtime polls sequentially).
    pending: tokio::sync::Mutex<mpsc::UnboundedReceiver<Invocation>>,
    in_flight: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    /// When the runtime first asked for work: the end of its cold start.
    first_poll: watch::Sender<Option<Instant>>,
    init_error: watch::Sender<Option<InvocationError>>,
    invocations: AtomicU64,
}

/// The emulator: one Runtime API endpoint per function.
#[derive(Default)]
pub struct RuntimeApi {
    functions: Mutex<HashMap<String, Arc<Function>>>,
    servers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        if let Ok(servers) = self.servers.lock() {
            for server in servers.iter() {
                server.abort();
            }
        }
    }
}

impl RuntimeApi {
    /// An emulator with no function yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a function (its ARN, and the timeout its deadlines are set
    /// from) and returns its endpoint, the `host:port` a runtime reads from
    /// `AWS_LAMBDA_RUNTIME_API`.
    pub async fn add(&self, name: &str, arn: &str, timeout: Duration) -> std::io::Result<String> {
        let (queue, pending) = mpsc::unbounded_channel();
        let function = Arc::new(Function {
            arn: arn.to_owned(),
            timeout,
            queue,
            pending: tokio::sync::Mutex::new(pending),
            in_flight: Mutex::new(HashMap::new()),
            first_poll: watch::Sender::new(None),
            init_error: watch::Sender::new(None),
            invocations: AtomicU64::new(0),
        });
        let router = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            // The size limit is Lambda's, checked in `response`.
            .layer(DefaultBodyLimit::disable())
            .with_state(Arc::clone(&function));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = listener.local_addr()?.to_string();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        lock(&self.servers).push(server);
        lock(&self.functions).insert(name.to_owned(), function);
        Ok(endpoint)
    }

    /// When `function`'s runtime first asked for an invocation, waiting at
    /// most `bound` for it to.
    pub async fn first_poll(&self, function: &str, bound: Duration) -> Option<Instant> {
        let f = lock(&self.functions).get(function).cloned()?;
        let mut polled = f.first_poll.subscribe();
        let waited = tokio::time::timeout(bound, polled.wait_for(Option::is_some)).await;
        waited.ok().and_then(|r| r.ok()).and_then(|at| *at)
    }

    /// The initialisation error `function` reported, if it did.
    pub fn init_error(&self, function: &str) -> Option<InvocationError> {
        let f = lock(&self.functions).get(function).cloned()?;
        f.init_error.borrow().clone()
    }

    /// One synchronous invocation of `function` with `payload`: its answer,
    /// or why there is none within `bound`.
    pub async fn invoke(&self, function: &str, payload: &Value, bound: Duration) -> Outcome {
        let Some(f) = lock(&self.functions).get(function).cloned() else {
            return Err(InvocationError::UnknownFunction(function.to_owned()));
        };
        let n = f.invocations.fetch_add(1, Ordering::Relaxed) + 1;
        let (reply, answer) = oneshot::channel();
        let invocation = Invocation {
            id: request_id(function, n),
            payload: payload.to_string().into_bytes(),
            reply,
        };
        let mut init_failed = f.init_error.subscribe();
        if f.queue.send(invocation).is_err() {
            return Err(InvocationError::UnknownFunction(function.to_owned()));
        }
        tokio::select! {
            outcome = answer => outcome.unwrap_or(Err(InvocationError::TimedOut(bound))),
            failed = init_failed.wait_for(Option::is_some) => match failed {
                Ok(error) => Err(error.clone().unwrap_or(InvocationError::TimedOut(bound))),
                Err(_) => Err(InvocationError::TimedOut(bound)),
            },
            () = tokio::time::sleep(bound) => Err(InvocationError::TimedOut(bound)),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A request id shaped like Lambda's (a UUID), unique per function and call.
fn request_id(function: &str, n: u64) -> String {
    let tag = function
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    format!("{tag:08x}-0000-4000-8000-{n:012x}")
}

fn epoch(at: SystemTime) -> Duration {
    at.duration_since(UNIX_EPOCH).unwrap_or_default()
}

fn error_body(error_type: &str, message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"errorType": error_type, "errorMessage": message})),
    )
        .into_response()
}

fn accepted() -> Response {
    (StatusCode::ACCEPTED, axum::Json(json!({"status": "OK"}))).into_response()
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn document(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|_| json!(String::from_utf8_lossy(body)))
}

async fn next(State(f): State<Arc<Function>>) -> Response {
    f.first_poll.send_if_modified(|at| {
        let first = at.is_none();
        if first {
            *at = Some(Instant::now());
        }
        first
    });
    // An invocation whose caller stopped waiting (its bound passed) is
    // dropped, never handed to the runtime late.
    let invocation = {
        let mut pending = f.pending.lock().await;
        loop {
            match pending.recv().await {
                Some(invocation) if invocation.reply.is_closed() => continue,
                Some(invocation) => break invocation,
                None => return error_body("ServiceException", "the emulator is shutting down"),
            }
        }
    };
    let now = epoch(SystemTime::now());
    let deadline = (now + f.timeout).as_millis();
    let trace = format!(
        "Root=1-{:08x}-{:024x};Parent={:016x};Sampled=0",
        now.as_secs(),
        f.invocations.load(Ordering::Relaxed),
        now.as_micros() as u64,
    );
    lock(&f.in_flight).insert(invocation.id.clone(), invocation.reply);
    let mut headers = HeaderMap::new();
    for (name, value) in [
        (REQUEST_ID, invocation.id),
        (DEADLINE_MS, deadline.to_string()),
        (FUNCTION_ARN, f.arn.clone()),
        (TRACE_ID, trace),
        ("content-type", "application/json".to_owned()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    (StatusCode::OK, headers, invocation.payload).into_response()
}

async fn response(State(f): State<Arc<Function>>, Path(id): Path<String>, body: Bytes) -> Response {
    let Some(reply) = lock(&f.in_flight).remove(&id) else {
        return error_body("InvalidRequestID", &format!("no invocation {id} in flight"));
    };
    if body.len() > MAX_RESPONSE_BYTES {
        let _ = reply.send(Err(InvocationError::ResponseTooLarge(body.len())));
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            axum::Json(
                json!({"errorType": "RequestEntityTooLarge", "errorMessage": "response too large"}),
            ),
        )
            .into_response();
    }
    let _ = reply.send(Ok(document(&body)));
    accepted()
}

async fn error(
    State(f): State<Arc<Function>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(reply) = lock(&f.in_flight).remove(&id) else {
        return error_body("InvalidRequestID", &format!("no invocation {id} in flight"));
    };
    let _ = reply.send(Err(InvocationError::Function {
        error_type: header_text(&headers, ERROR_TYPE),
        body: document(&body),
    }));
    accepted()
}

async fn init_error(State(f): State<Arc<Function>>, headers: HeaderMap, body: Bytes) -> Response {
    f.init_error.send_replace(Some(InvocationError::Init {
        error_type: header_text(&headers, ERROR_TYPE),
        body: document(&body),
    }));
    accepted()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn raw(method: &str, url: String, body: &str) -> reqwest::Response {
        let client = flotilla_tests::http_client();
        let request = match method {
            "GET" => client.get(url),
            _ => client.post(url).body(body.to_owned()),
        };
        request.send().await.unwrap()
    }

    /// What a runtime does, by hand: poll, then answer or fail.
    #[tokio::test]
    async fn an_invocation_is_handed_to_the_polling_runtime_and_ends_with_its_answer_or_error() {
        let api = Arc::new(RuntimeApi::new());
        let arn = "arn:aws:lambda:us-east-1:123456789012:function:f";
        let endpoint = api.add("f", arn, Duration::from_secs(30)).await.unwrap();
        let base = format!("http://{endpoint}/2018-06-01/runtime");

        let caller = Arc::clone(&api);
        let call = tokio::spawn(async move {
            caller
                .invoke("f", &json!({"n": 1}), Duration::from_secs(30))
                .await
        });
        let got = raw("GET", format!("{base}/invocation/next"), "").await;
        assert_eq!(got.status(), 200);
        let id = got.headers()[REQUEST_ID].to_str().unwrap().to_owned();
        assert_eq!(got.headers()[FUNCTION_ARN], arn);
        assert!(
            got.headers()[TRACE_ID]
                .to_str()
                .unwrap()
                .starts_with("Root=1-")
        );
        let deadline: u128 = got.headers()[DEADLINE_MS]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(deadline > epoch(SystemTime::now()).as_millis());
        assert_eq!(got.json::<Value>().await.unwrap(), json!({"n": 1}));
        let done = raw("POST", format!("{base}/invocation/{id}/response"), "[1]").await;
        assert_eq!(done.status(), 202);
        assert_eq!(call.await.unwrap(), Ok(json!([1])));
        assert!(
            api.first_poll("f", Duration::from_secs(1)).await.is_some(),
            "the first poll is recorded"
        );
        let again = raw("POST", format!("{base}/invocation/{id}/response"), "[2]").await;
        assert_eq!(again.status(), 400, "an invocation ends once");

        let caller = Arc::clone(&api);
        let call = tokio::spawn(async move {
            caller
                .invoke("f", &json!({"n": 2}), Duration::from_secs(30))
                .await
        });
        let got = raw("GET", format!("{base}/invocation/next"), "").await;
        let id = got.headers()[REQUEST_ID].to_str().unwrap().to_owned();
        let failed = flotilla_tests::http_client()
            .post(format!("{base}/invocation/{id}/error"))
            .header(ERROR_TYPE, "Unhandled")
            .body(r#"{"errorType":"E","errorMessage":"boom"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(failed.status(), 202);
        assert_eq!(
            call.await.unwrap(),
            Err(InvocationError::Function {
                error_type: Some("Unhandled".to_owned()),
                body: json!({"errorType": "E", "errorMessage": "boom"}),
            })
        );
    }

    #[tokio::test]
    async fn an_initialisation_error_fails_the_waiting_invocation_and_no_poll_times_out() {
        let api = Arc::new(RuntimeApi::new());
        let endpoint = api
            .add("g", "arn:g", Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(
            api.invoke("g", &json!({}), Duration::from_millis(100))
                .await,
            Err(InvocationError::TimedOut(Duration::from_millis(100))),
            "nobody polled"
        );
        assert!(
            api.first_poll("g", Duration::from_millis(50))
                .await
                .is_none()
        );
        let caller = Arc::clone(&api);
        let call = tokio::spawn(async move {
            caller
                .invoke("g", &json!({}), Duration::from_secs(30))
                .await
        });
        let reported = raw(
            "POST",
            format!("http://{endpoint}/2018-06-01/runtime/init/error"),
            r#"{"errorType":"Config","errorMessage":"FLOTILLA_TABLE is not set"}"#,
        )
        .await;
        assert_eq!(reported.status(), 202);
        let outcome = call.await.unwrap();
        assert!(
            matches!(&outcome, Err(InvocationError::Init { body, .. }) if body["errorMessage"] == "FLOTILLA_TABLE is not set"),
            "{outcome:?}"
        );
        assert!(api.init_error("g").is_some());
    }
}
