//! Leaderboard tallies on DynamoDB: an item per dimension, day and key
//! (`TALLY#<dimension>#<day>`, `K#<key>`), added to with `ADD` in the
//! transaction that ends a run, and read a day (one `Query`) at a time.

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use chrono::NaiveDate;

use super::{DynamoStore, Item, backend, get_s, keys, s};
use crate::domain::insights::{DayTally, Dimension, MAX_WINDOW_DAYS, RunTally};
use crate::error::StoreError;

fn tally_pk(dimension: Dimension, day: NaiveDate) -> String {
    format!("TALLY#{}#{day}", dimension.as_str())
}

/// The sort key of a tally: the key with a prefix, as a key attribute may
/// not be empty (a definition with no group).
fn tally_sk(key: &str) -> String {
    format!("K#{key}")
}

fn number(item: &Item, name: &str) -> f64 {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0)
}

impl DynamoStore {
    /// The updates adding `tally` to its day's items, one per dimension.
    pub(super) fn tally_updates(
        &self,
        tally: &RunTally,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let n = |v: f64| AttributeValue::N(v.to_string());
        tally
            .keys
            .iter()
            .map(|(dimension, key, label)| {
                let update = Update::builder()
                    .table_name(&self.table)
                    .key(keys::PK, s(tally_pk(*dimension, tally.day)))
                    .key(keys::SK, s(tally_sk(key)))
                    .update_expression(
                        "SET #label = :label ADD #cost :cost, #hours :hours, #runs :one, #failed :failed",
                    )
                    .expression_attribute_names("#label", "label")
                    .expression_attribute_names("#cost", "cost_usd")
                    .expression_attribute_names("#hours", "cpu_hours")
                    .expression_attribute_names("#runs", "runs")
                    .expression_attribute_names("#failed", "failed")
                    .expression_attribute_values(":label", s(label.clone()))
                    .expression_attribute_values(":cost", n(tally.cost_usd))
                    .expression_attribute_values(":hours", n(tally.cpu_hours))
                    .expression_attribute_values(":one", n(1.0))
                    .expression_attribute_values(":failed", n(f64::from(u8::from(tally.failed))))
                    .build()
                    .map_err(backend)?;
                Ok(TransactWriteItem::builder().update(update).build())
            })
            .collect()
    }

    /// The tallies of `by` from `from` to `to`: one `Query` per day (a page
    /// at a time), at most [`MAX_WINDOW_DAYS`] days.
    pub(super) async fn read_tallies(
        &self,
        by: Dimension,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DayTally>, StoreError> {
        let mut tallies = Vec::new();
        for day in from
            .iter_days()
            .take_while(|d| *d <= to)
            .take(MAX_WINDOW_DAYS as usize)
        {
            let mut start = None;
            loop {
                let page = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .key_condition_expression("#pk = :pk")
                    .expression_attribute_names("#pk", keys::PK)
                    .expression_attribute_values(":pk", s(tally_pk(by, day)))
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .map_err(backend)?;
                for item in page.items() {
                    let Some(key) = get_s(item, keys::SK).and_then(|k| k.strip_prefix("K#")) else {
                        continue;
                    };
                    tallies.push(DayTally {
                        day,
                        key: key.to_owned(),
                        label: get_s(item, "label").unwrap_or(key).to_owned(),
                        cost_usd: number(item, "cost_usd"),
                        cpu_hours: number(item, "cpu_hours"),
                        runs: number(item, "runs").max(0.0) as u64,
                        failed: number(item, "failed").max(0.0) as u64,
                    });
                }
                match page.last_evaluated_key {
                    Some(key) if !key.is_empty() => start = Some(key),
                    _ => break,
                }
            }
        }
        Ok(tallies)
    }
}
