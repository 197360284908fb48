//! Run state changes published on an EventBridge bus (feature `aws`), for
//! automation: detail-type [`DETAIL_TYPE`], source [`SOURCE`], and a detail
//! that is the JSON of [`RunStateChange`]; and runs that run long,
//! detail-type [`RUNNING_LONG_DETAIL_TYPE`] with the JSON of
//! [`RunningLongAlert`]. A partial failure (`FailedEntryCount`) is an error,
//! not a success.

use async_trait::async_trait;
use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use crate::error::PublishError;
use crate::ports::{EventPublisher, RunStateChange, RunningLongAlert};

/// `detail-type` of every published state change.
pub const DETAIL_TYPE: &str = crate::ports::STATE_CHANGE_DETAIL_TYPE;
pub use crate::ports::RUNNING_LONG_DETAIL_TYPE;
/// `source` of every published event.
pub const SOURCE: &str = crate::ports::EVENT_SOURCE;
/// Entries one PutEvents call may hold
/// (<https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutEvents.html>).
pub const MAX_ENTRIES_PER_PUT: usize = 10;

/// Publishes on one bus.
#[derive(Debug, Clone)]
pub struct EventBridgePublisher {
    client: Client,
    bus: String,
}

impl EventBridgePublisher {
    /// A publisher on `bus`.
    pub fn new(client: Client, bus: impl Into<String>) -> Self {
        Self {
            client,
            bus: bus.into(),
        }
    }
}

impl EventBridgePublisher {
    /// Puts one event of `detail_type` per detail, [`MAX_ENTRIES_PER_PUT`]
    /// a call.
    async fn put<T: serde::Serialize>(
        &self,
        detail_type: &str,
        details: &[T],
    ) -> Result<(), PublishError> {
        for chunk in details.chunks(MAX_ENTRIES_PER_PUT) {
            let mut entries = Vec::with_capacity(chunk.len());
            for change in chunk {
                let detail = serde_json::to_string(change)
                    .map_err(|e| PublishError::Backend(Box::new(e)))?;
                entries.push(
                    PutEventsRequestEntry::builder()
                        .event_bus_name(&self.bus)
                        .source(SOURCE)
                        .detail_type(detail_type)
                        .detail(detail)
                        .build(),
                );
            }
            let out = self
                .client
                .put_events()
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| PublishError::Backend(Box::new(e)))?;
            let failed = usize::try_from(out.failed_entry_count()).unwrap_or(0);
            if failed > 0 {
                let reasons: Vec<String> = out
                    .entries()
                    .iter()
                    .filter_map(|e| e.error_message().map(str::to_owned))
                    .collect();
                return Err(PublishError::Rejected {
                    failed,
                    total: chunk.len(),
                    reasons: reasons.join("; "),
                });
            }
        }
        Ok(())
    }
}

#[async_trait]
impl EventPublisher for EventBridgePublisher {
    async fn publish(&self, changes: &[RunStateChange]) -> Result<(), PublishError> {
        self.put(DETAIL_TYPE, changes).await
    }

    async fn alert(&self, alert: &RunningLongAlert) -> Result<(), PublishError> {
        self.put(RUNNING_LONG_DETAIL_TYPE, std::slice::from_ref(alert))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::run::RunStatus;
    use crate::testing::moto::Moto;
    use crate::testing::scenario::queued;

    #[tokio::test]
    #[ignore = "needs moto: scripts/test installs it and runs these"]
    async fn a_published_change_and_a_running_long_alert_reach_a_rule_subscribed_to_the_bus() {
        let moto = Moto::start();
        let config = moto.sdk_config().await;
        let events = Client::new(&config);
        let sqs = aws_sdk_sqs::Client::new(&config);
        events
            .create_event_bus()
            .name("flotilla-runs")
            .send()
            .await
            .unwrap();
        let queue_url = sqs
            .create_queue()
            .queue_name("observer")
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap();
        let queue_arn =
            attrs.attributes().unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn].clone();
        events
            .put_rule()
            .name("observe")
            .event_bus_name("flotilla-runs")
            .event_pattern(format!(
                r#"{{"source":["{SOURCE}"],"detail-type":["{DETAIL_TYPE}","{RUNNING_LONG_DETAIL_TYPE}"]}}"#
            ))
            .send()
            .await
            .unwrap();
        events
            .put_targets()
            .rule("observe")
            .event_bus_name("flotilla-runs")
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("q")
                    .arn(queue_arn)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();

        let run = crate::domain::run::replay(&[queued()]).run.unwrap();
        let change = RunStateChange::of(&run, None);
        let publisher = EventBridgePublisher::new(events, "flotilla-runs");
        publisher
            .publish(std::slice::from_ref(&change))
            .await
            .unwrap();
        let alert = RunningLongAlert {
            run_id: "r-1".into(),
            definition_id: "d".into(),
            alias: "nightly".into(),
            cluster: "default".into(),
            owner: "ann".into(),
            attempt: 1,
            started_at: None,
            running_s: 900,
            usual_s: 300,
            usual_of_runs: 20,
            message: "running long".into(),
        };
        publisher.alert(&alert).await.unwrap();

        let mut envelopes: Vec<serde_json::Value> = Vec::new();
        for _ in 0..10 {
            let got = sqs
                .receive_message()
                .queue_url(&queue_url)
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap();
            envelopes.extend(
                got.messages()
                    .iter()
                    .map(|m| serde_json::from_str(m.body().unwrap()).unwrap()),
            );
            if envelopes.len() >= 2 {
                break;
            }
        }
        assert_eq!(envelopes.len(), 2, "two events delivered: {envelopes:?}");
        envelopes.sort_by_key(|e| e["detail-type"].as_str().unwrap_or_default().to_owned());
        assert_eq!(envelopes[0]["detail-type"], RUNNING_LONG_DETAIL_TYPE);
        assert_eq!(envelopes[1]["detail-type"], DETAIL_TYPE);
        assert!(envelopes.iter().all(|e| e["source"] == SOURCE));
        let detail: RunStateChange =
            serde_json::from_value(envelopes[1]["detail"].clone()).unwrap();
        assert_eq!(detail, change);
        assert_eq!(detail.status, RunStatus::Queued);
        let flagged: RunningLongAlert =
            serde_json::from_value(envelopes[0]["detail"].clone()).unwrap();
        assert_eq!(flagged, alert);
    }
}
