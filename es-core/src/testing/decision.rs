//! The given/when/then harness for decisions.
//!
//! The given events are recorded in memory as a store would hold them (encoded, with
//! their tags, in a stream, at a position), then folded into the decision's states by
//! the same routing a [`Decider`](crate::Decider) uses: each state gets the events its
//! query selects, decoded as its own event type.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::fmt::{self, Debug};

use crate::decision::{Decision, DecisionError, DecisionStates, Fold as _};
use crate::event::{DomainEvent, EventEnvelope, Metadata, RawEvent};
use crate::query::Query;
use crate::stream::{Position, StreamId, Version};
use crate::tag::Tag;

use super::aggregate::check_round_trip;
use super::diff::debug_diff;

/// Starts a decision test from the decision type: `Subscribe::test()`.
///
/// Implemented for every [`Decision`]; import it (`use es_core::testing::DecisionTestExt`):
/// it is not in the prelude, where its `test()` beside the aggregates' would blur the
/// message for an aggregate that lacks its `Aggregate` impl.
///
/// ```
/// use es_core::prelude::*;
/// use es_core::testing::DecisionTestExt as _;
/// use es_core::{Decision, DecisionState, Query, QueryItem, StreamId, Tag};
///
/// #[derive(Debug, Clone, PartialEq, DomainEvent)]
/// enum NameEvent {
///     NameClaimed { name: String },
/// }
///
/// /// Whether a name is taken.
/// struct NameTaken(Tag, bool);
///
/// impl DecisionState for NameTaken {
///     type Event = NameEvent;
///     fn query(&self) -> Query {
///         QueryItem::of::<NameEvent>().with_tag(self.0.clone()).into()
///     }
///     fn apply(&mut self, _: &NameEvent) {
///         self.1 = true;
///     }
/// }
///
/// #[derive(Debug, PartialEq, thiserror::Error)]
/// #[error("the name is taken")]
/// struct Taken;
///
/// struct Claim(Tag);
///
/// impl Decision for Claim {
///     type State = NameTaken;
///     type Event = NameEvent;
///     type Error = Taken;
///     fn state(&self) -> NameTaken {
///         NameTaken(self.0.clone(), false)
///     }
///     fn stream(&self) -> StreamId {
///         StreamId::new("names", "all").expect("a valid stream id")
///     }
///     fn decide(&self, taken: &NameTaken) -> Result<Vec<NameEvent>, Taken> {
///         if taken.1 { Err(Taken) } else { Ok(vec![NameEvent::NameClaimed { name: self.0.value().into() }]) }
///     }
/// }
///
/// let user = Tag::pair("user", "u-17")?;
/// Claim::test()
///     .given_tagged([user.clone()], [NameEvent::NameClaimed { name: "u-17".into() }])
///     .when(Claim(user.clone()))
///     .then_expect_error(Taken);
///
/// Claim::test()
///     .given_no_previous_events()
///     .when(Claim(user))
///     .then_expect_events([NameEvent::NameClaimed { name: "u-17".into() }]);
/// # Ok::<(), es_core::TagError>(())
/// ```
pub trait DecisionTestExt: Decision + Sized {
    /// A test of this decision.
    fn test() -> DecisionFixture<Self> {
        DecisionFixture::new()
    }
}

impl<D: Decision> DecisionTestExt for D {}

/// The events given so far, as a store would hold them.
#[derive(Debug, Clone, Default)]
struct History {
    events: Vec<EventEnvelope<RawEvent>>,
    versions: BTreeMap<StreamId, Version>,
}

impl History {
    /// The stream given events go to unless another is named.
    fn default_stream() -> StreamId {
        StreamId::new("given", "events").unwrap_or_else(|error| unreachable!("{error}"))
    }

    #[track_caller]
    fn record<E: DomainEvent + Debug + PartialEq>(
        &mut self,
        stream: &StreamId,
        tags: &[Tag],
        events: impl IntoIterator<Item = E>,
    ) {
        for event in events {
            let index = self.events.len() + 1;
            check_round_trip(&event);
            let raw = RawEvent::from_event(&event).unwrap_or_else(|error| {
                panic!("given event {index} cannot be encoded: {error}\nevent: {event:#?}")
            });
            let mut metadata = Metadata::new().with_tags(tags.iter().cloned());
            metadata
                .tags
                .extend(declared_tags(&event, "given event", index));
            let version = self
                .versions
                .entry(stream.clone())
                .and_modify(|v| *v = Version::new(v.get() + 1))
                .or_insert(Version::new(1));
            self.events.push(EventEnvelope {
                event_id: uuid::Uuid::now_v7(),
                stream_id: stream.clone(),
                version: *version,
                position: Position::from_parts(u64::try_from(index).unwrap_or(u64::MAX), 0),
                recorded_at: chrono::Utc::now(),
                metadata,
                event: raw,
            });
        }
    }
}

/// The tags `event` declares, or a panic naming it (`what` and `index`, from 1).
#[track_caller]
fn declared_tags<E: DomainEvent + Debug>(event: &E, what: &str, index: usize) -> Vec<Tag> {
    let tags = event.tags().unwrap_or_else(|error| {
        panic!(
            "{what} {index} (`{}`) declares an invalid tag, so a store would refuse it: {error}\nevent: {event:#?}",
            event.event_type()
        )
    });
    if tags.len() > crate::limits::MAX_TAGS {
        panic!(
            "{what} {index} (`{}`) declares {} tags, more than the {} a store accepts\nevent: {event:#?}",
            event.event_type(),
            tags.len(),
            crate::limits::MAX_TAGS
        );
    }
    tags
}

/// A decision test before its history is given.
pub struct DecisionFixture<D> {
    decision: std::marker::PhantomData<fn() -> D>,
}

impl<D> Debug for DecisionFixture<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecisionFixture")
            .field("decision", &std::any::type_name::<D>())
            .finish()
    }
}

impl<D: Decision> Default for DecisionFixture<D> {
    fn default() -> Self {
        Self::new()
    }
}

impl<D: Decision> DecisionFixture<D> {
    /// A test of decision `D`.
    pub fn new() -> Self {
        Self {
            decision: std::marker::PhantomData,
        }
    }

    /// These events happened, in this order, each with the tags it declares
    /// ([`DomainEvent::tags`]), in one stream (`given-events`). States select events by
    /// type and tag, so the stream matters only to messages.
    ///
    /// # Panics
    ///
    /// If an event does not survive its own encoding or declares an invalid tag.
    #[track_caller]
    pub fn given<E>(self, events: impl IntoIterator<Item = E>) -> DecisionGiven<D>
    where
        E: DomainEvent + Debug + PartialEq,
    {
        DecisionGiven::new().given(events)
    }

    /// As [`given`](DecisionFixture::given), each event also carrying `tags`.
    ///
    /// # Panics
    ///
    /// As [`given`](DecisionFixture::given).
    #[track_caller]
    pub fn given_tagged<E>(
        self,
        tags: impl IntoIterator<Item = Tag>,
        events: impl IntoIterator<Item = E>,
    ) -> DecisionGiven<D>
    where
        E: DomainEvent + Debug + PartialEq,
    {
        DecisionGiven::new().given_tagged(tags, events)
    }

    /// As [`given`](DecisionFixture::given), in `stream`.
    ///
    /// # Panics
    ///
    /// As [`given`](DecisionFixture::given).
    #[track_caller]
    pub fn given_in<E>(
        self,
        stream: &StreamId,
        events: impl IntoIterator<Item = E>,
    ) -> DecisionGiven<D>
    where
        E: DomainEvent + Debug + PartialEq,
    {
        DecisionGiven::new().given_in(stream, events)
    }

    /// Nothing happened yet.
    pub fn given_no_previous_events(self) -> DecisionGiven<D> {
        DecisionGiven::new()
    }
}

/// A decision test with its history, waiting for the decision.
pub struct DecisionGiven<D> {
    history: History,
    decision: std::marker::PhantomData<fn() -> D>,
}

impl<D> Debug for DecisionGiven<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecisionGiven")
            .field("decision", &std::any::type_name::<D>())
            .field("history", &self.history.events)
            .finish()
    }
}

impl<D: Decision> DecisionGiven<D> {
    fn new() -> Self {
        Self {
            history: History::default(),
            decision: std::marker::PhantomData,
        }
    }

    /// And these events happened after those given before (of any event type, so that
    /// states of several types can be given their events).
    ///
    /// # Panics
    ///
    /// As [`DecisionFixture::given`].
    #[track_caller]
    #[must_use]
    pub fn given<E>(mut self, events: impl IntoIterator<Item = E>) -> Self
    where
        E: DomainEvent + Debug + PartialEq,
    {
        self.history.record(&History::default_stream(), &[], events);
        self
    }

    /// And these events happened, each also carrying `tags`.
    ///
    /// # Panics
    ///
    /// As [`DecisionFixture::given`].
    #[track_caller]
    #[must_use]
    pub fn given_tagged<E>(
        mut self,
        tags: impl IntoIterator<Item = Tag>,
        events: impl IntoIterator<Item = E>,
    ) -> Self
    where
        E: DomainEvent + Debug + PartialEq,
    {
        let tags: Vec<Tag> = tags.into_iter().collect();
        self.history
            .record(&History::default_stream(), &tags, events);
        self
    }

    /// And these events happened in `stream`.
    ///
    /// # Panics
    ///
    /// As [`DecisionFixture::given`].
    #[track_caller]
    #[must_use]
    pub fn given_in<E>(mut self, stream: &StreamId, events: impl IntoIterator<Item = E>) -> Self
    where
        E: DomainEvent + Debug + PartialEq,
    {
        self.history.record(stream, &[], events);
        self
    }

    /// Folds the history into `decision`'s states, as a decider would on reading it, and
    /// lets it decide.
    ///
    /// # Panics
    ///
    /// If a state's query selects a given event its event type cannot decode (the
    /// decider's [`DecisionError::Undecodable`]); and, when the decision is accepted, if an
    /// emitted event does not survive its own encoding or declares an invalid tag.
    #[track_caller]
    #[allow(
        clippy::needless_pass_by_value,
        reason = "taking the decision by value reads naturally: `.when(Subscribe::new(..))`"
    )]
    pub fn when(self, decision: D) -> DecisionThen<D>
    where
        D::Event: Debug + PartialEq,
    {
        let mut state = decision.state();
        let queries = state.queries();
        for envelope in &self.history.events {
            if let Err(failure) = state.fold(&queries, envelope) {
                let error = DecisionError::<Infallible>::undecodable(failure);
                panic!("the given events cannot be folded into the decision's states: {error}");
            }
        }
        let result = decision.decide(&state);
        // What the stored events will carry: the decision's own tags, as the decider
        // adds them to each event's metadata, and those each event declares.
        let own: BTreeSet<Tag> = decision.tags().into_iter().collect();
        let tags = match &result {
            Ok(events) => events
                .iter()
                .enumerate()
                .map(|(index, event)| {
                    check_round_trip(event);
                    let mut tags = own.clone();
                    tags.extend(declared_tags(event, "emitted event", index + 1));
                    assert!(
                        tags.len() <= crate::limits::MAX_TAGS,
                        "emitted event {} (`{}`) carries {} tags with the decision's own, more than the {} a store accepts\nevent: {event:#?}",
                        index + 1,
                        event.event_type(),
                        tags.len(),
                        crate::limits::MAX_TAGS
                    );
                    tags
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        DecisionThen {
            query: state.query(),
            state,
            result,
            tags,
        }
    }
}

/// What the decision decided, ready for expectations.
#[must_use = "a test without a `then_*` expectation checks nothing about the outcome"]
pub struct DecisionThen<D: Decision> {
    state: D::State,
    query: Query,
    result: Result<Vec<D::Event>, D::Error>,
    /// The tags each emitted event will carry: those it declares and the decision's.
    tags: Vec<BTreeSet<Tag>>,
}

impl<D: Decision> Debug for DecisionThen<D>
where
    D::Event: Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecisionThen")
            .field("decision", &std::any::type_name::<D>())
            .field("query", &self.query)
            .field("result", &self.result)
            .field("tags", &self.tags)
            .finish_non_exhaustive()
    }
}

impl<D: Decision> DecisionThen<D>
where
    D::Event: Debug + PartialEq,
{
    /// Expects the decision to emit exactly these events, in this order.
    ///
    /// # Panics
    ///
    /// With a diff, if the events differ or the decision was rejected.
    #[track_caller]
    pub fn then_expect_events(self, expected: impl IntoIterator<Item = D::Event>) {
        let expected: Vec<D::Event> = expected.into_iter().collect();
        match self.result {
            Ok(actual) if actual == expected => {}
            Ok(actual) => panic!(
                "the decision emitted other events than expected\n{}",
                debug_diff(&expected, &actual)
            ),
            Err(error) => panic!(
                "expected the decision to emit events, but it was rejected: {error:?} ({error})\nexpected events: {expected:#?}"
            ),
        }
    }

    /// Expects the decision to emit exactly these events, in this order, each carrying
    /// exactly these tags (those it declares, [`DomainEvent::tags`], and the decision's
    /// own, [`Decision::tags`]: what a query will select it by once stored; tags a
    /// [`CommandContext`](crate::CommandContext) would add are not counted, as the harness
    /// has none).
    ///
    /// # Panics
    ///
    /// With a diff, if the events or their tags differ, or the decision was rejected.
    #[track_caller]
    pub fn then_expect_events_tagged<T>(self, expected: impl IntoIterator<Item = (D::Event, T)>)
    where
        T: IntoIterator<Item = Tag>,
    {
        let expected: Vec<(D::Event, BTreeSet<Tag>)> = expected
            .into_iter()
            .map(|(event, tags)| (event, tags.into_iter().collect()))
            .collect();
        match self.result {
            Ok(actual) => {
                let actual: Vec<(D::Event, BTreeSet<Tag>)> =
                    actual.into_iter().zip(self.tags).collect();
                if actual != expected {
                    panic!(
                        "the decision emitted other events or tags than expected\n{}",
                        debug_diff(&expected, &actual)
                    );
                }
            }
            Err(error) => panic!(
                "expected the decision to emit events, but it was rejected: {error:?} ({error})\nexpected events: {expected:#?}"
            ),
        }
    }

    /// Expects the decision to be accepted and emit nothing.
    ///
    /// # Panics
    ///
    /// If it emitted events or was rejected.
    #[track_caller]
    pub fn then_expect_no_events(self) {
        match self.result {
            Ok(actual) if actual.is_empty() => {}
            Ok(actual) => panic!("expected no events, but the decision emitted: {actual:#?}"),
            Err(error) => panic!(
                "expected the decision to be accepted with no events, but it was rejected: {error:?} ({error})"
            ),
        }
    }

    /// Expects the decision to be rejected with exactly this error.
    ///
    /// # Panics
    ///
    /// With a diff, if it was rejected with another error or accepted.
    #[track_caller]
    #[allow(
        clippy::needless_pass_by_value,
        reason = "taking the error by value reads naturally: `.then_expect_error(CourseError::Full)`"
    )]
    pub fn then_expect_error(self, expected: D::Error)
    where
        D::Error: PartialEq,
    {
        match self.result {
            Err(actual) if actual == expected => {}
            Err(actual) => panic!(
                "the decision was rejected with another error than expected\n{}",
                debug_diff(&expected, &actual)
            ),
            Ok(events) => panic!(
                "expected the decision to be rejected with {expected:?}, but it was accepted and emitted: {events:#?}"
            ),
        }
    }

    /// Expects the decision to be rejected with an error for which `predicate` holds.
    ///
    /// # Panics
    ///
    /// If the decision was accepted, or the predicate fails.
    #[track_caller]
    pub fn then_expect_error_matching(self, predicate: impl FnOnce(&D::Error) -> bool) {
        match self.result {
            Err(actual) if predicate(&actual) => {}
            Err(actual) => panic!(
                "the decision was rejected, but the error does not match the predicate: {actual:?} ({actual})"
            ),
            Ok(events) => panic!(
                "expected the decision to be rejected, but it was accepted and emitted: {events:#?}"
            ),
        }
    }

    /// Expects every event the decision emits to be selected by its own query, with the
    /// tags it declares and the decision's own ([`Decision::tags`]): then two executions of it that race each other conflict, and
    /// the second reads the first's events, rather than both appending (a subscription
    /// that forgets its course tag lets a full course take one student more). Returns the
    /// outcome for further expectations.
    ///
    /// A decision whose events another decision guards, not itself, need not pass this.
    ///
    /// # Panics
    ///
    /// Naming the first event its query does not select.
    #[track_caller]
    pub fn then_expect_selected_by_query(self) -> Self {
        if let Ok(events) = &self.result {
            for (index, (event, tags)) in events.iter().zip(&self.tags).enumerate() {
                if !self.query.matches(event.event_type(), tags) {
                    let shown: Vec<String> = tags.iter().map(Tag::redacted).collect();
                    panic!(
                        "emitted event {} (`{}`, tags [{}]) is not selected by the decision's query {}, so a decision racing this one would not see it\nevent: {event:#?}",
                        index + 1,
                        event.event_type(),
                        shown.join(", "),
                        self.query
                    );
                }
            }
        }
        self
    }

    /// Hands the states the decision was made on (the given events, folded) to `check`.
    ///
    /// # Panics
    ///
    /// Whatever `check` panics with.
    #[track_caller]
    pub fn then_expect_state(self, check: impl FnOnce(&D::State)) {
        check(&self.state);
    }

    /// The raw outcome, for checks the methods above do not cover.
    pub fn into_result(self) -> Result<Vec<D::Event>, D::Error> {
        self.result
    }
}
