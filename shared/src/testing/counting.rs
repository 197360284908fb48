//! Counts the AWS requests a client makes, by service and operation, so tests
//! can report and bound the cost of a run.

use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// Records `(service, operation)` of every request, in order.
#[derive(Debug, Clone, Default)]
pub struct RequestCounter(Arc<Mutex<Vec<(String, String)>>>);

impl RequestCounter {
    /// Every request so far.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.0.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Forgets what was counted.
    pub fn reset(&self) {
        if let Ok(mut r) = self.0.lock() {
            r.clear();
        }
    }

    /// Requests to one operation.
    pub fn count(&self, operation: &str) -> usize {
        self.requests()
            .iter()
            .filter(|(_, op)| op == operation)
            .count()
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    // Counted as the request leaves, so a retried call counts every attempt.
    // The services used speak AWS JSON, whose `X-Amz-Target` header names
    // `<service>.<operation>`.
    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let target = context
            .request()
            .headers()
            .get("x-amz-target")
            .unwrap_or("unknown.unknown");
        let (service, operation) = target.split_once('.').unwrap_or(("unknown", target));
        if let Ok(mut r) = self.0.lock() {
            r.push((service.to_owned(), operation.to_owned()));
        }
        Ok(())
    }
}
