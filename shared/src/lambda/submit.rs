//! The `submit` function: an SQS batch of run tickets → ECS tasks.
//!
//! Records are handled one by one and failures are reported per item
//! (`ReportBatchItemFailures`), never by failing the batch. A ticket whose run
//! is not QUEUED at its attempt is acknowledged without a launch, so a
//! redelivered message never launches twice. A retryable launch failure leaves
//! the message to come back after its visibility timeout; a permanent one
//! stops the run with the reason and acknowledges the message.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use tracing::{error, info, warn};

use crate::adapters::sqs::parse_ticket;
use crate::app::{App, SubmitOutcome};

/// Handles one batch.
pub async fn handle(app: &App, event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        let message_id = record.message_id.clone().unwrap_or_default();
        let body = record.body.as_deref().unwrap_or_default();
        let ticket = match parse_ticket(body) {
            Ok(ticket) => ticket,
            Err(e) => {
                // Redelivering it cannot make it parse: drop it, loudly.
                error!(message_id = %message_id, error = %e, "dropping a message that is not a run ticket");
                continue;
            }
        };
        match app.submit(&ticket).await {
            Ok(SubmitOutcome::Launched { task_id }) => {
                info!(run_id = %ticket.run_id, attempt = ticket.attempt, task_id = %task_id, "launched");
            }
            Ok(SubmitOutcome::Skipped) => {
                info!(run_id = %ticket.run_id, attempt = ticket.attempt, "not QUEUED at this attempt; nothing to launch");
            }
            Ok(SubmitOutcome::Failed { reason }) => {
                warn!(run_id = %ticket.run_id, reason = %reason, "launch failed for good; run stopped");
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
