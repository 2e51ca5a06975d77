//! What travels with a command ([`CommandContext`]) and what executing it gives back
//! ([`CommandOutcome`]).

use uuid::Uuid;

use crate::event::{EventEnvelope, Metadata};
use crate::store::Committed;
use crate::stream::StreamId;

/// The identity and metadata of one command execution.
///
/// The command id makes execution idempotent: executing a command again with the same id
/// on the same aggregate appends nothing and returns the outcome of the first execution.
/// Pass the id your caller sent for this one command (an HTTP request's idempotency key,
/// the id of the event a process manager reacts to); [`CommandContext::new`] makes a fresh
/// one, which deduplicates nothing.
///
/// One id must stand for one command. The repeat is recognised by its id alone, never by
/// comparing commands: a different command sent with an id already used on that aggregate
/// is not executed, and its caller gets the first command's outcome as if it were its own.
/// So an id that spans several commands (a request id shared by every command one request
/// issues, a session or trace id) must not be the command id; derive one per command
/// instead, for example a UUID v5 of the request id and the command's position in it.
///
/// Every event the command produces carries this context's metadata: its correlation id
/// (the command id if none is set), its causation id (the command id if none is set), the
/// actor and the free-form entries.
///
/// The ids of those events derive from the command id only when the caller gave one
/// ([`with_command_id`](CommandContext::with_command_id), or
/// [`reacting_to`](CommandContext::reacting_to)): then
/// [`event_id`](CommandContext::event_id) tells them beforehand. Without one, each
/// execution derives its event ids from a fresh id of its own, so that a context reused
/// for many commands is no repeat of them, and nothing predicts those ids.
///
/// ```
/// use es_core::CommandContext;
/// use uuid::Uuid;
///
/// // The key the client sent with this one request, which carries one command.
/// let idempotency_key = Uuid::now_v7();
/// let context = CommandContext::new()
///     .with_command_id(idempotency_key)
///     .with_actor("ada")
///     .with_user("ip", "192.0.2.1");
/// assert_eq!(context.command_id(), idempotency_key);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CommandContext {
    command_id: Uuid,
    command_id_given: bool,
    /// What the events carry, as set; correlation and causation default to the command id
    /// when the events are made ([`CommandContext::event_metadata`]).
    metadata: Metadata,
}

impl Default for CommandContext {
    fn default() -> Self {
        Self::new()
    }
}

impl CommandContext {
    /// A context with a fresh command id (UUID v7) and no metadata.
    pub fn new() -> Self {
        Self {
            command_id: Uuid::now_v7(),
            command_id_given: false,
            metadata: Metadata::new(),
        }
    }

    /// The context of the `index`th command that process `manager` issues in reaction to
    /// the event in `envelope`:
    ///
    /// - its command id is derived from the event's id, the manager's name and `index`, so
    ///   reacting to the same event twice issues the command once;
    /// - the event is its causation, and the event's correlation id (or, if it has none,
    ///   the event's id, as the start of the flow) its correlation;
    /// - the event's actor and user metadata are its own, so a tenant or request id set
    ///   where the flow began reaches every event the flow produces.
    /// - its trace context is not copied from the event: the reaction runs in a span that
    ///   continues the event's trace (feature `opentelemetry`), and the command's events
    ///   carry the context of the command's span within it.
    ///
    /// ```
    /// use es_core::{CommandContext, EventEnvelope, Metadata, Position, StreamId, Version};
    ///
    /// let envelope = EventEnvelope {
    ///     event_id: uuid::Uuid::now_v7(),
    ///     stream_id: StreamId::new("order", "1")?,
    ///     version: Version::new(3),
    ///     position: Position::from_parts(1, 3),
    ///     recorded_at: chrono::Utc::now(),
    ///     metadata: Metadata::new()
    ///         .with_correlation_id(uuid::Uuid::now_v7())
    ///         .with_user("tenant", "acme"),
    ///     event: (),
    /// };
    /// let first = CommandContext::reacting_to(&envelope, "billing", 0);
    /// assert_eq!(first, CommandContext::reacting_to(&envelope, "billing", 0));
    /// assert_ne!(first.command_id(), CommandContext::reacting_to(&envelope, "billing", 1).command_id());
    /// assert_eq!(Some(first.correlation_id()), envelope.metadata.correlation_id);
    /// assert_eq!(first.event_metadata().causation_id, Some(envelope.event_id));
    /// assert_eq!(first.event_metadata().user["tenant"], "acme");
    /// # Ok::<(), es_core::StreamIdError>(())
    /// ```
    pub fn reacting_to<E>(envelope: &EventEnvelope<E>, manager: &str, index: usize) -> Self {
        let command_id = derive_id(envelope.event_id, &format!("{manager}\u{0}{index}"));
        let mut context = Self::new()
            .with_command_id(command_id)
            .with_correlation_id(
                envelope
                    .metadata
                    .correlation_id
                    .unwrap_or(envelope.event_id),
            )
            .with_causation_id(envelope.event_id);
        context.metadata.actor.clone_from(&envelope.metadata.actor);
        context.metadata.user.clone_from(&envelope.metadata.user);
        context
    }

    /// Sets the command id, the key of idempotent execution.
    ///
    /// The id must belong to this command alone: a later command on the same aggregate
    /// with this id is taken for a repeat of this one, whatever it asks (see
    /// [`CommandContext`]).
    #[must_use]
    pub fn with_command_id(mut self, command_id: Uuid) -> Self {
        self.command_id = command_id;
        self.command_id_given = true;
        self
    }

    /// Sets the correlation id, for a command that continues a flow.
    #[must_use]
    pub fn with_correlation_id(mut self, correlation_id: Uuid) -> Self {
        self.metadata = self.metadata.with_correlation_id(correlation_id);
        self
    }

    /// Sets what caused the command (the event a process manager reacts to, an incoming
    /// message): it becomes the causation id of the command's events instead of the
    /// command id.
    #[must_use]
    pub fn with_causation_id(mut self, causation_id: Uuid) -> Self {
        self.metadata = self.metadata.with_causation_id(causation_id);
        self
    }

    /// Sets who issues the command.
    #[must_use]
    pub fn with_actor(mut self, actor: impl Into<String>) -> Self {
        self.metadata = self.metadata.with_actor(actor);
        self
    }

    /// Adds a free-form metadata entry.
    #[must_use]
    pub fn with_user(
        mut self,
        key: impl Into<String>,
        value: impl Into<serde_json::Value>,
    ) -> Self {
        self.metadata = self.metadata.with_user(key, value);
        self
    }

    /// Sets the W3C trace context (`traceparent`) the events carry, such as the header of
    /// the HTTP request that issues the command, so that whoever handles the events
    /// continues that trace. An invalid value is dropped, and only the parsed context is
    /// kept (see [`TraceContext::parse`](crate::telemetry::TraceContext::parse)). Accept a
    /// traceparent only from an upstream you trust: at a public edge, start a new trace
    /// instead (a client's header would otherwise pick the trace your spans join). Without
    /// one, and with the `opentelemetry` feature, the events carry the context of the
    /// command's span.
    ///
    /// ```
    /// use es_core::CommandContext;
    ///
    /// let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    /// let context = CommandContext::new().with_traceparent(header);
    /// let stored = context.event_metadata().traceparent.map(|c| c.to_string());
    /// assert_eq!(stored.as_deref(), Some(header));
    /// assert_eq!(CommandContext::new().with_traceparent("garbage").event_metadata().traceparent, None);
    /// ```
    #[must_use]
    pub fn with_traceparent(mut self, traceparent: impl AsRef<str>) -> Self {
        self.metadata = self.metadata.with_traceparent(traceparent);
        self
    }

    /// Sets all the metadata the events carry at once (replacing what was set); a
    /// correlation or causation id left unset defaults to the command id.
    #[must_use]
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// The command id.
    pub fn command_id(&self) -> Uuid {
        self.command_id
    }

    /// Whether the caller chose the command id (only then can it repeat).
    pub(crate) fn command_id_given(&self) -> bool {
        self.command_id_given
    }

    /// The correlation id events get: the one set, or the command id.
    pub fn correlation_id(&self) -> Uuid {
        self.metadata.correlation_id.unwrap_or(self.command_id)
    }

    /// The metadata every event of this command carries.
    pub fn event_metadata(&self) -> Metadata {
        let mut metadata = self.metadata.clone();
        metadata.correlation_id = Some(self.correlation_id());
        metadata.causation_id = Some(metadata.causation_id.unwrap_or(self.command_id));
        metadata
    }

    /// The id the `index`th event of this command on `stream` is stored under, if the
    /// caller gave the command id ([`with_command_id`](CommandContext::with_command_id) or
    /// [`reacting_to`](CommandContext::reacting_to)).
    ///
    /// Ids are then derived, not random, so that executing the same command again produces
    /// the same ids and the store recognises the repeat. Without a caller's command id,
    /// each execution derives its events' ids from a fresh id of its own instead, and this
    /// predicts none of them. The result is a valid UUID v7: its time is the command id's
    /// time (when the command id is itself a v7), its other bits a hash of the command id,
    /// the stream and the index.
    pub fn event_id(&self, stream: &StreamId, index: usize) -> Uuid {
        derive_event_id(self.command_id, stream, index)
    }
}

pub(crate) fn derive_event_id(command_id: Uuid, stream: &StreamId, index: usize) -> Uuid {
    derive_id(command_id, &format!("{stream}\u{0}{index}"))
}

/// A UUID v7 derived from `base` and `name`: the same inputs always give the same id. It
/// keeps `base`'s 48-bit timestamp (so ids sort roughly by the time of what they derive
/// from) and takes its other bits from a hash of both.
fn derive_id(base: Uuid, name: &str) -> Uuid {
    let hash = Uuid::new_v5(&base, name.as_bytes());
    let mut bytes = *hash.as_bytes();
    bytes[..6].copy_from_slice(&base.as_bytes()[..6]);
    uuid::Builder::from_bytes(bytes)
        .with_version(uuid::Version::SortRand)
        .with_variant(uuid::Variant::RFC4122)
        .into_uuid()
}

/// What executing a command recorded: the [`Committed`] append of its events (none if it
/// changed nothing, the stream's version then unchanged), with
/// [`duplicate`](Committed::duplicate) set when this command id had already been executed,
/// so that these are the events of that first execution and nothing new was recorded.
pub type CommandOutcome<E> = Committed<E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_event_ids_are_stable_v7_and_distinct() {
        let context = CommandContext::new().with_command_id(Uuid::now_v7());
        let stream = StreamId::new("order", "1").unwrap();
        let first = context.event_id(&stream, 0);
        assert_eq!(first, context.event_id(&stream, 0));
        assert_eq!(first.get_version_num(), 7);
        assert_eq!(first.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(
            first.get_timestamp(),
            context.command_id().get_timestamp(),
            "event ids keep the command's time"
        );
        assert_ne!(first, context.event_id(&stream, 1));
        let other = StreamId::new("order", "2").unwrap();
        assert_ne!(first, context.event_id(&other, 0));
    }

    #[test]
    fn metadata_carries_correlation_and_causation() {
        let correlation = Uuid::now_v7();
        let context = CommandContext::new()
            .with_correlation_id(correlation)
            .with_actor("ada");
        let metadata = context.event_metadata();
        assert_eq!(metadata.correlation_id, Some(correlation));
        assert_eq!(metadata.causation_id, Some(context.command_id()));
        assert_eq!(metadata.actor.as_deref(), Some("ada"));

        let plain = CommandContext::new();
        assert_eq!(
            plain.event_metadata().correlation_id,
            Some(plain.command_id())
        );
    }
}
