//! Tests for schema evolution: how events stored by older versions of a type read today.

use std::fmt::Debug;
use std::marker::PhantomData;

use serde_json::Value;

use super::aggregate::check_round_trip;
use super::diff::debug_diff;
use crate::event::{DecodeError, DomainEvent};

/// Starts an upcasting test on an event type: `OrderEvent::stored(type, version, payload)`.
pub trait EventTestExt: DomainEvent + Debug + PartialEq {
    /// An event as an older version of the application stored it: its type name as stored
    /// (an old name is fine if it is declared as an alias), its schema version and its
    /// payload.
    ///
    /// ```
    /// use es_core::testing::EventTestExt as _;
    /// use es_core::{DomainEvent, RawEvent, UpcastError};
    /// use serde_json::json;
    ///
    /// fn v1_to_v2(event: RawEvent) -> Result<RawEvent, UpcastError> {
    ///     Ok(event.rename_field("by", "carrier")?.with_version(2))
    /// }
    ///
    /// #[derive(Debug, Clone, PartialEq, DomainEvent)]
    /// enum OrderEvent {
    ///     #[event(name = "OrderShipped", alias = "Shipped", version = 2, upcast(from = 1, with = v1_to_v2))]
    ///     Shipped { carrier: String },
    /// }
    ///
    /// OrderEvent::stored("Shipped", 1, json!({ "by": "dhl" }))
    ///     .upcasts_to(OrderEvent::Shipped { carrier: "dhl".into() });
    ///
    /// let error = OrderEvent::stored("OrderShipped", 7, json!({})).fails();
    /// assert_eq!(error.event_type(), "OrderShipped");
    /// ```
    fn stored(event_type: &str, schema_version: u32, payload: Value) -> StoredEvent<Self> {
        StoredEvent {
            event_type: event_type.to_owned(),
            schema_version,
            payload,
            event: PhantomData,
        }
    }
}

impl<E: DomainEvent + Debug + PartialEq> EventTestExt for E {}

/// A stored event of an older shape, ready for expectations.
#[must_use = "a stored event without `upcasts_to` or `fails` checks nothing"]
#[derive(Debug)]
pub struct StoredEvent<E> {
    event_type: String,
    schema_version: u32,
    payload: Value,
    event: PhantomData<fn() -> E>,
}

impl<E: DomainEvent + Debug + PartialEq> StoredEvent<E> {
    /// Decodes the stored event both ways a store may hand it over (as a JSON value, and as
    /// text through [`DomainEvent::decode_json`]) and returns what they agree on.
    #[track_caller]
    fn decode(&self) -> Result<E, DecodeError> {
        let from_value = E::decode(&self.event_type, self.schema_version, self.payload.clone());
        let from_text = E::decode_json(
            &self.event_type,
            self.schema_version,
            &self.payload.to_string(),
        );
        match (&from_value, &from_text) {
            (Ok(a), Ok(b)) if a == b => {}
            (Err(_), Err(_)) => {}
            _ => panic!(
                "`{}` v{} decodes differently from a JSON value ({from_value:?}) and from text ({from_text:?})",
                self.event_type, self.schema_version
            ),
        }
        from_value
    }

    /// Expects the stored event to read as `expected` today, through every upcasting step.
    /// Also checks that `expected` survives its own encoding at today's version.
    ///
    /// # Panics
    ///
    /// Panics with a diff if it reads as another event, and with the error if it does not
    /// read at all.
    #[track_caller]
    #[allow(
        clippy::needless_pass_by_value,
        reason = "by value, like the other expectations, so tests pass events inline"
    )]
    pub fn upcasts_to(self, expected: E) {
        match self.decode() {
            Ok(actual) if actual == expected => {}
            Ok(actual) => panic!(
                "`{}` v{} upcasts to another event\n{}stored payload: {}",
                self.event_type,
                self.schema_version,
                debug_diff(&expected, &actual),
                self.payload
            ),
            Err(error) => panic!(
                "`{}` v{} does not upcast: {error}\n{error:?}\nstored payload: {}",
                self.event_type, self.schema_version, self.payload
            ),
        }
        check_round_trip(&expected);
    }

    /// Expects the stored event not to read today, and returns why, for further checks.
    ///
    /// # Panics
    ///
    /// Panics with the event it read if it does read.
    #[track_caller]
    pub fn fails(self) -> DecodeError {
        match self.decode() {
            Ok(event) => panic!(
                "`{}` v{} was expected to fail, but reads as {event:#?}",
                self.event_type, self.schema_version
            ),
            Err(error) => error,
        }
    }
}
