//! Dynamic Consistency Boundaries: tags on events, reads by [`Query`] and conditional
//! appends ([`EventStore::append_if`](es_core::EventStore::append_if)), and the examples of
//! the specification (dcb.events) written against the raw store API.
//!
//! The cases use [`DcbEvent`], whose tags are declared by hand
//! ([`DomainEvent::tags`]), so that they check what the store does with declared and
//! metadata tags whatever the derive generates.

use std::collections::BTreeSet;
use std::time::Duration;

use es_core::{
    AppendCondition, AppendError, Committed, DecodeError, DomainEvent, EncodeError, EventEnvelope,
    ExpectedVersion, NewEvent, PayloadError, Position, Query, StreamId, Tag, TagError,
};
use futures_util::TryStreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use es_core::Store;

mod condition;
mod examples;
mod query;
mod race;
mod tags;

pub use condition::{
    append_if_empty_batch_checks_the_condition, append_if_fails_naming_the_first_matching_event,
    append_if_failure_shows_no_tag_value, append_if_ignores_events_that_do_not_match,
    append_if_repeat_is_a_duplicate, append_if_reports_archive_then_version_then_condition,
    append_if_still_checks_the_expected_version,
    append_if_succeeds_when_nothing_matching_came_after,
    append_if_without_a_position_counts_every_matching_event,
};
pub use examples::{
    dcb_course_subscriptions, dcb_invoice_numbers_without_gaps, dcb_opt_in_token,
    dcb_unique_username,
};
pub use query::{
    query_items_select_by_any_type_and_all_tags, query_reads_after_a_position_in_log_order,
    query_reads_archived_streams,
};
pub use race::dcb_writers_race_for_the_last_seats;
pub use tags::{
    tags_beyond_the_limit_are_refused_and_nothing_stored,
    tags_invalid_are_refused_and_nothing_stored, tags_merge_and_read_back_alike_on_every_read_path,
};

/// How long a case waits for the store to show its own writes before it calls them lost.
/// Generous: this bounds a hang, it does not measure speed.
const PATIENCE: Duration = Duration::from_secs(60);

/// The events of the specification's examples, tagged with the entities each is about.
///
/// [`DomainEvent`] is implemented by hand, `tags` included (the tags named on each
/// variant), so that the cases do not depend on the derive. Each variant is its own event
/// type, named as the variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DcbEvent {
    /// A course was set up. Tags: `course:<course>`.
    CourseDefined {
        /// The course id.
        course: String,
        /// How many students it takes.
        capacity: u32,
    },
    /// A course takes a different number of students. Tags: `course:<course>`.
    CourseCapacityChanged {
        /// The course id.
        course: String,
        /// How many students it takes now.
        capacity: u32,
    },
    /// A student joined a course. Tags: `student:<student>`, `course:<course>`.
    StudentSubscribed {
        /// The student id.
        student: String,
        /// The course id.
        course: String,
    },
    /// An account claimed a username. Tags: `account:<account>`, `username:<username>`.
    AccountRegistered {
        /// The account id.
        account: String,
        /// The name it claimed.
        username: String,
    },
    /// An account was closed, releasing its username. Tags: as for `AccountRegistered`.
    AccountClosed {
        /// The account id.
        account: String,
        /// The name it releases.
        username: String,
    },
    /// An invoice was issued. Tags: `invoice:<number>`.
    InvoiceCreated {
        /// Its number: 1, 2, 3, ... without gaps.
        number: u64,
    },
    /// Someone signed up and was sent a one-time token. Tags: `token:<token>` (the address
    /// stays in the payload: tags are stored in the clear).
    SignUpInitiated {
        /// The token sent.
        token: String,
        /// Where it was sent.
        email: String,
    },
    /// A sign-up was confirmed with its token. Tags: `token:<token>`.
    SignUpConfirmed {
        /// The token used.
        token: String,
    },
    /// Carries the tags it lists (none if empty); a label that is not a valid tag makes
    /// [`DomainEvent::tags`] fail.
    Labelled {
        /// The tags, as text.
        labels: Vec<String>,
    },
}

impl DomainEvent for DcbEvent {
    const EVENT_TYPES: &'static [&'static str] = &[
        "CourseDefined",
        "CourseCapacityChanged",
        "StudentSubscribed",
        "AccountRegistered",
        "AccountClosed",
        "InvoiceCreated",
        "SignUpInitiated",
        "SignUpConfirmed",
        "Labelled",
    ];

    fn event_type(&self) -> &str {
        match self {
            Self::CourseDefined { .. } => "CourseDefined",
            Self::CourseCapacityChanged { .. } => "CourseCapacityChanged",
            Self::StudentSubscribed { .. } => "StudentSubscribed",
            Self::AccountRegistered { .. } => "AccountRegistered",
            Self::AccountClosed { .. } => "AccountClosed",
            Self::InvoiceCreated { .. } => "InvoiceCreated",
            Self::SignUpInitiated { .. } => "SignUpInitiated",
            Self::SignUpConfirmed { .. } => "SignUpConfirmed",
            Self::Labelled { .. } => "Labelled",
        }
    }

    fn schema_version(&self) -> u32 {
        1
    }

    fn encode(&self) -> Result<Value, EncodeError> {
        // serde writes `{"<variant>": {fields}}`; the store keeps the type beside the
        // payload, so only the fields are the payload.
        let value =
            serde_json::to_value(self).map_err(|e| EncodeError::new(self.event_type(), e))?;
        match value {
            Value::Object(mut outer) => Ok(outer.remove(self.event_type()).unwrap_or_default()),
            other => Ok(other),
        }
    }

    fn decode(event_type: &str, schema_version: u32, payload: Value) -> Result<Self, DecodeError> {
        if !Self::EVENT_TYPES.contains(&event_type) {
            return Err(DecodeError::UnknownEventType {
                event_type: event_type.to_owned(),
            });
        }
        if schema_version != 1 {
            return Err(DecodeError::UnsupportedVersion {
                event_type: event_type.to_owned(),
                version: schema_version,
                supported: 1,
            });
        }
        let tagged = Value::Object([(event_type.to_owned(), payload)].into_iter().collect());
        serde_json::from_value(tagged).map_err(|e| DecodeError::InvalidPayload {
            event_type: event_type.to_owned(),
            version: schema_version,
            source: PayloadError::from(e),
        })
    }

    fn tags(&self) -> Result<Vec<Tag>, TagError> {
        match self {
            Self::CourseDefined { course, .. } | Self::CourseCapacityChanged { course, .. } => {
                Ok(vec![Tag::pair("course", course)?])
            }
            Self::StudentSubscribed { student, course } => Ok(vec![
                Tag::pair("student", student)?,
                Tag::pair("course", course)?,
            ]),
            Self::AccountRegistered { account, username }
            | Self::AccountClosed { account, username } => Ok(vec![
                Tag::pair("account", account)?,
                Tag::pair("username", username)?,
            ]),
            Self::InvoiceCreated { number } => Ok(vec![Tag::pair("invoice", number)?]),
            Self::SignUpInitiated { token, .. } | Self::SignUpConfirmed { token } => {
                Ok(vec![Tag::pair("token", token)?])
            }
            Self::Labelled { labels } => labels.iter().map(|l| Tag::new(l.as_str())).collect(),
        }
    }
}

/// A tag from its text; the cases write only valid ones here.
pub(crate) fn tag(text: &str) -> Tag {
    Tag::new(text).unwrap_or_else(|e| panic!("`{text}` is not a valid tag: {e}"))
}

/// A set of tags from their texts.
pub(crate) fn tag_set<'a>(texts: impl IntoIterator<Item = &'a str>) -> BTreeSet<Tag> {
    texts.into_iter().map(tag).collect()
}

/// The stream `category-id`.
pub(crate) fn stream(category: &str, id: &str) -> StreamId {
    StreamId::new(category, id).expect("valid stream id")
}

/// Waits until log readers (and so `read_query`) can read the events `committed` recorded:
/// a store may hold fresh events back while older transactions are open (PostgreSQL does,
/// so that a late commit is never skipped). Decisions in these cases read right after
/// their own writes, and must see them to decide as the case expects.
pub(crate) async fn settle<S: Store, E>(store: &S, committed: &Committed<E>) {
    let Some(position) = committed.position() else {
        return;
    };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !store
        .readable(position)
        .await
        .unwrap_or_else(|e| panic!("asking whether {position} is readable failed: {e:?}"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the event at {position} is not readable after {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Appends `events` to `stream` unconditionally and waits until they are readable.
pub(crate) async fn put<S: Store>(
    store: &S,
    stream: &StreamId,
    events: Vec<NewEvent<DcbEvent>>,
) -> Committed<DcbEvent> {
    let committed = store
        .append(stream, ExpectedVersion::Any, events)
        .await
        .unwrap_or_else(|e| panic!("appending to `{stream}` failed: {e:?}"));
    settle(store, &committed).await;
    committed
}

/// Appends one event to `stream` unconditionally and returns its envelope, readable.
pub(crate) async fn put_one<S: Store>(
    store: &S,
    stream: &StreamId,
    event: DcbEvent,
) -> EventEnvelope<DcbEvent> {
    let mut committed = put(store, stream, vec![NewEvent::new(event)]).await;
    committed.events.remove(0)
}

/// What `read_query` returns now, typed.
pub(crate) async fn query_now<S: Store>(
    store: &S,
    query: &Query,
    after: Position,
) -> Vec<EventEnvelope<DcbEvent>> {
    store
        .read_query::<DcbEvent>(query, after)
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("read_query {query} after {after} failed: {e:?}"))
}

/// The event ids of `events`, in order.
pub(crate) fn ids(events: &[EventEnvelope<DcbEvent>]) -> Vec<uuid::Uuid> {
    events.iter().map(|e| e.event_id).collect()
}

/// A decision's read: the state folded from the events its query selects, and the
/// position of the last one (the condition's `after`).
#[derive(Debug)]
pub(crate) struct DecisionRead<T> {
    pub(crate) state: T,
    pub(crate) query: Query,
    pub(crate) after: Option<Position>,
}

impl<T> DecisionRead<T> {
    /// Reads what `query` selects from the start of the log and folds it into `state`.
    pub(crate) async fn read<S: Store>(
        store: &S,
        query: Query,
        mut state: T,
        fold: impl Fn(&mut T, &DcbEvent),
    ) -> Self {
        let events = query_now(store, &query, Position::START).await;
        for envelope in &events {
            fold(&mut state, &envelope.event);
        }
        Self {
            state,
            after: events.last().map(|e| e.position),
            query,
        }
    }

    /// The condition that the decision's facts did not change: nothing its query selects
    /// after the last event it read.
    pub(crate) fn condition(&self) -> AppendCondition {
        AppendCondition::new(self.query.clone()).after(self.after)
    }

    /// Appends `event` to `stream` on the decision's condition (any stream version: only
    /// the condition guards a decision), and waits until it is readable if it was stored.
    pub(crate) async fn commit<S: Store>(
        &self,
        store: &S,
        stream: &StreamId,
        event: DcbEvent,
    ) -> Result<Committed<DcbEvent>, AppendError> {
        let committed = store
            .append_if(
                stream,
                ExpectedVersion::Any,
                vec![NewEvent::new(event)],
                self.condition(),
            )
            .await?;
        settle(store, &committed).await;
        Ok(committed)
    }
}

/// Asserts `result` is a [`AppendError::ConditionFailed`] for an append to `stream`
/// naming `query`, `after`, and `first` (the first event that broke the condition), by its
/// position and type.
#[track_caller]
pub(crate) fn assert_condition_failed(
    result: &Result<Committed<DcbEvent>, AppendError>,
    stream: &StreamId,
    condition: &AppendCondition,
    first: &EventEnvelope<DcbEvent>,
) {
    match result {
        Err(AppendError::ConditionFailed {
            stream: s,
            query,
            after,
            position,
            event_type,
        }) => {
            assert_eq!(s, stream, "the failure names the stream appended to");
            assert_eq!(
                query,
                &condition.fail_if_events_match.to_string(),
                "the failure names the condition's query"
            );
            assert_eq!(
                after, &condition.after,
                "the failure names the condition's position"
            );
            assert_eq!(
                (position, event_type.as_str()),
                (&first.position, first.event.event_type()),
                "the failure names the first event that broke the condition"
            );
        }
        other => panic!("expected the condition to fail on {first:?}, got {other:?}"),
    }
}

/// The whole of `stream`, typed.
pub(crate) async fn read_stream<S: Store>(
    store: &S,
    stream: &StreamId,
) -> Vec<EventEnvelope<DcbEvent>> {
    store
        .read_stream::<DcbEvent>(stream, es_core::Version::INITIAL)
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("reading `{stream}` failed: {e:?}"))
}
