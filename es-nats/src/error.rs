//! Why the relay or a consumer stopped: [`RelayError`], [`ConsumeError`].

use es_asyncapi::AsyncApiError;
use es_core::{ReadError, StoreError, StreamId, Version};

use crate::message::MessageError;

/// Why the relay could not be set up or could not relay an event.
///
/// Run by a [`ProjectionRunner`](es_core::ProjectionRunner), the relay is restarted from
/// what JetStream holds after a [transient](RelayError::is_transient) error; any other
/// stops it under the runner's error policy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// A route's address is not a valid subject pattern.
    #[error("invalid route for category `{category}`")]
    InvalidRoute {
        /// The route's category.
        category: String,
        /// What is wrong with its address.
        #[source]
        source: AsyncApiError,
    },
    /// Two routes for one category: each event must have exactly one subject.
    #[error("two routes for category `{category}`; each category is relayed to one address")]
    DuplicateRoute {
        /// The category.
        category: String,
    },
    /// The relay was built without routes: it would relay nothing.
    #[error(
        "the relay has no routes; add one with `RelayBuilder::route` or `RelayBuilder::channel`"
    )]
    NoRoutes,
    /// The NATS server does not offer JetStream (it runs without `-js`, or the account has
    /// none): there is nothing to store the events.
    #[error(
        "the NATS server does not offer JetStream ({reason}); start it with JetStream enabled (`nats-server -js`)"
    )]
    JetStreamUnavailable {
        /// What the server or client said.
        reason: String,
    },
    /// The JetStream stream exists with a configuration the relay cannot publish to safely,
    /// or holds messages the relay did not publish.
    #[error("JetStream stream `{stream}` cannot take the relay's events: {reason}")]
    StreamConflict {
        /// The stream's name.
        stream: String,
        /// What conflicts, and what to do.
        reason: String,
    },
    /// The relay was asked to publish before the runner asked it where to resume, which
    /// is the case under [`with_checkpoint_in_memory`](es_core::ProjectionRunner::with_checkpoint_in_memory):
    /// JetStream's own record is the relay's checkpoint.
    #[error(
        "the relay publishes only after it resumed from what JetStream holds; run it without `with_checkpoint_in_memory` (see `Relay::runner`)"
    )]
    NotResumed,
    /// The relay was run on one partition of the log: the log has one order, and a
    /// partition's relay would resume after, and chain against, the others' events.
    #[error(
        "the relay cannot run on a partition (checkpoint key `{key}`); run one relay over the whole log (see `Relay::runner`)"
    )]
    Partitioned {
        /// The partition's checkpoint key.
        key: String,
    },
    /// An event's payload could not be written as JSON (never for a payload the store
    /// accepted).
    #[error("event {version} of stream `{stream}` could not be written as JSON")]
    Encode {
        /// The event's stream.
        stream: StreamId,
        /// Its version.
        version: Version,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A JetStream request failed (the connection dropped, a request timed out); transient.
    #[error("a JetStream request failed")]
    JetStream(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Publishing an event failed. Transient, except for an event larger than the server
    /// takes (`max_payload`), which no retry fixes.
    #[error("event {version} of stream `{stream}` ({event_type}) was not relayed: {kind}")]
    Publish {
        /// The event's stream.
        stream: StreamId,
        /// Its version.
        version: Version,
        /// Its type.
        event_type: String,
        /// What went wrong.
        kind: async_nats::jetstream::context::PublishErrorKind,
        /// The client's error.
        #[source]
        source: async_nats::jetstream::context::PublishError,
    },
    /// The event store failed (loading or saving the relay's checkpoint).
    #[error("the event store failed")]
    Store(#[from] StoreError),
    /// The event store failed to say where its log ends.
    #[error("the event store failed to read its log")]
    Read(#[from] ReadError),
}

impl RelayError {
    /// Whether trying again may succeed: a dropped connection, a timeout, another publisher
    /// that got ahead. The runner then starts over from what JetStream holds last.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        use async_nats::jetstream::context::PublishErrorKind as Kind;
        match self {
            Self::JetStream(_) => true,
            Self::Publish { kind, .. } => !matches!(kind, Kind::MaxPayloadExceeded),
            Self::Store(error) => error.is_transient(),
            Self::Read(error) => error.is_transient(),
            _ => false,
        }
    }

    pub(crate) fn jetstream(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        use async_nats::jetstream::ErrorCode;
        use async_nats::jetstream::context::{RequestError, RequestErrorKind};
        // Nobody answers JetStream API requests on a server with JetStream off (the client
        // calls that "no responders", and words it as a missing resource); an account
        // without JetStream gets an API error with its own code. Both are in the sources.
        let mut unavailable = false;
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(&error);
        while let Some(current) = next {
            unavailable |= current
                .downcast_ref::<RequestError>()
                .is_some_and(|request| request.kind() == RequestErrorKind::NoResponders)
                || current
                    .downcast_ref::<async_nats::jetstream::Error>()
                    .is_some_and(|api| {
                        matches!(
                            api.error_code(),
                            ErrorCode::JETSTREAM_NOT_ENABLED
                                | ErrorCode::JETSTREAM_NOT_ENABLED_FOR_ACCOUNT
                        )
                    });
            next = current.source();
        }
        if unavailable {
            Self::JetStreamUnavailable {
                reason: "no JetStream API answers on this server".to_owned(),
            }
        } else {
            Self::JetStream(Box::new(error))
        }
    }
}

/// Why consuming relayed events stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumeError<E: std::error::Error + 'static> {
    /// A message could not be read back as an event (handed back to JetStream, so it is
    /// delivered again).
    #[error("a relayed message could not be read")]
    Message(#[from] MessageError),
    /// The projection failed on an event.
    #[error("the projection failed on event {version} of stream `{stream}`")]
    Projection {
        /// The event's stream.
        stream: StreamId,
        /// Its version.
        version: Version,
        /// The projection's error.
        #[source]
        source: E,
    },
    /// The projection failed to commit.
    #[error("the projection failed to commit")]
    Commit(#[source] E),
    /// The projection, which keeps its own checkpoint, failed to say where it resumes.
    #[error("the projection failed to load its checkpoint")]
    Resume(#[source] E),
    /// The durable consumer is set up so that skipping by position could lose events.
    #[error("JetStream consumer `{consumer}` cannot feed a projection: {reason}")]
    Config {
        /// The consumer's name.
        consumer: String,
        /// What to change.
        reason: String,
    },
    /// The consumer's checkpoint could not be loaded or saved.
    #[error("the consumer's checkpoint store failed")]
    Checkpoint(#[source] StoreError),
    /// JetStream failed (fetching messages, acknowledging them).
    #[error("JetStream failed")]
    JetStream(#[source] Box<dyn std::error::Error + Send + Sync>),
}
