//! `flotilla serve`'s alert webhook: each alert (a run running longer than
//! usual) is posted as JSON to one URL, in the shape of the EventBridge
//! event the AWS stack puts on its bus: `{"detail-type", "source", "time",
//! "detail"}`. Run state changes are not posted. A post that fails, or
//! answers anything but 2xx, is an error the caller logs; it is not retried.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use crate::error::PublishError;
use crate::ports::{
    Clock, EVENT_SOURCE, EventPublisher, RUNNING_LONG_DETAIL_TYPE, RunStateChange, RunningLongAlert,
};

/// How long a post may take.
const POST_TIMEOUT: Duration = Duration::from_secs(10);

/// Posts alerts to one URL.
pub struct AlertWebhook {
    url: String,
    client: reqwest::Client,
    clock: std::sync::Arc<dyn Clock>,
}

impl AlertWebhook {
    /// A webhook posting to `url`, timing its events by `clock`.
    pub fn new(url: impl Into<String>, clock: std::sync::Arc<dyn Clock>) -> Self {
        Self {
            url: url.into(),
            client: reqwest::Client::builder()
                .timeout(POST_TIMEOUT)
                .build()
                .unwrap_or_default(),
            clock,
        }
    }
}

#[async_trait]
impl EventPublisher for AlertWebhook {
    async fn publish(&self, _changes: &[RunStateChange]) -> Result<(), PublishError> {
        Ok(())
    }

    async fn alert(&self, alert: &RunningLongAlert) -> Result<(), PublishError> {
        let body = json!({
            "detail-type": RUNNING_LONG_DETAIL_TYPE,
            "source": EVENT_SOURCE,
            "time": self.clock.now(),
            "detail": alert,
        });
        let answer = self
            .client
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(|e| PublishError::Backend(Box::new(e)))?;
        if answer.status().is_success() {
            Ok(())
        } else {
            Err(PublishError::Rejected {
                failed: 1,
                total: 1,
                reasons: format!("the webhook answered {}", answer.status()),
            })
        }
    }
}
