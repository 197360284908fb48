//! List queries as closed types: every filter and sort key a store may be asked
//! for is named here, so no user text ever becomes a column name or expression.

use chrono::{DateTime, Utc};

use crate::domain::EnvVar;
use crate::domain::error::ValidationError;
use crate::domain::run::RunStatus;

/// Default page size, as Flotilla.
pub const DEFAULT_LIMIT: u64 = 1024;
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
}

impl RunQuery {
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

    /// Sorts runs as the query asks: the sort field with missing values last,
    /// then queue time and run id in the same direction.
    pub fn sort(&self, runs: &mut [crate::domain::run::Run]) {
        let o = self.order;
        let dir = |ordering| o.apply(ordering);
        runs.sort_by(|a, b| {
            let (x, y) = (&a.spec, &b.spec);
            let primary = match self.sort_by {
                RunSortField::RunId => dir(x.run_id.cmp(&y.run_id)),
                RunSortField::ClusterName => dir(x.cluster.cmp(&y.cluster)),
                RunSortField::Status => dir(a.status.as_str().cmp(b.status.as_str())),
                RunSortField::QueuedAt => dir(a.queued_at.cmp(&b.queued_at)),
                RunSortField::StartedAt => o.nulls_last(a.started_at, b.started_at),
                RunSortField::FinishedAt => o.nulls_last(a.finished_at, b.finished_at),
                RunSortField::GroupName => dir(x.group_name.cmp(&y.group_name)),
                RunSortField::Alias => dir(x.alias.cmp(&y.alias)),
            };
            primary
                .then_with(|| dir(a.queued_at.cmp(&b.queued_at)))
                .then_with(|| dir(a.spec.run_id.cmp(&b.spec.run_id)))
        });
    }
}

impl DefinitionQuery {
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
    Page {
        items: rows.into_iter().skip(offset).take(limit).collect(),
        total,
    }
}
