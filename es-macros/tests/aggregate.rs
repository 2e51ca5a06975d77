//! What `#[derive(AggregateType)]` generates: the name and types, and snapshot and comparison
//! hooks chosen by what the aggregate implements.

use std::any::TypeId;

use es_core::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, PartialEq, DomainEvent)]
enum CounterEvent {
    Incremented { by: u32 },
    Reset,
}

#[derive(Debug, Clone)]
enum CounterCommand {
    Increment { by: u32 },
    Reset,
}

#[derive(Debug, PartialEq, thiserror::Error)]
enum CounterError {
    #[error("cannot increment by zero")]
    Zero,
}

/// Serializable and comparable: snapshotted and compared.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize, AggregateType)]
#[aggregate(
    name = "counter",
    command = CounterCommand,
    event = CounterEvent,
    error = CounterError,
    snapshot_version = 3,
)]
struct Counter {
    total: u64,
}

impl Aggregate for Counter {
    async fn handle(
        &self,
        command: CounterCommand,
        (): &(),
    ) -> Result<Vec<CounterEvent>, CounterError> {
        match command {
            CounterCommand::Increment { by: 0 } => Err(CounterError::Zero),
            CounterCommand::Increment { by } => Ok(vec![CounterEvent::Incremented { by }]),
            CounterCommand::Reset if self.total == 0 => Ok(vec![]),
            CounterCommand::Reset => Ok(vec![CounterEvent::Reset]),
        }
    }

    fn apply(&mut self, event: &CounterEvent) {
        match event {
            CounterEvent::Incremented { by } => self.total += u64::from(*by),
            CounterEvent::Reset => self.total = 0,
        }
    }
}

fn type_of<T: 'static>() -> TypeId {
    TypeId::of::<T>()
}

#[test]
fn name_and_types_come_from_the_attribute() {
    assert_eq!(Counter::NAME, "counter");
    assert_eq!(Counter::SNAPSHOT_VERSION, 3);
    assert_eq!(
        type_of::<<Counter as AggregateType>::Command>(),
        type_of::<CounterCommand>()
    );
    assert_eq!(
        type_of::<<Counter as AggregateType>::Event>(),
        type_of::<CounterEvent>()
    );
    assert_eq!(
        type_of::<<Counter as AggregateType>::Error>(),
        type_of::<CounterError>()
    );
    assert_eq!(
        type_of::<<Counter as AggregateType>::Services>(),
        type_of::<()>(),
        "services default to ()"
    );
}

#[test]
fn a_serde_aggregate_is_snapshotted() {
    let state = Counter { total: 42 };
    let encoded = state.encode_snapshot().expect("snapshots are on").unwrap();
    assert_eq!(encoded, json!({ "total": 42 }));
    let decoded = Counter::decode_snapshot(encoded)
        .expect("snapshots are on")
        .unwrap();
    assert_eq!(decoded, state);
    assert!(
        Counter::decode_snapshot(json!({ "total": "many" }))
            .expect("snapshots are on")
            .is_err(),
        "a bad snapshot is an error, not a panic"
    );
}

#[test]
fn a_partial_eq_aggregate_is_compared() {
    let a = Counter { total: 1 };
    assert_eq!(a.__state_eq(&Counter { total: 1 }), Some(true));
    assert_eq!(a.__state_eq(&Counter { total: 2 }), Some(false));
}

#[test]
fn the_harness_runs_given_when_then() {
    Counter::test()
        .given([
            CounterEvent::Incremented { by: 2 },
            CounterEvent::Incremented { by: 3 },
        ])
        .when(CounterCommand::Increment { by: 4 })
        .then_expect_events([CounterEvent::Incremented { by: 4 }]);

    Counter::test()
        .given_no_previous_events()
        .when(CounterCommand::Increment { by: 0 })
        .then_expect_error(CounterError::Zero);

    Counter::test()
        .given([CounterEvent::Incremented { by: 2 }])
        .when(CounterCommand::Reset)
        .then_expect_state(|state| assert_eq!(state.total, 0));

    Counter::test()
        .given_no_previous_events()
        .when(CounterCommand::Reset)
        .then_expect_no_events();
}

#[test]
#[should_panic(expected = "the command emitted other events than expected")]
fn the_harness_fails_on_other_events() {
    Counter::test()
        .given_no_previous_events()
        .when(CounterCommand::Increment { by: 1 })
        .then_expect_events([CounterEvent::Incremented { by: 2 }]);
}

/// Neither serde nor `PartialEq`: never snapshotted, never compared, and still an aggregate.
#[derive(Debug, Default, AggregateType)]
#[aggregate(name = "plain", command = CounterCommand, event = CounterEvent, error = CounterError)]
struct Plain {
    total: u64,
}

impl Aggregate for Plain {
    async fn handle(&self, _: CounterCommand, (): &()) -> Result<Vec<CounterEvent>, CounterError> {
        Ok(vec![CounterEvent::Incremented { by: 1 }])
    }

    fn apply(&mut self, event: &CounterEvent) {
        if let CounterEvent::Incremented { by } = event {
            self.total += u64::from(*by);
        }
    }
}

#[test]
fn an_aggregate_without_serde_is_not_snapshotted() {
    assert!(Plain { total: 1 }.encode_snapshot().is_none());
    assert!(Plain::decode_snapshot(json!({ "total": 1 })).is_none());
    assert_eq!(Plain::SNAPSHOT_VERSION, 1, "the default");
}

#[test]
fn an_aggregate_without_partial_eq_is_not_compared() {
    assert_eq!(Plain { total: 1 }.__state_eq(&Plain { total: 1 }), None);
}

#[test]
fn the_harness_runs_an_aggregate_with_neither() {
    Plain::test()
        .given([CounterEvent::Incremented { by: 5 }])
        .when(CounterCommand::Reset)
        .then_expect_state(|state| assert_eq!(state.total, 6));
}

/// Only one of the two capabilities: each hook follows its own.
#[derive(Debug, Default, Serialize, Deserialize, AggregateType)]
#[aggregate(name = "serde_only", command = (), event = CounterEvent, error = CounterError)]
struct SerdeOnly {
    total: u64,
}

#[derive(Debug, Default, PartialEq, AggregateType)]
#[aggregate(name = "eq_only", command = (), event = CounterEvent, error = CounterError)]
struct EqOnly {
    total: u64,
}

#[test]
fn each_hook_follows_its_own_capability() {
    assert!(SerdeOnly { total: 1 }.encode_snapshot().is_some());
    assert_eq!(
        SerdeOnly { total: 1 }.__state_eq(&SerdeOnly { total: 1 }),
        None
    );
    assert!(EqOnly { total: 1 }.encode_snapshot().is_none());
    assert_eq!(
        EqOnly { total: 1 }.__state_eq(&EqOnly { total: 2 }),
        Some(false)
    );
}

/// A state machine as an enum, with services the handler consults.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, AggregateType)]
#[aggregate(name = "door_2", command = DoorCommand, event = DoorEvent)]
#[aggregate(error = DoorError, services = Limits)]
enum Door {
    #[default]
    Closed,
    Open {
        times: u32,
    },
}

#[derive(Debug, Clone, PartialEq, DomainEvent)]
enum DoorEvent {
    Opened,
    Closed,
}

#[derive(Debug, Clone)]
enum DoorCommand {
    Open,
    Close,
}

#[derive(Debug, PartialEq, thiserror::Error)]
enum DoorError {
    #[error("the door was opened too often")]
    WornOut,
}

/// The handler's services.
#[derive(Debug, Default)]
struct Limits {
    max_openings: u32,
}

impl Aggregate for Door {
    async fn handle(
        &self,
        command: DoorCommand,
        limits: &Limits,
    ) -> Result<Vec<DoorEvent>, DoorError> {
        match (self, command) {
            (Door::Open { times }, DoorCommand::Open) if *times >= limits.max_openings => {
                Err(DoorError::WornOut)
            }
            (Door::Closed, DoorCommand::Open) => Ok(vec![DoorEvent::Opened]),
            (Door::Open { .. }, DoorCommand::Close) => Ok(vec![DoorEvent::Closed]),
            _ => Ok(vec![]),
        }
    }

    fn apply(&mut self, event: &DoorEvent) {
        *self = match (&*self, event) {
            (Door::Closed, DoorEvent::Opened) => Door::Open { times: 1 },
            (Door::Open { times }, DoorEvent::Opened) => Door::Open { times: times + 1 },
            (_, DoorEvent::Closed) => Door::Closed,
        };
    }
}

#[test]
fn an_enum_aggregate_with_services() {
    assert_eq!(Door::NAME, "door_2");
    assert_eq!(
        type_of::<<Door as AggregateType>::Services>(),
        type_of::<Limits>()
    );
    assert_eq!(
        Door::Open { times: 2 }.encode_snapshot().unwrap().unwrap(),
        json!({ "Open": { "times": 2 } })
    );

    Door::test_with_services(Limits { max_openings: 5 })
        .given_no_previous_events()
        .when(DoorCommand::Open)
        .then_expect_events([DoorEvent::Opened]);

    Door::test_with_services(Limits { max_openings: 1 })
        .given([DoorEvent::Opened])
        .when(DoorCommand::Open)
        .then_expect_error(DoorError::WornOut);

    Door::test()
        .given([DoorEvent::Opened])
        .when(DoorCommand::Close)
        .then_expect_state(|door| assert_eq!(*door, Door::Closed));
}

#[test]
fn the_harness_catches_a_non_deterministic_apply_through_state_eq() {
    use std::sync::atomic::{AtomicU64, Ordering};

    static CALLS: AtomicU64 = AtomicU64::new(0);

    #[derive(Debug, Default, PartialEq, AggregateType)]
    #[aggregate(name = "flaky", command = (), event = CounterEvent, error = CounterError)]
    struct Flaky {
        seen: u64,
    }

    impl Aggregate for Flaky {
        async fn handle(&self, (): (), (): &()) -> Result<Vec<CounterEvent>, CounterError> {
            Ok(vec![CounterEvent::Reset])
        }

        fn apply(&mut self, _: &CounterEvent) {
            self.seen = CALLS.fetch_add(1, Ordering::Relaxed);
        }
    }

    let outcome = std::panic::catch_unwind(|| {
        Flaky::test()
            .given_no_previous_events()
            .when(())
            .then_expect_events([CounterEvent::Reset]);
    });
    let message = outcome.unwrap_err();
    let message = message
        .downcast_ref::<String>()
        .map(String::as_str)
        .unwrap_or_default();
    assert!(message.contains("not deterministic"), "{message}");
}

/// `crate = "..."`: es-core reached through a re-export.
mod facade {
    pub(crate) use es_core as es;
}

#[derive(Debug, Default, facade::es::AggregateType)]
#[aggregate(crate = "facade::es", name = "via_facade", command = (), event = CounterEvent, error = CounterError)]
struct ViaFacade;

#[test]
fn the_crate_path_is_used_for_every_reference() {
    assert_eq!(ViaFacade::NAME, "via_facade");
    assert!(ViaFacade.encode_snapshot().is_none());
}
