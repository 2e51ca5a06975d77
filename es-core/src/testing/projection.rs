//! The given/then harness for projections.

use std::collections::HashMap;
use std::fmt::{self, Debug};

use chrono::Utc;

use crate::event::{DomainEvent, EventEnvelope, Metadata};
use crate::projection::Projection;
use crate::stream::{Position, StreamId, Version};

use super::block_on::block_on;
use super::diff::debug_diff;

/// Feeds events to a projection as a store would, then checks the view it built.
///
/// Each given event gets an envelope: the next version of its stream, the next global
/// position, a fresh id and the current time. Events given as envelopes keep theirs, and
/// later events follow them (versions and positions continue from the highest seen).
///
/// As a [`ProjectionRunner`](crate::ProjectionRunner) would, the fixture hands the
/// projection only the events its [`Projection::filter`] selects (by category and event
/// type), and after each `given*` call that delivered something it commits at the position
/// of the last event delivered. Filtered-out events still take their version and position.
///
/// ```
/// use es_core::testing::ProjectionFixture;
/// use es_core::{DomainEvent, EventEnvelope, Projection};
/// use std::collections::BTreeMap;
///
/// #[derive(Debug, Clone, PartialEq, DomainEvent)]
/// enum OrderEvent {
///     Placed { total_cents: i64 },
///     Shipped,
/// }
///
/// #[derive(Debug, Default)]
/// struct OpenOrders {
///     open: BTreeMap<String, i64>,
/// }
///
/// impl Projection for OpenOrders {
///     type Event = OrderEvent;
///     type Error = std::convert::Infallible;
///
///     fn name(&self) -> &str {
///         "open-orders"
///     }
///
///     async fn handle(&mut self, envelope: &EventEnvelope<OrderEvent>) -> Result<(), Self::Error> {
///         let order = envelope.stream_id.id().to_owned();
///         match envelope.event {
///             OrderEvent::Placed { total_cents } => { self.open.insert(order, total_cents); }
///             OrderEvent::Shipped => { self.open.remove(&order); }
///         }
///         Ok(())
///     }
/// }
///
/// ProjectionFixture::new(OpenOrders::default())
///     .given("order-1", [OrderEvent::Placed { total_cents: 500 }])
///     .given("order-2", [OrderEvent::Placed { total_cents: 700 }, OrderEvent::Shipped])
///     .then_expect(|view| view.open.clone(), BTreeMap::from([("1".to_owned(), 500)]));
/// ```
pub struct ProjectionFixture<P: Projection> {
    projection: P,
    versions: HashMap<StreamId, Version>,
    /// The highest major part of any position given so far: positions made up later lie
    /// after it, whatever its minor part.
    position: u64,
    /// The subjects forgotten: later events are given redacted.
    forgotten: Vec<crate::personal::Subject>,
}

impl<P: Projection + Debug> Debug for ProjectionFixture<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProjectionFixture")
            .field("projection", &self.projection)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl<P: Projection> ProjectionFixture<P> {
    /// A fixture around `projection`, before any event.
    pub fn new(projection: P) -> Self {
        Self {
            projection,
            versions: HashMap::new(),
            position: 0,
            forgotten: Vec::new(),
        }
    }

    /// `subject` is forgotten: the events given from now on are handed to the projection
    /// as a reader of the store sees them after that (a rebuild after the forgetting), each
    /// personal field of that subject holding its declared replacement
    /// ([`redact`](crate::personal::redact)). Events given before were handled as they
    /// were.
    ///
    /// # Panics
    ///
    /// If `subject` is not a valid [`Subject`](crate::personal::Subject).
    #[track_caller]
    #[must_use]
    pub fn given_forgotten(mut self, subject: &str) -> Self {
        match crate::personal::Subject::new(subject) {
            Ok(subject) => self.forgotten.push(subject),
            Err(error) => panic!("`{subject}` is not a subject: {error}"),
        }
        self
    }

    /// `event` as the projection is shown it, given the subjects forgotten.
    #[track_caller]
    fn shown(&self, event: P::Event) -> P::Event {
        if self.forgotten.is_empty() {
            return event;
        }
        match crate::personal::redact(&event, |subject| self.forgotten.contains(subject)) {
            Ok(redacted) => redacted,
            Err(error) => panic!(
                "given event `{}` cannot be redacted: {error}\n{error:?}",
                event.event_type()
            ),
        }
    }

    /// These events happened on `stream` (`category-id`), in this order, after everything
    /// given before.
    ///
    /// # Panics
    ///
    /// If `stream` is not a valid stream id or the projection fails on an event.
    #[track_caller]
    pub fn given(mut self, stream: &str, events: impl IntoIterator<Item = P::Event>) -> Self {
        let stream = match StreamId::parse(stream) {
            Ok(stream) => stream,
            Err(error) => panic!("`{stream}` is not a stream id: {error}"),
        };
        let filter = self.projection.filter();
        let mut last = None;
        for event in events {
            let version = self
                .versions
                .entry(stream.clone())
                .and_modify(|v| *v = v.next())
                .or_insert(Version::new(1));
            self.position += 1;
            let envelope = EventEnvelope {
                event_id: uuid::Uuid::now_v7(),
                stream_id: stream.clone(),
                version: *version,
                position: Position::from_parts(self.position, self.position),
                recorded_at: Utc::now(),
                metadata: Metadata::new(),
                event: self.shown(event),
            };
            if filter.matches(&envelope.stream_id, envelope.event.event_type()) {
                self.handle(&envelope);
                last = Some(envelope.position);
            }
        }
        self.commit(last);
        self
    }

    /// These recorded events happened, exactly as given (for tests that depend on
    /// metadata, times or positions).
    ///
    /// # Panics
    ///
    /// If the projection fails on an event.
    #[track_caller]
    pub fn given_envelopes(
        mut self,
        envelopes: impl IntoIterator<Item = EventEnvelope<P::Event>>,
    ) -> Self {
        let filter = self.projection.filter();
        let mut last = None;
        for envelope in envelopes {
            let envelope = envelope.map(|event| self.shown(event));
            let version = self
                .versions
                .entry(envelope.stream_id.clone())
                .or_insert(envelope.version);
            *version = (*version).max(envelope.version);
            self.position = self.position.max(envelope.position.parts().0);
            if filter.matches(&envelope.stream_id, envelope.event.event_type()) {
                self.handle(&envelope);
                last = Some(envelope.position);
            }
        }
        self.commit(last);
        self
    }

    /// Commits what was handled, as a runner does after each batch, so that projections
    /// that hold their writes until the commit show them. A runner commits only after
    /// handling something, at that event's position; so does the fixture.
    #[track_caller]
    fn commit(&mut self, last: Option<Position>) {
        let Some(position) = last else {
            return;
        };
        let key = self.projection.name().to_owned();
        if let Err(error) = block_on(self.projection.commit(&key, position)) {
            panic!("the projection failed to commit: {error}\n{error:?}");
        }
    }

    #[track_caller]
    fn handle(&mut self, envelope: &EventEnvelope<P::Event>) {
        if let Err(error) = block_on(self.projection.handle(envelope)) {
            panic!(
                "the projection failed on event {} of stream `{}`: {error}\n{error:?}",
                envelope.version, envelope.stream_id
            );
        }
    }

    /// Expects the view that `view` reads from the projection to equal `expected`.
    ///
    /// # Panics
    ///
    /// With a diff, if they differ.
    #[track_caller]
    #[allow(
        clippy::needless_pass_by_value,
        reason = "the expected view is usually built inline, so by value reads naturally"
    )]
    pub fn then_expect<V: PartialEq + Debug>(self, view: impl FnOnce(&P) -> V, expected: V) -> P {
        let actual = view(&self.projection);
        if actual != expected {
            panic!(
                "the projection built another view than expected\n{}",
                debug_diff(&expected, &actual)
            );
        }
        self.projection
    }

    /// The projection, for checks of your own.
    pub fn into_projection(self) -> P {
        self.projection
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::personal::fixture::Registered;

    #[derive(Debug, Default)]
    struct Names(Vec<String>);

    impl Projection for Names {
        type Event = Registered;
        type Error = std::convert::Infallible;

        fn name(&self) -> &'static str {
            "names"
        }

        async fn handle(
            &mut self,
            envelope: &EventEnvelope<Registered>,
        ) -> Result<(), Self::Error> {
            self.0.push(envelope.event.name.clone());
            Ok(())
        }
    }

    #[test]
    fn events_given_after_a_forgetting_are_shown_redacted() {
        ProjectionFixture::new(Names::default())
            .given("customer-c1", [Registered::of("c1", "Ada")])
            .given_forgotten("c1")
            .given(
                "customer-c1",
                [Registered::of("c1", "Ada"), Registered::of("c2", "Bob")],
            )
            .then_expect(
                |names| names.0.clone(),
                vec!["Ada".to_owned(), "(forgotten)".to_owned(), "Bob".to_owned()],
            );
    }
}
