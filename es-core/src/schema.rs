//! What each event type looks like to someone outside the service: [`EventSchema`].
//!
//! Other services consume an aggregate's events; to do that without reading our code they
//! need each event type's stored name, schema version and the JSON Schema of its payload.
//! `#[derive(EventSchema)]` gives exactly that from the same declarations the store uses, so
//! a document built from it (es-asyncapi's) cannot drift from what is stored.

use schemars::{Schema, SchemaGenerator};

use crate::event::DomainEvent;

/// Describes every event type of a [`DomainEvent`]: name, version, docs and payload schema.
///
/// Derive it beside `DomainEvent` (`es-core` feature `schema`); the payload schemas come from
/// [schemars](https://docs.rs/schemars), so every payload field type must implement
/// `schemars::JsonSchema` (schemars covers the standard library, `chrono` and `uuid`; derive
/// it on your own field types, or point a field at a stand-in with
/// `#[schemars(with = "Type")]`).
///
/// ```
/// use es_core::{DomainEvent, EventSchema};
///
/// #[derive(Debug, Clone, DomainEvent, EventSchema)]
/// enum DoorEvent {
///     /// Someone opened the door.
///     #[event(name = "DoorOpened", version = 2)]
///     Opened { by: String },
///     Closed,
/// }
///
/// let mut generator = schemars::SchemaGenerator::default();
/// let described = DoorEvent::describe(&mut generator);
/// assert_eq!(described[0].name(), "DoorOpened");
/// assert_eq!(described[0].version(), 2);
/// assert_eq!(described[0].docs(), "Someone opened the door.");
/// assert_eq!(described[0].payload().get("required"), Some(&serde_json::json!(["by"])));
/// assert_eq!(described[1].name(), "Closed");
/// ```
pub trait EventSchema: DomainEvent {
    /// One description per event type, in declaration order (as
    /// [`DomainEvent::EVENT_TYPES`], without the aliases). Schemas that payloads refer to by
    /// `$ref` are added to `generator`'s definitions.
    fn describe(generator: &mut SchemaGenerator) -> Vec<EventDescription>;
}

/// One event type as [`EventSchema::describe`] gives it.
#[derive(Debug, Clone)]
pub struct EventDescription {
    name: &'static str,
    version: u32,
    rust_name: &'static str,
    docs: &'static str,
    aliases: &'static [&'static str],
    older_versions: &'static [u32],
    payload: Schema,
}

impl EventDescription {
    /// For generated code only.
    #[doc(hidden)]
    #[must_use]
    pub fn __new(
        (name, version, rust_name): (&'static str, u32, &'static str),
        docs: &'static str,
        (aliases, older_versions): (&'static [&'static str], &'static [u32]),
        payload: Schema,
    ) -> Self {
        Self {
            name,
            version,
            rust_name,
            docs,
            aliases,
            older_versions,
            payload,
        }
    }

    /// The stored event type name (`#[event(name = ...)]`).
    #[must_use]
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The schema version this code writes.
    #[must_use]
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The Rust variant's (or struct's) name, for titles, without a raw identifier's `r#`.
    #[must_use]
    pub fn rust_name(&self) -> &'static str {
        self.rust_name.trim_start_matches("r#")
    }

    /// The doc comment, lines joined with `\n` and trimmed; empty if there is none.
    #[must_use]
    pub fn docs(&self) -> &'static str {
        self.docs
    }

    /// Older names still decoded as this type (`#[event(alias = ...)]`).
    #[must_use]
    pub fn aliases(&self) -> &'static [&'static str] {
        self.aliases
    }

    /// Older stored versions that `upcast` steps still read, ascending.
    #[must_use]
    pub fn older_versions(&self) -> &'static [u32] {
        self.older_versions
    }

    /// The JSON Schema of the payload as this code writes it.
    #[must_use]
    pub fn payload(&self) -> &Schema {
        &self.payload
    }

    /// The payload's schema, to rewrite (as a document applies its generator's transforms).
    pub fn payload_mut(&mut self) -> &mut Schema {
        &mut self.payload
    }
}
