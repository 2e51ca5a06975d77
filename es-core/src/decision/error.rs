//! [`DecisionError`]: why a decision appended nothing.

use uuid::Uuid;

use crate::error::{AppendError, ReadError};
use crate::event::DecodeError;
use crate::stream::{Position, StreamId, Version};

use super::states::Undecodable;

/// Why a [`Decider`](super::Decider) did not record (or confirm) a decision's events.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecisionError<E> {
    /// The decision's rule said no.
    #[error("decision for stream `{stream}` rejected: {error}")]
    Rejected {
        /// The stream the decision appends to.
        stream: StreamId,
        /// The rule's reason.
        error: E,
    },
    /// Every attempt lost the race: each time, an event the decision's query selects was
    /// stored between its read and its append.
    #[error(
        "the events of {query} kept changing: gave up after {attempts} attempts to append to stream `{stream}` (the last found a `{event_type}` at position {position}); retry later, or narrow the query"
    )]
    Conflict {
        /// The stream the decision appends to.
        stream: StreamId,
        /// The decision's query, as text (types and tag keys, never tag values).
        query: String,
        /// How many times it was read, decided and appended.
        attempts: u32,
        /// The position the last attempt decided on.
        after: Option<Position>,
        /// The event that failed the last attempt's condition.
        position: Position,
        /// That event's type.
        event_type: String,
    },
    /// A state's query selects a stored event that the state's event type cannot decode.
    #[error(
        "state `{state}` selects event `{event_type}` (schema version {schema_version}) at version {version} of stream `{stream}` (position {position}) but cannot decode it: name the types it reads in its query, or add an upcaster"
    )]
    Undecodable {
        /// The state's type name.
        state: &'static str,
        /// The stream holding the event.
        stream: StreamId,
        /// The event's version in it.
        version: Version,
        /// The event's global position.
        position: Position,
        /// The stored event type name.
        event_type: String,
        /// The stored schema version of the payload.
        schema_version: u32,
        /// Why decoding failed.
        #[source]
        source: DecodeError,
    },
    /// Reading the events the decision depends on failed (its query is in its span).
    #[error("cannot read the events of a decision on stream `{stream}`")]
    Read {
        /// The stream the decision appends to.
        stream: StreamId,
        /// The read failure.
        #[source]
        source: ReadError,
    },
    /// Appending the events failed for a reason other than a failed condition.
    ///
    /// If the failure [is transient](DecisionError::is_transient), the events may have been
    /// stored all the same (the reply was lost): executing the decision again with
    /// `command_id` ([`CommandContext::with_command_id`](crate::CommandContext::with_command_id))
    /// records it once and tells which.
    #[error("cannot append a decision to stream `{stream}`{}", if source.is_transient() {
        format!("; the events may have been stored: execute the decision again with command id {command_id} to record it once")
    } else {
        String::new()
    })]
    Append {
        /// The stream the decision appends to.
        stream: StreamId,
        /// The id the decision was executed under.
        command_id: Uuid,
        /// The append failure.
        #[source]
        source: AppendError,
    },
}

impl<E> DecisionError<E> {
    /// Whether the store failed for a moment ([`StoreError::is_transient`](crate::StoreError::is_transient))
    /// while reading or appending; the [`Decider`](super::Decider) already tried again as
    /// its retry policy says.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Read { source, .. } => source.is_transient(),
            Self::Append { source, .. } => source.is_transient(),
            _ => false,
        }
    }

    /// The rule's error, if the decision was rejected.
    pub fn rejection(&self) -> Option<&E> {
        match self {
            Self::Rejected { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The rule's error, if the decision was rejected, by value.
    pub fn into_rejection(self) -> Option<E> {
        match self {
            Self::Rejected { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl<E> DecisionError<E> {
    /// The error for an event a state cannot decode.
    pub(crate) fn undecodable(failure: Undecodable) -> Self {
        let Undecodable {
            state,
            stream,
            version,
            position,
            event_type,
            schema_version,
            source,
        } = failure;
        Self::Undecodable {
            state,
            stream,
            version,
            position,
            event_type,
            schema_version,
            source,
        }
    }
}
