//! Counts the AWS requests a client makes, by service and operation, and the
//! DynamoDB items they write with the write units DynamoDB bills for them, so
//! tests can report and bound the cost of a run; each request's JSON body is
//! kept, so tests can check what was asked for.

use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use serde_json::Value;

/// One request as counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    /// e.g. `DynamoDB_20120810`.
    pub service: String,
    /// e.g. `TransactWriteItems`.
    pub operation: String,
    /// DynamoDB items the request writes (puts, updates, deletes).
    pub items_written: u32,
    /// Write capacity units DynamoDB bills for it, from the items' sizes.
    pub write_units: u32,
    /// The IAM actions it needs, e.g. `dynamodb:PutItem` for each put of a
    /// `TransactWriteItems`.
    pub iam_actions: Vec<String>,
    /// The request's JSON body (`null` when it has none).
    pub body: Value,
}

/// Records every request, in order.
#[derive(Debug, Clone, Default)]
pub struct RequestCounter(Arc<Mutex<Vec<Counted>>>);

impl RequestCounter {
    /// Every request so far, as `(service, operation)`.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.counted()
            .into_iter()
            .map(|c| (c.service, c.operation))
            .collect()
    }

    /// Every request so far, with what it wrote.
    pub fn counted(&self) -> Vec<Counted> {
        self.0.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Every IAM action the requests so far needed.
    pub fn iam_actions(&self) -> std::collections::BTreeSet<String> {
        self.counted()
            .into_iter()
            .flat_map(|c| c.iam_actions)
            .collect()
    }

    /// DynamoDB write requests, items written and write units billed, so far.
    pub fn dynamodb_writes(&self) -> (usize, u32, u32) {
        let writes: Vec<Counted> = self
            .counted()
            .into_iter()
            .filter(|c| c.items_written > 0)
            .collect();
        (
            writes.len(),
            writes.iter().map(|c| c.items_written).sum(),
            writes.iter().map(|c| c.write_units).sum(),
        )
    }

    /// Forgets what was counted.
    pub fn reset(&self) {
        if let Ok(mut r) = self.0.lock() {
            r.clear();
        }
    }

    /// The bodies of the requests to one operation so far, in order.
    pub fn bodies(&self, operation: &str) -> Vec<Value> {
        self.counted()
            .into_iter()
            .filter(|c| c.operation == operation)
            .map(|c| c.body)
            .collect()
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
        let body = context
            .request()
            .body()
            .bytes()
            .and_then(|b| serde_json::from_slice::<Value>(b).ok())
            .unwrap_or(Value::Null);
        let (items_written, write_units) = if service.starts_with("DynamoDB") {
            write_cost(operation, &body)
        } else {
            (0, 0)
        };
        let iam_actions = iam_actions(service, operation, &body);
        if let Ok(mut r) = self.0.lock() {
            r.push(Counted {
                service: service.to_owned(),
                operation: operation.to_owned(),
                items_written,
                write_units,
                iam_actions,
                body,
            });
        }
        Ok(())
    }
}

/// The IAM actions a request needs: its service's prefix and the operation,
/// except for a DynamoDB transaction, which needs the action of each item's
/// write (there is no `TransactWriteItems` action).
fn iam_actions(service: &str, operation: &str, body: &Value) -> Vec<String> {
    let prefix = match service {
        s if s.starts_with("DynamoDB") => "dynamodb",
        "AmazonSQS" => "sqs",
        s if s.starts_with("AmazonEC2ContainerService") => "ecs",
        s if s.starts_with("Logs") => "logs",
        "AWSEvents" => "events",
        other => other,
    };
    if operation == "TransactWriteItems" {
        let mut actions: Vec<String> = body["TransactItems"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| item.as_object()?.keys().next().cloned())
                    .map(|kind| match kind.as_str() {
                        "Put" => "dynamodb:PutItem".to_owned(),
                        "Update" => "dynamodb:UpdateItem".to_owned(),
                        "Delete" => "dynamodb:DeleteItem".to_owned(),
                        _ => "dynamodb:ConditionCheckItem".to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        actions.sort();
        actions.dedup();
        return actions;
    }
    vec![format!("{prefix}:{operation}")]
}

/// Items a DynamoDB request writes and the write units billed for them: one
/// unit per started KB of each item, twice that inside a transaction. An
/// update or delete is costed by its key (a lower bound; our writes are puts).
fn write_cost(operation: &str, body: &Value) -> (u32, u32) {
    let units =
        |item: &Value| u32::try_from(item_size(item).div_ceil(1024).max(1)).unwrap_or(u32::MAX);
    match operation {
        "PutItem" => (1, units(&body["Item"])),
        "UpdateItem" | "DeleteItem" => (1, units(&body["Key"])),
        "TransactWriteItems" => {
            let items = body["TransactItems"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let mut written = 0;
            let mut total = 0;
            for entry in &items {
                let item = if let Some(put) = entry.get("Put") {
                    &put["Item"]
                } else if let Some(change) = entry.get("Update").or_else(|| entry.get("Delete")) {
                    &change["Key"]
                } else {
                    // A ConditionCheck writes nothing, but is billed as a write.
                    &entry["ConditionCheck"]["Key"]
                };
                if entry.get("ConditionCheck").is_none() {
                    written += 1;
                }
                total += 2 * units(item);
            }
            (written, total)
        }
        _ => (0, 0),
    }
}

/// An item's size as DynamoDB counts it: attribute names plus values, with
/// numbers at about half a byte per digit and 3 bytes of overhead per list or
/// map plus 1 per element.
fn item_size(item: &Value) -> usize {
    item.as_object()
        .map(|attributes| {
            attributes
                .iter()
                .map(|(name, value)| name.len() + value_size(value))
                .sum()
        })
        .unwrap_or(0)
}

fn value_size(value: &Value) -> usize {
    let Some((kind, inner)) = value.as_object().and_then(|o| o.iter().next()) else {
        return 0;
    };
    match kind.as_str() {
        "S" | "B" => inner.as_str().map_or(0, str::len),
        "N" => inner.as_str().map_or(1, |n| n.len().div_ceil(2) + 1),
        "BOOL" | "NULL" => 1,
        "SS" | "NS" | "BS" => inner.as_array().map_or(0, |a| {
            a.iter().filter_map(Value::as_str).map(str::len).sum()
        }),
        "L" => {
            3 + inner
                .as_array()
                .map_or(0, |a| a.iter().map(|v| 1 + value_size(v)).sum::<usize>())
        }
        "M" => {
            3 + inner.as_object().map_or(0, |m| {
                m.iter()
                    .map(|(k, v)| 1 + k.len() + value_size(v))
                    .sum::<usize>()
            })
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_transaction_is_billed_two_units_per_started_kilobyte_of_each_item() {
        let small = json!({"PK": {"S": "RUN#1"}, "SK": {"S": "STATE"}, "version": {"N": "12"}});
        let large = json!({"PK": {"S": "RUN#2"}, "body": {"S": "x".repeat(1500)}});
        let body = json!({"TransactItems": [
            {"Put": {"Item": small}},
            {"Put": {"Item": large}},
            {"ConditionCheck": {"Key": {"PK": {"S": "ALIAS#a"}}}}
        ]});
        assert_eq!(write_cost("TransactWriteItems", &body), (2, 2 + 4 + 2));
        assert_eq!(write_cost("PutItem", &json!({"Item": large})), (1, 2));
        assert_eq!(write_cost("GetItem", &json!({"Key": small})), (0, 0));
    }

    #[test]
    fn an_items_size_counts_names_values_and_nesting() {
        let item =
            json!({"ab": {"S": "xyz"}, "n": {"N": "1234"}, "m": {"M": {"k": {"BOOL": true}}}});
        // "ab"+3, "n"+(2+1), "m"+(3 + 1 + "k" + 1)
        assert_eq!(item_size(&item), 5 + 4 + 7);
    }
}
