//! The `submit` function: an SQS batch of run tickets → ECS tasks.
//!
//! Records are handled one by one and failures are reported per item
//! (`ReportBatchItemFailures`), never by failing the batch. A ticket whose run
//! is not QUEUED at its attempt is acknowledged without a launch, so a
//! redelivered message never launches twice. A retryable launch failure leaves
//! the message to come back after its visibility timeout; a permanent one
//! stops the run with the reason and acknowledges the message. A ticket whose
//! cluster launches nothing now (at its cap, in maintenance or offline) goes
//! back on the queue with a delay ([`HELD_DELAY`]) and is acknowledged, so
//! waiting never moves it to the dead-letter queue.
//!
//! The batch answers before the invocation's deadline whatever AWS does: each
//! record gets the time left less [`ANSWER_RESERVE`], a record that runs out
//! of it (an endpoint that never answers) is reported failed, and so is every
//! record there is no time left to try. A message that is not a run ticket is
//! reported failed too, so that the queue's redrive policy moves it to the
//! dead-letter queue, where an operator sees it.

use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::adapters::sqs::parse_ticket;
use crate::app::{App, SubmitOutcome};

/// How long the ticket of a run whose cluster launches nothing now waits
/// before it is looked at again.
pub const HELD_DELAY: Duration = Duration::from_secs(30);

/// Time kept back from the invocation's deadline to send the answer.
pub const ANSWER_RESERVE: Duration = Duration::from_secs(1);

/// Handles one batch, answering before `deadline`.
pub async fn handle(app: &App, event: SqsEvent, deadline: Instant) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    let answer_by = deadline.checked_sub(ANSWER_RESERVE).unwrap_or(deadline);
    for record in event.records {
        let message_id = record.message_id.clone().unwrap_or_default();
        let body = record.body.as_deref().unwrap_or_default();
        let ticket = match parse_ticket(body) {
            Ok(ticket) => ticket,
            Err(e) => {
                // Redelivering it cannot make it parse: failing it sends it to
                // the dead-letter queue once the redrive policy's count is up.
                error!(message_id = %message_id, error = %e, "a message that is not a run ticket; it goes to the dead-letter queue");
                response.add_failure(message_id);
                continue;
            }
        };
        let outcome = match tokio::time::timeout_at(answer_by, app.submit(&ticket)).await {
            Ok(outcome) => outcome,
            Err(_) => {
                error!(run_id = %ticket.run_id, attempt = ticket.attempt, "no answer before the invocation's deadline; the message will be redelivered");
                response.add_failure(message_id);
                continue;
            }
        };
        match outcome {
            Ok(SubmitOutcome::Launched { task_id }) => {
                info!(run_id = %ticket.run_id, attempt = ticket.attempt, task_id = %task_id, "launched");
            }
            Ok(SubmitOutcome::Skipped) => {
                info!(run_id = %ticket.run_id, attempt = ticket.attempt, "not QUEUED at this attempt; nothing to launch");
            }
            Ok(SubmitOutcome::Failed { reason }) => {
                warn!(run_id = %ticket.run_id, reason = %reason, "launch failed for good; run stopped");
            }
            Ok(SubmitOutcome::Held { reason }) => {
                // Put back with a delay and acknowledged: a wait for a slot
                // or for the cluster's maintenance to end, however long,
                // never counts towards the dead-letter queue.
                match app.queue.enqueue_after(&ticket, HELD_DELAY).await {
                    Ok(()) => {
                        info!(run_id = %ticket.run_id, reason = %reason, "its cluster launches nothing now; its ticket is back on the queue");
                    }
                    Err(e) => {
                        warn!(run_id = %ticket.run_id, error = %e, "could not put back the ticket of a run waiting for a slot; the message will be redelivered");
                        response.add_failure(message_id);
                    }
                }
            }
            Ok(SubmitOutcome::Deferred { reason }) => {
                warn!(run_id = %ticket.run_id, reason = %reason, "launch deferred; the message will be redelivered");
                response.add_failure(message_id);
            }
            Err(e) => {
                error!(run_id = %ticket.run_id, error = %e, "submit failed; the message will be redelivered");
                response.add_failure(message_id);
            }
        }
    }
    response
}

/// A Lambda invocation's deadline (the Runtime API's, as the runtime's
/// context gives it) on the monotonic clock [`handle`] counts time by.
pub fn deadline_of(deadline: std::time::SystemTime) -> Instant {
    let left = deadline
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    Instant::now() + left
}
