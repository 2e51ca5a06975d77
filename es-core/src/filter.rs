//! [`EventFilter`]: which events a read of the global log returns, and [`Partition`], the
//! slices of the log by stream that partitioned projections read.

use std::sync::Arc;

use crate::aggregate::AggregateType;
use crate::event::DomainEvent;
use crate::stream::StreamId;

/// Which events a read of the global log returns: by stream category, by event type, by
/// partition, and whether archived streams count.
///
/// Both lists are "any of"; an absent list selects everything. Events of archived streams
/// are left out unless [`EventFilter::including_archived`].
///
/// ```
/// use es_core::{EventFilter, StreamId};
///
/// let filter = EventFilter::all().with_categories(["order"]).with_event_types(["OrderShipped"]);
/// let order = StreamId::new("order", "1")?;
/// assert!(filter.matches(&order, "OrderShipped"));
/// assert!(!filter.matches(&order, "OrderNew"));
/// assert!(EventFilter::all().matches(&order, "OrderNew"));
/// # Ok::<(), es_core::StreamIdError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    categories: Option<Arc<[String]>>,
    event_types: Option<Arc<[String]>>,
    partition: Option<Partition>,
    including_archived: bool,
}

/// One of `count` slices of the log, by stream: every stream falls in exactly one
/// partition, so a projection run once per partition keeps each stream's order while
/// handling different streams in parallel.
///
/// Which partition a stream falls in is up to the store (each computes it where it filters
/// the log); it is stable for a given store.
///
/// ```
/// use es_core::Partition;
///
/// let all: Vec<_> = Partition::all(4).collect();
/// assert_eq!(all.len(), 4);
/// assert_eq!(all[2].to_string(), "3/4");
/// assert!(Partition::new(4, 4).is_none());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Partition {
    index: u32,
    count: u32,
}

impl Partition {
    /// Partition `index` (from 0) of `count`; `None` unless `index < count`.
    pub fn new(index: u32, count: u32) -> Option<Self> {
        (index < count).then_some(Self { index, count })
    }

    /// All `count` partitions.
    pub fn all(count: u32) -> impl Iterator<Item = Self> {
        (0..count).map(move |index| Self { index, count })
    }

    /// Its index, from 0.
    pub fn index(self) -> u32 {
        self.index
    }

    /// How many partitions there are.
    pub fn count(self) -> u32 {
        self.count
    }

    /// The partition of `stream` among `count`, as stores without a hash of their own (the
    /// in-memory store) compute it: FNV-1a of the stream id, modulo `count`.
    pub fn of(stream: &StreamId, count: u32) -> u32 {
        let hash = stream
            .as_str()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
                (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
            });
        u32::try_from(hash % u64::from(count.max(1))).unwrap_or(0)
    }
}

impl std::fmt::Display for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index + 1, self.count)
    }
}

impl EventFilter {
    /// Selects every event.
    pub fn all() -> Self {
        Self::default()
    }

    /// Selects the event types `E` decodes; every event if `E` reads any type (such as
    /// [`RawEvent`](crate::RawEvent)).
    pub fn for_event<E: DomainEvent>() -> Self {
        if E::EVENT_TYPES.is_empty() {
            Self::all()
        } else {
            Self::all().with_event_types(E::EVENT_TYPES.iter().copied())
        }
    }

    /// Selects the events of aggregate `A`: its category and its event types.
    pub fn for_aggregate<A: AggregateType>() -> Self {
        let filter = Self::all().with_categories([A::NAME]);
        if A::Event::EVENT_TYPES.is_empty() {
            filter
        } else {
            filter.with_event_types(A::Event::EVENT_TYPES.iter().copied())
        }
    }

    /// Keeps only events of streams in these categories.
    #[must_use]
    pub fn with_categories<I, S>(mut self, categories: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.categories = Some(categories.into_iter().map(Into::into).collect());
        self
    }

    /// Keeps only events of these types.
    #[must_use]
    pub fn with_event_types<I, S>(mut self, event_types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.event_types = Some(event_types.into_iter().map(Into::into).collect());
        self
    }

    /// Also selects the events of archived streams, which log reads leave out by default.
    #[must_use]
    pub fn including_archived(mut self) -> Self {
        self.including_archived = true;
        self
    }

    /// Whether the events of archived streams are selected.
    pub fn includes_archived(&self) -> bool {
        self.including_archived
    }

    /// Keeps only the events of streams in `partition`.
    #[must_use]
    pub fn with_partition(mut self, partition: Partition) -> Self {
        self.partition = Some(partition);
        self
    }

    /// The selected partition, if restricted.
    pub fn partition(&self) -> Option<Partition> {
        self.partition
    }

    /// The selected categories, if restricted.
    pub fn categories(&self) -> Option<&[String]> {
        self.categories.as_deref()
    }

    /// The selected event types, if restricted.
    pub fn event_types(&self) -> Option<&[String]> {
        self.event_types.as_deref()
    }

    /// Whether an event of `event_type` in `stream` is selected, partitions computed with
    /// [`Partition::of`].
    pub fn matches(&self, stream: &StreamId, event_type: &str) -> bool {
        let category = stream.category();
        self.categories
            .as_deref()
            .is_none_or(|c| c.iter().any(|c| c == category))
            && self
                .event_types
                .as_deref()
                .is_none_or(|t| t.iter().any(|t| t == event_type))
            && self
                .partition
                .is_none_or(|p| Partition::of(stream, p.count) == p.index)
    }
}
