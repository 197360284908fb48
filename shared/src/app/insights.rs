//! Leaderboards: the most expensive definitions, owners or groups of a
//! window of days ending today (UTC, by the app's clock), read from the
//! daily tallies the run store keeps as runs end.

use crate::domain::insights::{Dimension, Leaderboard, window};
use crate::error::AppError;

use super::App;

impl App {
    /// The `limit` most expensive keys of `by` over the `days` ending
    /// today, and each day's totals.
    pub async fn leaderboard(
        &self,
        by: Dimension,
        days: u32,
        limit: usize,
    ) -> Result<Leaderboard, AppError> {
        let (from, to) = window(self.now().date_naive(), days);
        let rows = self.runs.tallies(by, from, to).await?;
        Ok(Leaderboard::of(by, (from, to), &rows, limit))
    }
}
