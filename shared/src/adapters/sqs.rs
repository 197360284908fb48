//! SQS run queues (feature `aws`): one queue per cluster, so one team's runs
//! never wait behind another's.
//!
//! A cluster's queue is named `<prefix><cluster>` (the SAM template creates one
//! per entry of its `Clusters` parameter). A message is one [`RunTicket`] as
//! JSON: `{"run_id": …, "attempt": …, "cluster": …}`. Delivery is at least
//! once; the submit handler launches only a run that is QUEUED at the ticket's
//! attempt, so a redelivered message is harmless.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::ports::{RunQueue, RunTicket};

/// Largest SQS message body
/// (<https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-messages.html>).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Entries one SendMessageBatch, ReceiveMessage or DeleteMessageBatch call may hold
/// (<https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessageBatch.html>).
pub const MAX_BATCH_ENTRIES: usize = 10;

/// The message body of a ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketMessage {
    /// The run.
    pub run_id: String,
    /// The attempt to launch.
    pub attempt: u32,
    /// The cluster.
    pub cluster: String,
}

impl From<&RunTicket> for TicketMessage {
    fn from(t: &RunTicket) -> Self {
        Self {
            run_id: t.run_id.clone(),
            attempt: t.attempt,
            cluster: t.cluster.clone(),
        }
    }
}

impl From<TicketMessage> for RunTicket {
    fn from(m: TicketMessage) -> Self {
        Self {
            run_id: m.run_id,
            attempt: m.attempt,
            cluster: m.cluster,
        }
    }
}

/// Parses a message body back into a ticket.
pub fn parse_ticket(body: &str) -> Result<RunTicket, serde_json::Error> {
    serde_json::from_str::<TicketMessage>(body).map(RunTicket::from)
}

/// One SQS queue per cluster.
#[derive(Debug)]
pub struct SqsRunQueue {
    client: Client,
    prefix: String,
    urls: Mutex<HashMap<String, String>>,
}

fn backend(e: impl Into<crate::error::BoxError>) -> StoreError {
    StoreError::backend(e)
}

impl SqsRunQueue {
    /// Queues named `<prefix><cluster>`.
    pub fn new(client: Client, prefix: impl Into<String>) -> Self {
        Self {
            client,
            prefix: prefix.into(),
            urls: Mutex::new(HashMap::new()),
        }
    }

    /// The queue name of a cluster.
    pub fn queue_name(&self, cluster: &str) -> String {
        format!("{}{cluster}", self.prefix)
    }

    /// Creates a cluster's queue (for tests and local set-ups; the SAM template
    /// creates them in a deployment) and returns its URL.
    pub async fn create_queue(&self, cluster: &str) -> Result<String, StoreError> {
        let out = self
            .client
            .create_queue()
            .queue_name(self.queue_name(cluster))
            .send()
            .await
            .map_err(backend)?;
        let url = out
            .queue_url
            .ok_or_else(|| backend("CreateQueue returned no URL"))?;
        self.remember(cluster, &url);
        Ok(url)
    }

    fn remember(&self, cluster: &str, url: &str) {
        if let Ok(mut urls) = self.urls.lock() {
            urls.insert(cluster.to_owned(), url.to_owned());
        }
    }

    /// The URL of a cluster's queue, looked up once.
    pub async fn queue_url(&self, cluster: &str) -> Result<String, StoreError> {
        if let Some(url) = self.urls.lock().ok().and_then(|u| u.get(cluster).cloned()) {
            return Ok(url);
        }
        let out = self
            .client
            .get_queue_url()
            .queue_name(self.queue_name(cluster))
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error()
                    .is_some_and(|s| s.is_queue_does_not_exist())
                {
                    StoreError::NotFound(format!(
                        "queue {} for cluster {cluster}",
                        self.queue_name(cluster)
                    ))
                } else {
                    backend(e)
                }
            })?;
        let url = out
            .queue_url
            .ok_or_else(|| backend("GetQueueUrl returned no URL"))?;
        self.remember(cluster, &url);
        Ok(url)
    }
}

/// The longest delay SQS gives a message, in seconds.
const MAX_DELAY_SECONDS: u64 = 900;

#[async_trait]
impl RunQueue for SqsRunQueue {
    async fn enqueue_after(
        &self,
        ticket: &RunTicket,
        delay: std::time::Duration,
    ) -> Result<(), StoreError> {
        let url = self.queue_url(&ticket.cluster).await?;
        let body = serde_json::to_string(&TicketMessage::from(ticket)).map_err(backend)?;
        let delay = delay.as_secs().min(MAX_DELAY_SECONDS);
        let mut send = self.client.send_message().queue_url(url).message_body(body);
        if delay > 0 {
            send = send.delay_seconds(delay as i32);
        }
        send.send().await.map_err(backend)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The queue contract on SQS, against moto's server mode.

    use super::*;
    use crate::testing::contract;
    use crate::testing::moto::Moto;

    #[test]
    fn a_ticket_message_round_trips() {
        let t = RunTicket {
            run_id: "r".into(),
            attempt: 2,
            cluster: "c".into(),
        };
        let body = serde_json::to_string(&TicketMessage::from(&t)).unwrap();
        assert_eq!(parse_ticket(&body).unwrap(), t);
        assert!(parse_ticket("{\"run_id\":1}").is_err());
    }

    #[tokio::test]
    #[ignore = "needs moto: scripts/test installs it and runs these"]
    async fn sqs_passes_the_run_queue_contract() {
        let moto = Moto::start();
        let client = Client::new(&moto.sdk_config().await);
        let queue = SqsRunQueue::new(client.clone(), "flotilla-");
        let mut urls = Vec::new();
        for cluster in ["team-a", "team-b"] {
            urls.push(queue.create_queue(cluster).await.unwrap());
        }
        let drain = || async {
            let mut out = Vec::new();
            for url in &urls {
                loop {
                    let got = client
                        .receive_message()
                        .queue_url(url)
                        .max_number_of_messages(MAX_BATCH_ENTRIES as i32)
                        .send()
                        .await
                        .unwrap();
                    let messages = got.messages.unwrap_or_default();
                    if messages.is_empty() {
                        break;
                    }
                    for m in messages {
                        out.push(parse_ticket(m.body().unwrap_or_default()).unwrap());
                        client
                            .delete_message()
                            .queue_url(url)
                            .receipt_handle(m.receipt_handle().unwrap_or_default())
                            .send()
                            .await
                            .unwrap();
                    }
                }
            }
            out
        };
        contract::run_queue_contract(&queue, drain).await;
    }

    #[tokio::test]
    #[ignore = "needs moto: scripts/test installs it and runs these"]
    async fn enqueueing_to_a_cluster_without_a_queue_names_the_missing_queue() {
        let moto = Moto::start();
        let queue = SqsRunQueue::new(Client::new(&moto.sdk_config().await), "flotilla-");
        let ticket = RunTicket {
            run_id: "r".into(),
            attempt: 1,
            cluster: "nowhere".into(),
        };
        match queue.enqueue(&ticket).await {
            Err(StoreError::NotFound(what)) => assert!(what.contains("flotilla-nowhere"), "{what}"),
            other => panic!("expected NotFound, got {other:?}"),
        }
    }
}
