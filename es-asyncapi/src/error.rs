//! What can be wrong with a document: [`AsyncApiError`].

/// Why a document could not be built or written. Each variant names what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AsyncApiError {
    /// A channel's address pattern is not a valid subject pattern.
    #[error("channel `{channel}`: address `{address}` is invalid: {reason}")]
    InvalidAddress {
        /// The channel.
        channel: String,
        /// The pattern as given.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A channel name, operation id or event type name cannot be a key of the document
    /// (AsyncAPI allows ASCII letters, digits, `.`, `-` and `_`).
    #[error(
        "{what} `{name}` cannot be an AsyncAPI id: use only ASCII letters, digits, `.`, `-` and `_`{hint}"
    )]
    InvalidId {
        /// `"channel"`, `"operation"` or `"event type"`.
        what: &'static str,
        /// The offending name.
        name: String,
        /// For an event type, which channel holds it.
        hint: String,
    },
    /// Two channels, or two operations, have the same name.
    #[error("two {what}s are named `{name}`; give one another name")]
    Duplicate {
        /// `"channel"` or `"operation"`.
        what: &'static str,
        /// The shared name.
        name: String,
    },
    /// Two channels carry an event type of the same name, which the document keys its
    /// messages by.
    #[error(
        "event type `{event_type}` is in channels `{first}` and `{second}`; event type names must be unique across a document"
    )]
    DuplicateMessage {
        /// The event type name.
        event_type: String,
        /// The channel it was first seen in.
        first: String,
        /// The other channel.
        second: String,
    },
    /// An operation names a channel the document does not hold.
    #[error(
        "operation `{operation}` names channel `{channel}`, which is not in the document; add it with `AsyncApi::channel`"
    )]
    UnknownChannel {
        /// The operation.
        operation: String,
        /// The channel it names.
        channel: String,
    },
    /// An operation names a message its channel does not carry.
    #[error(
        "operation `{operation}` names message `{message}`, which channel `{channel}` does not carry (it carries: {carried})"
    )]
    UnknownMessage {
        /// The operation.
        operation: String,
        /// Its channel.
        channel: String,
        /// The message it names.
        message: String,
        /// The messages the channel carries, comma-separated.
        carried: String,
    },
    /// The document could not be written as YAML.
    #[error("the document could not be written as YAML: {0}")]
    Yaml(#[source] serde_norway::Error),
}
