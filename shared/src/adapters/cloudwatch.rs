//! Run logs from CloudWatch Logs (feature `aws`), where ECS's `awslogs` driver
//! writes them.
//!
//! A task's stream is `flotilla/main/<task id>` in the configured group (the
//! `awslogs-stream-prefix`, the container name, the task id). A page is one
//! GetLogEvents call from the head; `last_seen` is CloudWatch's
//! `nextForwardToken`, and a token that comes back unchanged means there is
//! nothing newer yet. A stream that does not exist yet (the task has not
//! started) reads as an empty page.

use async_trait::async_trait;
use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::error::ProvideErrorMetadata;

use crate::adapters::ecs::CONTAINER_NAME;
use crate::domain::run::Run;
use crate::error::LogError;
use crate::ports::{AttemptLog, LogPage, LogSource, LogStream};

/// `awslogs-stream-prefix` of every task definition.
pub const STREAM_PREFIX: &str = "flotilla";
/// Pages read at most for one `raw_text` answer (10,000 events or 1 MB each).
pub const MAX_PAGES: usize = 100;
/// Most bytes of log one `raw_text` answer carries from CloudWatch, counted
/// as the text takes inside the JSON string Lambda carries the body in
/// ([`json_escaped_len`]): a Lambda answer holds 6 MB at most.
pub const MAX_RAW_BYTES: usize = 5 * 1024 * 1024;

/// The bytes `text` takes inside a JSON string, as Lambda sends a text body:
/// a quote, a backslash or a common control character takes 2, any other
/// control character 6 (`\u001b`), the rest what it takes in UTF-8.
pub fn json_escaped_len(text: &str) -> usize {
    text.bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum()
}

/// Logs of ECS runs.
#[derive(Debug, Clone)]
pub struct CloudWatchLogs {
    client: Client,
    group: String,
    region: String,
}

/// The log stream of an ECS task, from its ARN.
pub fn stream_of_task(task_arn: &str) -> Option<String> {
    let id = task_arn.rsplit('/').next().filter(|id| !id.is_empty())?;
    Some(format!("{STREAM_PREFIX}/{CONTAINER_NAME}/{id}"))
}

/// A link to a stream in the CloudWatch console.
pub fn console_url(region: &str, group: &str, stream: &str) -> String {
    // The console escapes path parts with '$' instead of '%', twice encoded.
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                other => format!("$25{other:02X}"),
            })
            .collect::<String>()
    };
    format!(
        "https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#logsV2:log-groups/log-group/{}/log-events/{}",
        enc(group),
        enc(stream)
    )
}

fn backend<E: std::error::Error + Send + Sync + 'static>(e: E) -> LogError {
    LogError::Backend(Box::new(e))
}

/// A stream of one item.
struct Once<T>(Option<T>);

impl<T: Unpin> futures_core::Stream for Once<T> {
    type Item = T;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        std::task::Poll::Ready(self.0.take())
    }
}

impl CloudWatchLogs {
    /// The whole log, gathered page by page, up to [`MAX_RAW_BYTES`] as a
    /// JSON string: past that (an answer from Lambda holds 6 MB at most) it
    /// is refused, to be paged through instead.
    pub async fn all(&self, log: &AttemptLog<'_>) -> Result<String, LogError> {
        let Some(stream) = log.task_id.and_then(stream_of_task) else {
            return Ok(String::new());
        };
        let mut text = String::new();
        let mut escaped = 0;
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let Some((page, next)) = self.read(&stream, token.as_deref()).await? else {
                break;
            };
            escaped += json_escaped_len(&page);
            text.push_str(&page);
            if escaped > MAX_RAW_BYTES {
                return Err(LogError::TooLarge {
                    limit: MAX_RAW_BYTES,
                });
            }
            if token.as_deref() == Some(next.as_str()) || next.is_empty() {
                break;
            }
            token = Some(next);
        }
        Ok(text)
    }

    /// Logs in `group` of `region` (the region is used for console links).
    pub fn new(client: Client, group: impl Into<String>, region: impl Into<String>) -> Self {
        Self {
            client,
            group: group.into(),
            region: region.into(),
        }
    }

    /// One GetLogEvents call: the text and the next forward token, or `None`
    /// when the stream does not exist yet.
    async fn read(
        &self,
        stream: &str,
        token: Option<&str>,
    ) -> Result<Option<(String, String)>, LogError> {
        let result = self
            .client
            .get_log_events()
            .log_group_name(&self.group)
            .log_stream_name(stream)
            .start_from_head(true)
            .set_next_token(token.map(str::to_owned))
            .send()
            .await;
        let out = match result {
            Ok(out) => out,
            Err(e) if e.code() == Some("ResourceNotFoundException") => return Ok(None),
            Err(e) if e.code() == Some("InvalidParameterException") && token.is_some() => {
                return Err(LogError::BadCursor(format!(
                    "last_seen is not a cursor this server issued: pass the last_seen of the previous page, or leave it out to start from the beginning ({})",
                    e.message().unwrap_or_default()
                )));
            }
            Err(e) => return Err(backend(e)),
        };
        let mut text = String::new();
        for event in out.events() {
            text.push_str(event.message().unwrap_or_default());
            text.push('\n');
        }
        let next = out
            .next_forward_token()
            .map(str::to_owned)
            .or_else(|| token.map(str::to_owned))
            .unwrap_or_default();
        Ok(Some((text, next)))
    }
}

#[async_trait]
impl LogSource for CloudWatchLogs {
    async fn page(
        &self,
        log: &AttemptLog<'_>,
        last_seen: Option<&str>,
    ) -> Result<LogPage, LogError> {
        let last_seen = last_seen.filter(|s| !s.is_empty());
        let Some(stream) = log.task_id.and_then(stream_of_task) else {
            return Ok(LogPage {
                log: String::new(),
                last_seen: last_seen.unwrap_or_default().to_owned(),
            });
        };
        match self.read(&stream, last_seen).await? {
            Some((log, next)) => Ok(LogPage {
                log,
                last_seen: next,
            }),
            None => Ok(LogPage {
                log: String::new(),
                last_seen: last_seen.unwrap_or_default().to_owned(),
            }),
        }
    }

    async fn stream(&self, log: &AttemptLog<'_>) -> Result<LogStream, LogError> {
        let text = self.all(log).await?;
        let chunk: Result<bytes::Bytes, std::io::Error> = Ok(bytes::Bytes::from(text));
        Ok(Box::pin(Once(Some(chunk))))
    }

    fn link(&self, run: &Run) -> Option<String> {
        let stream = run.task_id.as_deref().and_then(stream_of_task)?;
        Some(console_url(&self.region, &self.group, &stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::moto::Moto;

    proptest::proptest! {
        #[test]
        fn the_escaped_length_is_what_json_makes_of_the_text(text in ".*", raw in proptest::collection::vec(0u8..0x80, 0..200)) {
            for text in [text, String::from_utf8(raw).unwrap_or_default()] {
                let json = serde_json::to_string(&text).unwrap_or_default();
                proptest::prop_assert_eq!(json_escaped_len(&text), json.len() - 2, "{:?}", text);
            }
        }
    }

    #[tokio::test]
    #[ignore = "needs moto: scripts/test installs it and runs these"]
    async fn a_raw_log_of_escape_codes_is_measured_as_the_answer_carries_it() {
        let moto = Moto::start();
        let client = Client::new(&moto.sdk_config().await);
        let (group, stream) = ("/flotilla/runs", "flotilla/main/ansi");
        make_stream(&client, group, stream).await;
        // 1 MiB of terminal colour codes: 6 MiB once escaped in JSON.
        let line = "\u{1b}".repeat(256 * 1024);
        let now = chrono::Utc::now().timestamp_millis();
        put_lines(&client, group, stream, &line, now, 4).await;
        let logs = CloudWatchLogs::new(client, group, "us-east-1");
        let log = AttemptLog {
            cluster: "default",
            run_id: "r-1",
            attempt: 1,
            task_id: Some("arn:aws:ecs:us-east-1:1:task/flotilla-default/ansi"),
        };
        assert_refused_as_too_large(&logs, &log).await;
    }

    /// Puts `count` events of `line` in one request, timestamped from `from`.
    async fn put_lines(
        client: &Client,
        group: &str,
        stream: &str,
        line: &str,
        from: i64,
        count: i64,
    ) {
        let mut req = client
            .put_log_events()
            .log_group_name(group)
            .log_stream_name(stream);
        for i in 0..count {
            req = req.log_events(
                aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                    .message(line)
                    .timestamp(from + i)
                    .build()
                    .unwrap(),
            );
        }
        req.send().await.unwrap();
    }

    async fn assert_refused_as_too_large(logs: &CloudWatchLogs, log: &AttemptLog<'_>) {
        match logs.all(log).await {
            Err(LogError::TooLarge { limit }) => assert_eq!(limit, MAX_RAW_BYTES),
            other => panic!("expected TooLarge, got {:?}", other.map(|t| t.len())),
        }
    }

    #[test]
    fn a_tasks_stream_is_named_after_its_id_and_links_to_the_console() {
        let arn = "arn:aws:ecs:us-east-1:1:task/flotilla-default/0123abcd";
        assert_eq!(
            stream_of_task(arn).as_deref(),
            Some("flotilla/main/0123abcd")
        );
        let url = console_url("us-east-1", "/flotilla/runs", "flotilla/main/0123abcd");
        assert!(
            url.contains(
                "log-group/$252Fflotilla$252Fruns/log-events/flotilla$252Fmain$252F0123abcd"
            ),
            "{url}"
        );
    }

    async fn make_stream(client: &Client, group: &str, stream: &str) {
        client
            .create_log_group()
            .log_group_name(group)
            .send()
            .await
            .unwrap();
        client
            .create_log_stream()
            .log_group_name(group)
            .log_stream_name(stream)
            .send()
            .await
            .unwrap();
    }

    #[tokio::test]
    #[ignore = "needs moto: scripts/test installs it and runs these"]
    async fn logs_page_with_the_forward_token_and_stop_when_it_repeats() {
        let moto = Moto::start();
        let client = Client::new(&moto.sdk_config().await);
        let group = "/flotilla/runs";
        let stream = "flotilla/main/0123abcd";
        make_stream(&client, group, stream).await;
        let put = |lines: &[&str], at: i64| {
            let mut req = client
                .put_log_events()
                .log_group_name(group)
                .log_stream_name(stream);
            for (i, line) in lines.iter().enumerate() {
                req = req.log_events(
                    aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                        .message(*line)
                        .timestamp(at + i as i64)
                        .build()
                        .unwrap(),
                );
            }
            req.send()
        };
        let now = chrono::Utc::now().timestamp_millis();
        put(&["hello yourusername", "second line"], now)
            .await
            .unwrap();

        let logs = CloudWatchLogs::new(client.clone(), group, "us-east-1");
        let mut log = AttemptLog {
            cluster: "default",
            run_id: "r-1",
            attempt: 1,
            task_id: None,
        };
        let before_launch = logs.page(&log, None).await.unwrap();
        assert_eq!(before_launch.log, "", "a run without a task has no log yet");
        log.task_id = Some("arn:aws:ecs:us-east-1:1:task/flotilla-default/0123abcd");

        let first = logs.page(&log, None).await.unwrap();
        assert_eq!(first.log, "hello yourusername\nsecond line\n");
        assert!(!first.last_seen.is_empty());
        let again = logs.page(&log, Some(&first.last_seen)).await.unwrap();
        assert_eq!(again.log, "", "nothing newer: an empty page");
        put(&["third line"], now + 10).await.unwrap();
        let next = logs.page(&log, Some(&again.last_seen)).await.unwrap();
        assert_eq!(next.log, "third line\n");
        assert_eq!(
            logs.all(&log).await.unwrap(),
            "hello yourusername\nsecond line\nthird line\n"
        );

        log.task_id = Some("arn:aws:ecs:us-east-1:1:task/flotilla-default/not-started");
        assert_eq!(
            logs.page(&log, None).await.unwrap().log,
            "",
            "a stream not created yet reads as empty"
        );
    }

    #[tokio::test]
    #[ignore = "needs moto: scripts/test installs it and runs these"]
    async fn a_raw_log_past_what_one_lambda_answer_holds_is_refused_and_still_pages() {
        let moto = Moto::start();
        let client = Client::new(&moto.sdk_config().await);
        let (group, stream) = ("/flotilla/runs", "flotilla/main/big");
        make_stream(&client, group, stream).await;
        let line = "x".repeat(200 * 1024);
        let now = chrono::Utc::now().timestamp_millis();
        // 7 batches of 4 events of 200 KiB: 5.5 MiB, past MAX_RAW_BYTES.
        for batch in 0..7_i64 {
            put_lines(&client, group, stream, &line, now + batch * 4, 4).await;
        }
        let logs = CloudWatchLogs::new(client, group, "us-east-1");
        let log = AttemptLog {
            cluster: "default",
            run_id: "r-1",
            attempt: 1,
            task_id: Some("arn:aws:ecs:us-east-1:1:task/flotilla-default/big"),
        };
        assert_refused_as_too_large(&logs, &log).await;
        let refusal = crate::error::AppError::from(LogError::TooLarge {
            limit: MAX_RAW_BYTES,
        });
        assert!(refusal.to_string().contains("last_seen"), "{refusal}");
        let first = logs.page(&log, None).await.unwrap();
        assert!(!first.log.is_empty(), "paging still reads the log");
    }
}
