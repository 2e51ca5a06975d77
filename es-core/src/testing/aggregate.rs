//! The given/when/then harness for aggregates.

use std::fmt::{self, Debug};

use crate::aggregate::{Aggregate, AggregateType};
use crate::event::{DomainEvent, RawEvent};

use super::block_on::block_on;
use super::diff::debug_diff;

/// Starts an aggregate test from the aggregate type: `Order::test()`.
///
/// Implemented for every [`Aggregate`]; brought into scope by `es_core::prelude::*` when the
/// `testing` feature is on.
pub trait AggregateTestExt: Aggregate {
    /// A test with default services.
    fn test() -> AggregateFixture<Self>
    where
        Self::Services: Default,
    {
        AggregateFixture::new()
    }

    /// A test whose command handler gets `services` (mocks, fixed clocks).
    fn test_with_services(services: Self::Services) -> AggregateFixture<Self> {
        AggregateFixture::with_services(services)
    }
}

impl<A: Aggregate> AggregateTestExt for A {}

/// An aggregate test before its history is given.
pub struct AggregateFixture<A: Aggregate> {
    services: A::Services,
}

impl<A: Aggregate> Debug for AggregateFixture<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AggregateFixture")
            .field("aggregate", &A::NAME)
            .finish_non_exhaustive()
    }
}

impl<A: Aggregate> Default for AggregateFixture<A>
where
    A::Services: Default,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<A: Aggregate> AggregateFixture<A> {
    /// A test with default services.
    pub fn new() -> Self
    where
        A::Services: Default,
    {
        Self::with_services(A::Services::default())
    }

    /// A test whose command handler gets `services`.
    pub fn with_services(services: A::Services) -> Self {
        Self { services }
    }

    /// The aggregate's past: these events happened, in this order.
    pub fn given(self, events: impl IntoIterator<Item = A::Event>) -> Given<A> {
        Given {
            services: self.services,
            history: events.into_iter().collect(),
        }
    }

    /// The aggregate's past as an older version of the application stored it: each event
    /// is upcast to today's type first, as a store would on reading it.
    ///
    /// # Panics
    ///
    /// Panics, naming the event, if one does not upcast.
    #[track_caller]
    pub fn given_stored(self, events: impl IntoIterator<Item = RawEvent>) -> Given<A> {
        let history = events
            .into_iter()
            .enumerate()
            .map(|(index, raw)| {
                let (event_type, version) = (raw.event_type.clone(), raw.schema_version);
                raw.into_event::<A::Event>().unwrap_or_else(|error| {
                    panic!(
                        "given event {} (`{event_type}` v{version}) does not upcast: {error}\n{error:?}",
                        index + 1
                    )
                })
            })
            .collect::<Vec<_>>();
        self.given(history)
    }

    /// The aggregate is new: nothing happened to it yet.
    pub fn given_no_previous_events(self) -> Given<A> {
        self.given([])
    }
}

/// An aggregate test with its history, waiting for a command.
pub struct Given<A: Aggregate> {
    services: A::Services,
    history: Vec<A::Event>,
}

impl<A: Aggregate> Debug for Given<A>
where
    A::Event: Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Given")
            .field("aggregate", &A::NAME)
            .field("history", &self.history)
            .finish_non_exhaustive()
    }
}

impl<A: Aggregate> Given<A> {
    /// The given events as a reader of the store sees them once `subject` is forgotten:
    /// each personal field of that subject holds its declared replacement
    /// ([`redact`](crate::personal::redact)). Call it once per subject; the command then
    /// runs against the state those events build, as it would after the forgetting.
    ///
    /// # Panics
    ///
    /// If `subject` is not a valid [`Subject`](crate::personal::Subject), or an event's
    /// subject fields cannot be told or its replacement does not decode.
    #[track_caller]
    #[must_use]
    pub fn given_forgotten(mut self, subject: &str) -> Self {
        let forgotten = match crate::personal::Subject::new(subject) {
            Ok(subject) => subject,
            Err(error) => panic!("`{subject}` is not a subject: {error}"),
        };
        for (index, event) in self.history.iter_mut().enumerate() {
            match crate::personal::redact(event, |subject| *subject == forgotten) {
                Ok(redacted) => *event = redacted,
                Err(error) => panic!(
                    "given event {} (`{}`) cannot be redacted: {error}\n{error:?}",
                    index + 1,
                    event.event_type()
                ),
            }
        }
        self
    }
}

impl<A> Given<A>
where
    A: Aggregate + Debug,
    A::Event: Debug + PartialEq,
{
    /// Runs `command` against the state the history builds, on this thread.
    ///
    /// Use [`Given::when_async`] instead when the services need a Tokio runtime.
    ///
    /// # Panics
    ///
    /// Panics if the aggregate accepts the command but breaks a rule of event sourcing (see
    /// the [module docs](crate::testing)).
    #[track_caller]
    pub fn when(self, command: A::Command) -> Then<A> {
        let state = fold::<A>(&self.history, &[]);
        let result = block_on(state.handle(command, &self.services));
        Then::checked(self.history, result)
    }

    /// Runs `command` against the state the history builds, in the caller's runtime.
    ///
    /// # Panics
    ///
    /// As [`Given::when`].
    pub async fn when_async(self, command: A::Command) -> Then<A> {
        let state = fold::<A>(&self.history, &[]);
        let result = state.handle(command, &self.services).await;
        Then::checked(self.history, result)
    }
}

/// What the command did, ready for expectations.
#[must_use = "a test without a `then_*` expectation checks nothing about the outcome"]
pub struct Then<A: Aggregate> {
    history: Vec<A::Event>,
    result: Result<Vec<A::Event>, A::Error>,
}

impl<A: Aggregate> Debug for Then<A>
where
    A::Event: Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Then")
            .field("aggregate", &A::NAME)
            .field("history", &self.history)
            .field("result", &self.result)
            .finish()
    }
}

impl<A> Then<A>
where
    A: Aggregate + Debug,
    A::Event: Debug + PartialEq,
{
    #[track_caller]
    fn checked(history: Vec<A::Event>, result: Result<Vec<A::Event>, A::Error>) -> Self {
        if let Ok(emitted) = &result {
            for event in history.iter().chain(emitted) {
                check_round_trip(event);
            }
            check_state::<A>(&history, emitted);
        }
        Self { history, result }
    }

    /// Expects the command to emit exactly these events, in this order.
    ///
    /// # Panics
    ///
    /// With a diff, if the events differ or the command was rejected.
    #[track_caller]
    pub fn then_expect_events(self, expected: impl IntoIterator<Item = A::Event>) {
        let expected: Vec<A::Event> = expected.into_iter().collect();
        match self.result {
            Ok(actual) if actual == expected => {}
            Ok(actual) => panic!(
                "the command emitted other events than expected\n{}",
                debug_diff(&expected, &actual)
            ),
            Err(error) => panic!(
                "expected the command to emit events, but it was rejected: {error:?} ({error})\nexpected events: {expected:#?}"
            ),
        }
    }

    /// Expects the command to be accepted and emit nothing.
    ///
    /// # Panics
    ///
    /// If it emitted events or was rejected.
    #[track_caller]
    pub fn then_expect_no_events(self) {
        match self.result {
            Ok(actual) if actual.is_empty() => {}
            Ok(actual) => panic!("expected no events, but the command emitted: {actual:#?}"),
            Err(error) => panic!(
                "expected the command to be accepted with no events, but it was rejected: {error:?} ({error})"
            ),
        }
    }

    /// Expects the command to be rejected with exactly this error.
    ///
    /// # Panics
    ///
    /// With a diff, if it was rejected with another error or accepted.
    #[track_caller]
    #[allow(
        clippy::needless_pass_by_value,
        reason = "taking the error by value reads naturally: `.then_expect_error(OrderError::NotPaid)`"
    )]
    pub fn then_expect_error(self, expected: A::Error)
    where
        A::Error: PartialEq,
    {
        match self.result {
            Err(actual) if actual == expected => {}
            Err(actual) => panic!(
                "the command was rejected with another error than expected\n{}",
                debug_diff(&expected, &actual)
            ),
            Ok(events) => panic!(
                "expected the command to be rejected with {expected:?}, but it was accepted and emitted: {events:#?}"
            ),
        }
    }

    /// Expects the command to be rejected with an error for which `predicate` holds.
    ///
    /// ```
    /// # use es_core::prelude::*;
    /// # #[derive(Debug, Clone, PartialEq, DomainEvent)]
    /// # enum E { Happened }
    /// # #[derive(Debug, thiserror::Error)]
    /// # enum Problem { #[error("too big: {0}")] TooBig(u32) }
    /// # #[derive(Debug, Default, AggregateType)]
    /// # #[aggregate(name = "thing", command = u32, event = E, error = Problem)]
    /// # struct Thing;
    /// # impl Aggregate for Thing {
    /// #     async fn handle(&self, n: u32, _: &()) -> Result<Vec<E>, Problem> { Err(Problem::TooBig(n)) }
    /// #     fn apply(&mut self, _: &E) {}
    /// # }
    /// Thing::test()
    ///     .given_no_previous_events()
    ///     .when(7)
    ///     .then_expect_error_matching(|error| matches!(error, Problem::TooBig(n) if *n > 5));
    /// ```
    ///
    /// # Panics
    ///
    /// If the command was accepted, or the predicate fails.
    #[track_caller]
    pub fn then_expect_error_matching(self, predicate: impl FnOnce(&A::Error) -> bool) {
        match self.result {
            Err(actual) if predicate(&actual) => {}
            Err(actual) => panic!(
                "the command was rejected, but the error does not match the predicate: {actual:?} ({actual})"
            ),
            Ok(events) => panic!(
                "expected the command to be rejected, but it was accepted and emitted: {events:#?}"
            ),
        }
    }

    /// Expects the command to be accepted and hands the resulting state (history plus the
    /// emitted events, folded) to `check`.
    ///
    /// # Panics
    ///
    /// If the command was rejected; and whatever `check` panics with.
    #[track_caller]
    pub fn then_expect_state(self, check: impl FnOnce(&A)) {
        match self.result {
            Ok(emitted) => check(&fold::<A>(&self.history, &emitted)),
            Err(error) => panic!(
                "expected the command to be accepted, but it was rejected: {error:?} ({error})"
            ),
        }
    }

    /// The raw outcome, for checks the methods above do not cover.
    pub fn into_result(self) -> Result<Vec<A::Event>, A::Error> {
        self.result
    }
}

fn fold<A: Aggregate>(history: &[A::Event], emitted: &[A::Event]) -> A {
    let mut state = A::default();
    for event in history.iter().chain(emitted) {
        state.apply(event);
    }
    state
}

/// Encoding then decoding an event must give the same event, or it will not come back from
/// a real store as it went in.
#[track_caller]
pub(super) fn check_round_trip<E: DomainEvent + Debug + PartialEq>(event: &E) {
    let event_type = event.event_type();
    let version = event.schema_version();
    let payload = match event.encode() {
        Ok(payload) => payload,
        Err(error) => {
            panic!("event `{event_type}` cannot be encoded: {error:?}\nevent: {event:#?}")
        }
    };
    match E::decode(event_type, version, payload.clone()) {
        Ok(decoded) if &decoded == event => {}
        Ok(decoded) => panic!(
            "event `{event_type}` changes when encoded and decoded, so a store would not give it back as written\n{}encoded payload: {payload}",
            debug_diff(event, &decoded)
        ),
        Err(error) => panic!(
            "event `{event_type}` cannot be decoded from its own encoding: {error:?}\nencoded payload: {payload}"
        ),
    }
}

/// `apply` must be deterministic, and a snapshot must restore the state it was taken from.
#[track_caller]
fn check_state<A: Aggregate + Debug>(history: &[A::Event], emitted: &[A::Event]) {
    let first = fold::<A>(history, emitted);
    let second = fold::<A>(history, emitted);
    if states_differ(&first, &second) == Some(true) {
        panic!(
            "`apply` is not deterministic: the same events applied twice from the default state gave different states\n{}",
            debug_diff(&first, &second)
        );
    }

    let encoded = match first.encode_snapshot() {
        None => return,
        Some(Ok(encoded)) => encoded,
        Some(Err(error)) => panic!(
            "the state of `{}` cannot be encoded for a snapshot: {error}\nstate: {first:#?}",
            A::NAME
        ),
    };
    match A::decode_snapshot(encoded.clone()) {
        Some(Ok(restored)) => {
            if states_differ(&first, &restored) == Some(true) {
                panic!(
                    "the state of `{}` changes in a snapshot round trip, so loading from a snapshot would give another state\n{}snapshot: {encoded}",
                    A::NAME,
                    debug_diff(&first, &restored)
                );
            }
        }
        Some(Err(error)) => panic!(
            "the state of `{}` cannot be decoded from its own snapshot: {error}\nsnapshot: {encoded}",
            A::NAME
        ),
        None => panic!("`{}` encodes snapshots but cannot decode them", A::NAME),
    }
}

/// Compares states with `PartialEq` if the aggregate has it, else through their snapshot
/// encoding (JSON objects compare regardless of key order); `None` if neither exists.
fn states_differ<A: AggregateType>(a: &A, b: &A) -> Option<bool> {
    if let Some(equal) = a.__state_eq(b) {
        return Some(!equal);
    }
    match (a.encode_snapshot(), b.encode_snapshot()) {
        (Some(Ok(a)), Some(Ok(b))) => Some(a != b),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::personal::fixture::Registered;

    #[derive(Debug, Default, PartialEq)]
    struct Customer {
        name: String,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("no name to greet")]
    struct NoName;

    impl AggregateType for Customer {
        const NAME: &'static str = "customer";
        type Command = ();
        type Event = Registered;
        type Error = NoName;
        type Services = ();
    }

    impl Aggregate for Customer {
        async fn handle(&self, (): (), (): &()) -> Result<Vec<Registered>, NoName> {
            if self.name == "(forgotten)" {
                Err(NoName)
            } else {
                Ok(vec![])
            }
        }

        fn apply(&mut self, event: &Registered) {
            self.name.clone_from(&event.name);
        }
    }

    #[test]
    fn given_forgotten_shows_the_history_redacted() {
        Customer::test()
            .given([Registered::of("c1", "Ada")])
            .when(())
            .then_expect_no_events();
        Customer::test()
            .given([Registered::of("c1", "Ada")])
            .given_forgotten("c2")
            .when(())
            .then_expect_no_events();
        Customer::test()
            .given([Registered::of("c1", "Ada")])
            .given_forgotten("c1")
            .when(())
            .then_expect_error_matching(|NoName| true);
    }

    #[test]
    #[should_panic(expected = "is not a subject")]
    fn given_forgotten_refuses_an_invalid_subject() {
        let _ = Customer::test().given([]).given_forgotten("");
    }
}
