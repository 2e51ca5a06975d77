//! Errors, one type per operation: appending ([`AppendError`]), reading ([`ReadError`]),
//! other store calls ([`StoreError`]) and command execution ([`CommandError`]).
//!
//! Each names the stream, version and event type involved where it has them. Conflicts are a
//! variant you can match, never a string to parse.
//!
//! Every error type of es-core is here, also those that belong with what fails: decoding
//! and encoding events ([`DecodeError`], [`EncodeError`], [`UpcastError`],
//! [`PayloadError`]), the [limits](crate::limits) ([`LimitError`]), loading an aggregate
//! ([`LoadError`]), runners and process managers ([`RunnerError`], [`ProcessError`]), and
//! parsing ids ([`StreamIdError`], [`ParsePositionError`]).

use std::error::Error as StdError;

use uuid::Uuid;

pub use crate::decision::DecisionError;
pub use crate::event::{DecodeError, EncodeError, UpcastError};
pub use crate::limits::LimitError;
pub use crate::payload::{PayloadError, PayloadErrorCategory};
pub use crate::process::ProcessError;
pub use crate::repository::LoadError;
pub use crate::runner::RunnerError;
use crate::stream::{ExpectedVersion, Position, StreamId, Version};
pub use crate::stream::{ParsePositionError, StreamIdError};

/// A boxed error from a store's backend (a database driver, an I/O layer).
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// The first [`StoreError`] among `error` and its sources: what a store said, when a
/// failure of another layer (a command, a projection) comes from one. Whether it
/// [is transient](StoreError::is_transient) tells whether trying again may help.
///
/// ```
/// use es_core::{AppendError, StoreError, StoreErrorKind, StreamId};
///
/// let error = AppendError::Store {
///     stream: StreamId::new("order", "1")?,
///     source: StoreError::new("append", "reset").with_kind(StoreErrorKind::Unavailable),
/// };
/// assert!(es_core::error::store_failure_within(&error).is_some_and(StoreError::is_transient));
/// # Ok::<(), es_core::StreamIdError>(())
/// ```
pub fn store_failure_within<'e>(error: &'e (dyn StdError + 'static)) -> Option<&'e StoreError> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(store) = error.downcast_ref::<StoreError>() {
            return Some(store);
        }
        current = error.source();
    }
    None
}

/// `error` followed by each of its sources, joined by `: `, as a status line or a log
/// shows it: `event store append timed out: canceling statement due to lock timeout`.
///
/// ```
/// use es_core::StoreError;
///
/// let error = StoreError::new("append", "connection reset");
/// assert_eq!(es_core::error::display_chain(&error), "event store append failed: connection reset");
/// ```
///
/// A source whose message the error before it already ends with is not repeated.
pub fn display_chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        // Some errors say their source's message themselves (sqlx's database errors do):
        // say it once.
        let said = cause.to_string();
        if !text.ends_with(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

/// A store's backend failed: the connection dropped, the server refused, a query failed,
/// a deadline passed.
///
/// The message names the operation, what it was about (a stream, a position) where known,
/// and the [kind](StoreErrorKind) of failure; the backend's own error is the
/// [`source`](StdError::source). [`StoreError::is_transient`] tells a moment's trouble (a
/// lost connection, a server restarting, a timeout), which trying again may cure, from a
/// lasting one.
#[derive(Debug, thiserror::Error)]
#[error("event store {operation} {}{}", self.kind.verb(), self.context.as_deref().map(|c| format!(" for {c}")).unwrap_or_default())]
pub struct StoreError {
    operation: &'static str,
    kind: StoreErrorKind,
    context: Option<String>,
    #[source]
    source: BoxError,
}

/// What kind of failure a [`StoreError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The store could not be reached, or dropped the connection: the server is down or
    /// restarting, the network failed, or the server ended the session. Trying again
    /// later may succeed. An append that failed so may or may not have been stored.
    Unavailable,
    /// A deadline passed: a statement ran too long, a lock was not granted in time, or no
    /// connection came free in time. Nothing was done; trying again may succeed.
    Timeout,
    /// Anything else (a refused statement, a missing privilege, bad data): trying again
    /// will not help.
    Other,
}

impl StoreErrorKind {
    fn verb(self) -> &'static str {
        match self {
            Self::Unavailable => "failed: the store is unavailable",
            Self::Timeout => "timed out",
            Self::Other => "failed",
        }
    }
}

impl StoreError {
    /// A failure of `operation` (such as `"append"` or `"snapshot load"`), of kind
    /// [`StoreErrorKind::Other`] unless [`with_kind`](StoreError::with_kind) says otherwise.
    pub fn new(operation: &'static str, source: impl Into<BoxError>) -> Self {
        Self {
            operation,
            kind: StoreErrorKind::Other,
            context: None,
            source: source.into(),
        }
    }

    /// Says what kind of failure it is.
    #[must_use]
    pub fn with_kind(mut self, kind: StoreErrorKind) -> Self {
        self.kind = kind;
        self
    }

    /// Says what the operation was about, such as "stream `order-42` from version 7".
    #[must_use]
    pub fn with_context(mut self, context: impl Into<String>) -> Self {
        self.context = Some(context.into());
        self
    }

    /// The operation that failed.
    pub fn operation(&self) -> &'static str {
        self.operation
    }

    /// What kind of failure it is.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// Whether trying again may succeed: the store was unavailable or a deadline passed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind,
            StoreErrorKind::Unavailable | StoreErrorKind::Timeout
        )
    }

    /// What the operation was about, if known.
    pub fn context(&self) -> Option<&str> {
        self.context.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_say_what_failed_and_on_what() {
        let plain = StoreError::new("append", "connection reset");
        assert_eq!(plain.to_string(), "event store append failed");
        let detailed = plain.with_context("stream `order-1`");
        assert_eq!(
            detailed.to_string(),
            "event store append failed for stream `order-1`"
        );
        assert_eq!(
            StdError::source(&detailed)
                .map(ToString::to_string)
                .as_deref(),
            Some("connection reset")
        );
        assert!(!detailed.is_transient());
    }

    #[test]
    fn kinds_say_whether_to_try_again() {
        let timeout = StoreError::new("append", "lock").with_kind(StoreErrorKind::Timeout);
        assert_eq!(timeout.to_string(), "event store append timed out");
        assert!(timeout.is_transient());
        let down = StoreError::new("log read", "refused").with_kind(StoreErrorKind::Unavailable);
        assert_eq!(
            down.to_string(),
            "event store log read failed: the store is unavailable"
        );
        assert!(down.is_transient());
    }
}

/// Why an append wrote nothing.
///
/// An append is atomic: when it fails, none of its events are stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// The stream's version was not the expected one: another writer got there first.
    #[error(
        "version conflict on stream `{stream}`: expected {expected}, but it is at version {actual}"
    )]
    Conflict {
        /// The stream appended to.
        stream: StreamId,
        /// What the writer expected.
        expected: ExpectedVersion,
        /// The stream's actual version (0 if it holds no events).
        actual: Version,
    },
    /// An event id in the batch is already stored, and the batch is not an exact repeat of
    /// events already in this stream (see [`EventStore::append`](crate::EventStore::append)).
    #[error(
        "event {event_id} for stream `{stream}` is already stored as version {existing_version} of stream `{existing_stream}`"
    )]
    DuplicateEventId {
        /// The duplicated id.
        event_id: Uuid,
        /// The stream appended to.
        stream: StreamId,
        /// The stream that holds the id.
        existing_stream: StreamId,
        /// The version the id has there.
        existing_version: Version,
    },
    /// The batch holds one event id more than once. It is refused whole: storing the
    /// repeat once would record fewer events than the caller sent, and the id cannot name
    /// two events.
    #[error("event {event_id} appears more than once in one append to stream `{stream}`")]
    DuplicateInBatch {
        /// The repeated id.
        event_id: Uuid,
        /// The stream appended to.
        stream: StreamId,
    },
    /// The stream is archived: it takes no more events.
    #[error("stream `{stream}` is archived and takes no more events")]
    Archived {
        /// The stream appended to.
        stream: StreamId,
    },
    /// An event could not be encoded.
    #[error("cannot encode event `{event_type}` for stream `{stream}`")]
    Encode {
        /// The stream appended to.
        stream: StreamId,
        /// The event's type name.
        event_type: String,
        /// What the encoder reported.
        #[source]
        source: crate::event::EncodeError,
    },
    /// An event breaks a limit every store keeps (see [`limits`](crate::limits)): it
    /// could not be read back as written. Nothing was stored.
    #[error("cannot store event `{event_type}` (index {index} of the append) in stream `{stream}`")]
    Unstorable {
        /// The stream appended to.
        stream: StreamId,
        /// The event's index in the batch, from 0.
        index: usize,
        /// The event's type name (control characters escaped).
        event_type: String,
        /// Which limit it breaks.
        #[source]
        reason: crate::limits::LimitError,
    },
    /// The append takes more than [`MAX_BATCH_BYTES`](crate::limits::MAX_BATCH_BYTES) as
    /// JSON. Nothing was stored; append the events in smaller batches.
    #[error(
        "an append of {events} events to stream `{stream}` takes {bytes} bytes as JSON, more than the {max} one append may take; append them in smaller batches"
    )]
    BatchTooLarge {
        /// The stream appended to.
        stream: StreamId,
        /// How many events the batch holds.
        events: usize,
        /// Their size as JSON.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The stream is at the expected version, but the batch would take it past
    /// [`Version::MAX`], the most events a stream holds.
    #[error("stream `{stream}` is full: at version {version}, it cannot take {events} more events")]
    StreamFull {
        /// The stream appended to.
        stream: StreamId,
        /// Its version.
        version: Version,
        /// How many events the batch holds.
        events: usize,
    },
    /// The append's [condition](crate::AppendCondition) failed: an event its query selects
    /// was stored after the position the decision was made on. Nothing was stored; read
    /// again, decide again (a [`Decider`](crate::Decider) does that by itself).
    #[error(
        "condition failed for an append to stream `{stream}`: an event matching {query} was stored at position {position} (a `{event_type}`), after {after}; read the events again and decide again"
    , after = after.map_or_else(|| "the start of the log".to_owned(), |p| format!("position {p}")))]
    ConditionFailed {
        /// The stream appended to.
        stream: StreamId,
        /// The condition's query, as text (types and tag keys, never tag values).
        query: String,
        /// The position the condition counted from.
        after: Option<crate::stream::Position>,
        /// The first event that made it fail.
        position: crate::stream::Position,
        /// That event's type.
        event_type: String,
    },
    /// An event's tags are not valid: one of its `#[tag]` fields does not make a valid
    /// [`Tag`](crate::Tag), or it carries more than
    /// [`MAX_TAGS`](crate::limits::MAX_TAGS). Nothing was stored.
    #[error("cannot tag event `{event_type}` (index {index} of the append) in stream `{stream}`")]
    InvalidTag {
        /// The stream appended to.
        stream: StreamId,
        /// The event's index in the batch, from 0.
        index: usize,
        /// The event's type name.
        event_type: String,
        /// What is wrong.
        #[source]
        source: crate::TagError,
    },
    /// The backend failed; the append may or may not have been stored (re-appending the
    /// same event ids is safe and tells).
    #[error("append to stream `{stream}` failed")]
    Store {
        /// The stream appended to.
        stream: StreamId,
        /// The backend failure.
        #[source]
        source: StoreError,
    },
}

impl AppendError {
    /// Whether this is an optimistic-concurrency conflict, which a retry may resolve.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }

    /// Whether the store was unavailable or a deadline passed ([`StoreError::is_transient`]):
    /// the append may or may not have been stored, and appending the same event ids again
    /// is safe and tells.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Store { source, .. } if source.is_transient())
    }
}

/// Why a read (of a stream, the global log or a subscription) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// A stored event could not be decoded into the requested type.
    ///
    /// The type name and schema version are the stored ones, as a query of the store shows
    /// them; where upcasting got to before it failed (an alias resolved, steps applied) is
    /// in the source.
    #[error(
        "cannot decode event `{event_type}` (schema version {schema_version}) at version {version} of stream `{stream}` (position {position})"
    )]
    Decode {
        /// The event's id.
        event_id: Uuid,
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
    /// Stored metadata is not valid.
    #[error("metadata of event at version {version} of stream `{stream}` is not valid")]
    Metadata {
        /// The stream holding the event.
        stream: StreamId,
        /// The event's version in it.
        version: Version,
        /// What does not fit, without the stored values.
        #[source]
        source: PayloadError,
    },
    /// A stored value (a stream id, a version) breaks the store's own invariants.
    #[error("corrupt stored data: {detail}")]
    Corrupt {
        /// What is wrong.
        detail: String,
    },
    /// The backend failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ReadError {
    /// Whether the store was unavailable or a deadline passed ([`StoreError::is_transient`]):
    /// reading again may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Store(source) if source.is_transient())
    }

    /// The stored event `event_id` at `version` of `stream`, of type `event_type` at schema version
    /// `schema_version` as stored, could not be decoded.
    ///
    /// Give the stored type and version, not those in `source`: an upcast may have renamed
    /// the event or moved its version before failing, and the stored ones are what finds
    /// the row.
    pub fn decode(
        event_id: Uuid,
        stream: StreamId,
        version: Version,
        position: Position,
        event_type: impl Into<String>,
        schema_version: u32,
        source: DecodeError,
    ) -> Self {
        Self::Decode {
            event_id,
            stream,
            version,
            position,
            event_type: event_type.into(),
            schema_version,
            source,
        }
    }
}

/// Why a command did not produce (or confirm) its events.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError<E> {
    /// The aggregate rejected the command: a business rule said no.
    #[error("command rejected by `{stream}`: {error}")]
    Rejected {
        /// The aggregate's stream.
        stream: StreamId,
        /// The aggregate's reason.
        error: E,
    },
    /// Other writers kept changing the stream: every attempt lost the race.
    #[error(
        "stream `{stream}` kept changing: gave up after {attempts} attempts (last expected {expected}, found version {actual})"
    )]
    Conflict {
        /// The aggregate's stream.
        stream: StreamId,
        /// How many times the command was decided and appended.
        attempts: u32,
        /// The version the last attempt expected.
        expected: ExpectedVersion,
        /// The version the stream had.
        actual: Version,
    },
    /// The aggregate id does not make a valid stream id.
    #[error("invalid aggregate id")]
    InvalidId(#[from] StreamIdError),
    /// The aggregate's stream is archived: it takes no more commands.
    #[error("stream `{stream}` is archived and takes no more commands")]
    Archived {
        /// The aggregate's stream.
        stream: StreamId,
    },
    /// Loading the aggregate failed.
    #[error("cannot load stream `{stream}`")]
    Load {
        /// The aggregate's stream.
        stream: StreamId,
        /// The read failure.
        #[source]
        source: ReadError,
    },
    /// Appending the events failed for a reason other than a conflict.
    ///
    /// If the failure [is transient](CommandError::is_transient), the events may have been
    /// stored all the same (the reply was lost): executing the command again with
    /// `command_id` ([`CommandContext::with_command_id`](crate::CommandContext::with_command_id))
    /// records it once and tells which.
    #[error("cannot append to stream `{stream}`{}", if source.is_transient() {
        format!("; the events may have been stored: execute the command again with command id {command_id} to record it once")
    } else {
        String::new()
    })]
    Append {
        /// The aggregate's stream.
        stream: StreamId,
        /// The id the command was executed under.
        command_id: Uuid,
        /// The append failure.
        #[source]
        source: AppendError,
    },
}

impl<E> CommandError<E> {
    /// Whether the store failed for a moment ([`StoreError::is_transient`]) while loading
    /// or appending. [`Repository`](crate::Repository) already runs commands again after
    /// such failures, as its retry policy says; this is what remains once it gave up.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Load { source, .. } => source.is_transient(),
            Self::Append { source, .. } => source.is_transient(),
            _ => false,
        }
    }

    /// The domain error, if the aggregate rejected the command.
    pub fn rejection(&self) -> Option<&E> {
        match self {
            Self::Rejected { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The domain error, if the aggregate rejected the command, by value.
    pub fn into_rejection(self) -> Option<E> {
        match self {
            Self::Rejected { error, .. } => Some(error),
            _ => None,
        }
    }
}
