//! List queries as closed types: every filter and sort key a store may be asked
//! for is named here, so no user text ever becomes a column name or expression.

use chrono::{DateTime, Utc};

use crate::domain::EnvVar;
use crate::domain::error::ValidationError;
use crate::domain::run::RunStatus;

/// Formats a time with fixed precision so that text order is time order; the
/// stores use it for every sortable time column or key, and cursors carry it.
pub fn time_key(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Length of every [`time_key`] (years 1000 to 9999).
pub const TIME_KEY_LEN: usize = 27;

/// Default page size, as Flotilla.
pub const DEFAULT_LIMIT: u64 = 1024;
/// Most matching rows a list counts one by one: beyond it, where no
/// maintained count answers, `total` is this bound and says it is one.
pub const COUNT_BOUND: u64 = 10_000;
/// Largest page a client may ask for.
pub const MAX_LIMIT: u64 = 10_000;

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    /// Ascending.
    #[default]
    Asc,
    /// Descending.
    Desc,
}

impl SortOrder {
    /// Parses `asc` or `desc`.
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        match value {
            "asc" => Ok(Self::Asc),
            "desc" => Ok(Self::Desc),
            other => Err(ValidationError::new(format!(
                "order \"{other}\" is not valid: use \"asc\" or \"desc\""
            ))),
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Asc => "asc",
            Self::Desc => "desc",
        }
    }

    /// Orients an ascending comparison.
    pub fn apply(self, ordering: std::cmp::Ordering) -> std::cmp::Ordering {
        match self {
            Self::Asc => ordering,
            Self::Desc => ordering.reverse(),
        }
    }

    /// Compares optional values in this order, with missing values last either way.
    pub fn nulls_last<T: Ord>(self, a: Option<T>, b: Option<T>) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        match (a, b) {
            (Some(x), Some(y)) => self.apply(x.cmp(&y)),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        }
    }
}

macro_rules! sort_fields {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            /// Every field, in the order the error message lists them.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }

            /// Parses a wire name, or says which names exist.
            pub fn parse(value: &str) -> Result<Self, ValidationError> {
                Self::ALL.iter().copied().find(|f| f.as_str() == value).ok_or_else(|| {
                    let names: Vec<_> = Self::ALL.iter().map(|f| f.as_str()).collect();
                    ValidationError::new(format!(
                        "sort_by \"{value}\" is not a field you can sort by: use one of {}",
                        names.join(", ")
                    ))
                })
            }
        }
    };
}

sort_fields!(
    /// Fields runs can be sorted by.
    RunSortField {
        /// Run id.
        RunId => "run_id",
        /// Cluster.
        ClusterName => "cluster_name",
        /// Status.
        Status => "status",
        /// Queue time.
        QueuedAt => "queued_at",
        /// Start time.
        StartedAt => "started_at",
        /// End time.
        FinishedAt => "finished_at",
        /// Group.
        GroupName => "group_name",
        /// Alias.
        Alias => "alias",
    }
);

sort_fields!(
    /// Fields definitions can be sorted by.
    DefinitionSortField {
        /// Alias.
        Alias => "alias",
        /// Image.
        Image => "image",
        /// Group.
        GroupName => "group_name",
        /// Memory.
        Memory => "memory",
    }
);

/// A text filter: one value matches as a substring, several match exactly (IN).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TextFilter(pub Vec<String>);

impl TextFilter {
    /// Whether the filter constrains anything.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `value` passes the filter (the in-memory twin of the SQL).
    pub fn matches(&self, value: &str) -> bool {
        match self.0.as_slice() {
            [] => true,
            [one] => value.contains(one.as_str()),
            many => many.iter().any(|m| m == value),
        }
    }
}

/// A time window: `since` inclusive, `until` exclusive. A row without the
/// time (a run that has not started, say) is outside any window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimeRange {
    /// Earliest time, inclusive.
    pub since: Option<DateTime<Utc>>,
    /// Latest time, exclusive.
    pub until: Option<DateTime<Utc>>,
}

impl TimeRange {
    /// Whether the window constrains anything.
    pub fn is_empty(&self) -> bool {
        self.since.is_none() && self.until.is_none()
    }

    /// Whether `at` falls in the window.
    pub fn matches(&self, at: Option<DateTime<Utc>>) -> bool {
        if self.is_empty() {
            return true;
        }
        let Some(at) = at else { return false };
        self.since.is_none_or(|s| at >= s) && self.until.is_none_or(|u| at < u)
    }
}

/// Env filters: every `name=value` pair must be in the env (AND).
pub fn env_matches(filters: &[EnvVar], env: &[EnvVar]) -> bool {
    filters.iter().all(|f| env.contains(f))
}

/// Paging shared by every list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    /// Page size.
    pub limit: u64,
    /// Rows to skip.
    pub offset: u64,
}

impl Default for Paging {
    fn default() -> Self {
        Self {
            limit: DEFAULT_LIMIT,
            offset: 0,
        }
    }
}

/// What to list of runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunQuery {
    /// Statuses (any of).
    pub statuses: Vec<RunStatus>,
    /// Definition ids (exact, any of).
    pub definition_ids: Vec<String>,
    /// Alias.
    pub alias: TextFilter,
    /// Group.
    pub group_name: TextFilter,
    /// Cluster (exact, any of).
    pub clusters: Vec<String>,
    /// Owner (exact, any of).
    pub owners: Vec<String>,
    /// Image.
    pub image: TextFilter,
    /// Command.
    pub command: TextFilter,
    /// Exit reason.
    pub exit_reason: TextFilter,
    /// Variables the run's env must hold, all of them.
    pub env: Vec<EnvVar>,
    /// Queue time window.
    pub queued_at: TimeRange,
    /// Start time window.
    pub started_at: TimeRange,
    /// End time window.
    pub finished_at: TimeRange,
    /// Sort key.
    pub sort_by: RunSortField,
    /// Direction.
    pub order: SortOrder,
    /// Page.
    pub paging: Paging,
    /// Start just after this run's place in the order (cursor paging).
    pub after: Option<RunCursor>,
}

/// A run's place in a list's order: its value of the sort field (times as
/// [`time_key`] text; none when the run has none), then its queue time and
/// run id, which make every place unique.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunCursor {
    /// The sort field's value.
    pub primary: Option<String>,
    /// Queue time, as [`time_key`].
    pub queued_at: String,
    /// Run id.
    pub run_id: String,
}

impl Default for RunQuery {
    fn default() -> Self {
        Self {
            statuses: vec![],
            definition_ids: vec![],
            alias: TextFilter::default(),
            group_name: TextFilter::default(),
            clusters: vec![],
            owners: vec![],
            image: TextFilter::default(),
            command: TextFilter::default(),
            exit_reason: TextFilter::default(),
            env: vec![],
            queued_at: TimeRange::default(),
            started_at: TimeRange::default(),
            finished_at: TimeRange::default(),
            sort_by: RunSortField::QueuedAt,
            order: SortOrder::Desc,
            paging: Paging::default(),
            after: None,
        }
    }
}

/// What to list of definitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionQuery {
    /// Alias.
    pub alias: TextFilter,
    /// Group.
    pub group_name: TextFilter,
    /// Image.
    pub image: TextFilter,
    /// Variables the definition's env must hold, all of them.
    pub env: Vec<EnvVar>,
    /// Sort key.
    pub sort_by: DefinitionSortField,
    /// Direction.
    pub order: SortOrder,
    /// Page.
    pub paging: Paging,
}

impl Default for DefinitionQuery {
    fn default() -> Self {
        Self {
            alias: TextFilter::default(),
            group_name: TextFilter::default(),
            image: TextFilter::default(),
            env: vec![],
            sort_by: DefinitionSortField::GroupName,
            order: SortOrder::Asc,
            paging: Paging::default(),
        }
    }
}

/// One page of a list and the number of rows matching in all.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The rows.
    pub items: Vec<T>,
    /// Rows matching the filters, ignoring paging.
    pub total: u64,
    /// `total` is a lower bound: at least that many rows match (on SQLite it
    /// is then [`COUNT_BOUND`]; on DynamoDB, the matches a bounded read found).
    pub total_is_lower_bound: bool,
    /// Rows follow this page.
    pub more: bool,
    /// Where the next page starts when that is not just after this page's
    /// last row: a page the store's read budget cut short ends at the last
    /// run it read, which may not be one it returns.
    pub resume_after: Option<RunCursor>,
}

/// The kinds of filter a run list has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunFilter {
    /// `statuses`.
    Status,
    /// `definition_ids`.
    Definition,
    /// `alias`.
    Alias,
    /// `clusters`.
    Cluster,
    /// `env`.
    Env,
}

impl RunQuery {
    /// Whether every filter the query sets is of one of the `kinds` named
    /// (any other filter set makes it false).
    pub fn filters_only_by(&self, kinds: &[RunFilter]) -> bool {
        let allows = |kind| kinds.contains(&kind);
        (self.statuses.is_empty() || allows(RunFilter::Status))
            && (self.definition_ids.is_empty() || allows(RunFilter::Definition))
            && (self.alias.is_empty() || allows(RunFilter::Alias))
            && (self.clusters.is_empty() || allows(RunFilter::Cluster))
            && (self.env.is_empty() || allows(RunFilter::Env))
            && self.owners.is_empty()
            && self.group_name.is_empty()
            && self.image.is_empty()
            && self.command.is_empty()
            && self.exit_reason.is_empty()
            && self.queued_at.is_empty()
            && self.started_at.is_empty()
            && self.finished_at.is_empty()
    }

    /// Whether `run` passes every filter (the in-memory twin of a store's query).
    pub fn matches(&self, run: &crate::domain::run::Run) -> bool {
        let spec = &run.spec;
        (self.statuses.is_empty() || self.statuses.contains(&run.status))
            && (self.definition_ids.is_empty() || self.definition_ids.contains(&spec.definition_id))
            && (self.clusters.is_empty() || self.clusters.contains(&spec.cluster))
            && (self.owners.is_empty() || self.owners.contains(&spec.owner))
            && self.alias.matches(&spec.alias)
            && self.group_name.matches(&spec.group_name)
            && self.image.matches(&spec.image)
            && self.command.matches(spec.command.as_deref().unwrap_or(""))
            && self
                .exit_reason
                .matches(run.exit_reason.as_deref().unwrap_or(""))
            && env_matches(&self.env, &spec.env)
            && self.queued_at.matches(Some(run.queued_at))
            && self.started_at.matches(run.started_at)
            && self.finished_at.matches(run.finished_at)
    }

    /// `run`'s place in this query's order.
    pub fn key_of(&self, run: &crate::domain::run::Run) -> RunCursor {
        let spec = &run.spec;
        let primary = match self.sort_by {
            RunSortField::RunId => Some(spec.run_id.clone()),
            RunSortField::ClusterName => Some(spec.cluster.clone()),
            RunSortField::Status => Some(run.status.as_str().to_owned()),
            RunSortField::QueuedAt => Some(time_key(run.queued_at)),
            RunSortField::StartedAt => run.started_at.map(time_key),
            RunSortField::FinishedAt => run.finished_at.map(time_key),
            RunSortField::GroupName => Some(spec.group_name.clone()),
            RunSortField::Alias => Some(spec.alias.clone()),
        };
        RunCursor {
            primary,
            queued_at: time_key(run.queued_at),
            run_id: spec.run_id.clone(),
        }
    }

    /// Compares two places in this query's order: the sort field with
    /// missing values last, then queue time and run id in the same direction.
    pub fn cmp_keys(&self, a: &RunCursor, b: &RunCursor) -> std::cmp::Ordering {
        let o = self.order;
        o.nulls_last(a.primary.as_deref(), b.primary.as_deref())
            .then_with(|| o.apply(a.queued_at.cmp(&b.queued_at)))
            .then_with(|| o.apply(a.run_id.cmp(&b.run_id)))
    }

    /// Sorts runs as the query asks (see [`RunQuery::cmp_keys`]).
    pub fn sort(&self, runs: &mut [crate::domain::run::Run]) {
        runs.sort_by_cached_key(|run| SortedBy(self, self.key_of(run)));
    }

    /// Whether `run` comes after the query's cursor (every run does without one).
    pub fn is_after_cursor(&self, run: &crate::domain::run::Run) -> bool {
        self.after.as_ref().is_none_or(|after| {
            self.cmp_keys(&self.key_of(run), after) == std::cmp::Ordering::Greater
        })
    }

    /// What identifies this query apart from where its page starts: a cursor
    /// made for one query is refused by another.
    pub fn fingerprint(&self) -> String {
        let mut bare = self.clone();
        bare.paging = Paging::default();
        bare.after = None;
        digest_of(&bare)
    }

    /// One page of runs that match and are sorted: from the cursor, then the
    /// offset, `limit` of them; `total` counts every match.
    pub fn page(&self, sorted: Vec<crate::domain::run::Run>) -> Page<crate::domain::run::Run> {
        let total = sorted.len() as u64;
        let offset = usize::try_from(self.paging.offset).unwrap_or(usize::MAX);
        let limit = usize::try_from(self.paging.limit).unwrap_or(usize::MAX);
        let mut rest = sorted
            .into_iter()
            .filter(|r| self.is_after_cursor(r))
            .skip(offset);
        let items: Vec<_> = rest.by_ref().take(limit).collect();
        let more = rest.next().is_some();
        Page {
            items,
            total,
            total_is_lower_bound: false,
            more,
            resume_after: None,
        }
    }
}

/// A short digest of a query's every field, for cursors to name it by.
pub fn digest_of(query: &impl std::fmt::Debug) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{query:?}").as_bytes());
    hex::encode(&digest[..8])
}

/// A run's place, ordered as its query orders.
struct SortedBy<'q>(&'q RunQuery, RunCursor);

impl PartialEq for SortedBy<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for SortedBy<'_> {}

impl PartialOrd for SortedBy<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SortedBy<'_> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp_keys(&self.1, &other.1)
    }
}

impl DefinitionQuery {
    /// What identifies this query apart from its page (see
    /// [`RunQuery::fingerprint`]).
    pub fn fingerprint(&self) -> String {
        let mut bare = self.clone();
        bare.paging = Paging::default();
        digest_of(&bare)
    }

    /// Whether `definition` passes every filter.
    pub fn matches(&self, definition: &crate::domain::definition::Definition) -> bool {
        self.alias.matches(&definition.alias)
            && self.group_name.matches(&definition.group_name)
            && self.image.matches(&definition.image)
            && env_matches(&self.env, &definition.env)
    }

    /// Sorts definitions as the query asks: the sort field with missing values
    /// last, then alias in the same direction.
    pub fn sort(&self, definitions: &mut [crate::domain::definition::Definition]) {
        let o = self.order;
        let dir = |ordering| o.apply(ordering);
        definitions.sort_by(|a, b| {
            let primary = match self.sort_by {
                DefinitionSortField::Alias => dir(a.alias.cmp(&b.alias)),
                DefinitionSortField::Image => dir(a.image.cmp(&b.image)),
                DefinitionSortField::GroupName => dir(a.group_name.cmp(&b.group_name)),
                DefinitionSortField::Memory => o.nulls_last(a.resources.memory, b.resources.memory),
            };
            primary.then_with(|| dir(a.alias.cmp(&b.alias)))
        });
    }
}

/// Cuts one page out of rows already filtered and sorted.
pub fn page_of<T>(rows: Vec<T>, paging: Paging) -> Page<T> {
    let total = rows.len() as u64;
    let offset = usize::try_from(paging.offset).unwrap_or(usize::MAX);
    let limit = usize::try_from(paging.limit).unwrap_or(usize::MAX);
    let more = (offset as u64).saturating_add(limit as u64) < total;
    Page {
        items: rows.into_iter().skip(offset).take(limit).collect(),
        total,
        total_is_lower_bound: false,
        more,
        resume_after: None,
    }
}
