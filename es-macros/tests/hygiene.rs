//! The derives' output compiles wherever a user puts it: with prelude names shadowed, with
//! no prelude at all, and next to modules named like the crates it uses. It reaches
//! everything through absolute paths (`::core::...`, `::es_core::__private::...`).

/// Every prelude name the generated code could be tempted to use, shadowed by a local item
/// of the same name, plus modules named like the crates it reaches.
mod shadowed {
    #![allow(dead_code, non_camel_case_types, clippy::upper_case_acronyms)]

    use ::es_core::{Aggregate, AggregateType, DomainEvent};

    struct Result;
    struct Ok;
    struct Err;
    struct Option;
    struct Some;
    struct None;
    struct Vec;
    struct String;
    struct Box;
    struct Value;
    trait Clone {}
    trait Default {}
    trait Serialize {}
    trait Deserialize {}
    trait PartialEq {}
    mod core {}
    mod std {}
    mod serde {}
    mod serde_json {}
    mod es_core {}
    mod __private {}
    struct __Payload;
    struct Probe;
    struct Tag;
    struct TagError;
    struct PersonalField;
    struct SubjectSource;
    struct Forgotten;
    struct FIELDS;
    mod personal {}

    #[derive(
        Debug,
        ::core::clone::Clone,
        ::core::cmp::PartialEq,
        ::serde::Serialize,
        ::serde::Deserialize,
        DomainEvent,
    )]
    pub(crate) enum Event {
        Named {
            #[tag]
            text: ::std::string::String,
            #[tag(prefix = "m")]
            #[serde(default, skip_serializing_if = "::std::option::Option::is_none")]
            maybe: ::std::option::Option<::core::primitive::u32>,
        },
        Newtype(::std::vec::Vec<::core::primitive::u8>),
        #[event(name = "Renamed", version = 2)]
        Unit,
        Boxed {
            inner: ::std::boxed::Box<Self>,
        },
        Personal {
            who: ::std::string::String,
            #[personal(subject = who, forgotten = Default)]
            age: ::core::primitive::u32,
            #[personal(subject = "fixed:x")]
            note: ::std::option::Option<::std::string::String>,
        },
    }

    #[derive(
        Debug,
        ::core::clone::Clone,
        ::core::cmp::PartialEq,
        ::serde::Serialize,
        ::serde::Deserialize,
        DomainEvent,
    )]
    pub(crate) struct StructEvent {
        #[tag]
        pub(crate) n: ::core::primitive::u64,
    }

    #[derive(Debug, ::core::clone::Clone, DomainEvent)]
    pub(crate) struct UnitEvent;

    #[derive(
        Debug,
        ::core::default::Default,
        ::core::cmp::PartialEq,
        ::serde::Serialize,
        ::serde::Deserialize,
        AggregateType,
    )]
    #[aggregate(name = "shadowed", command = (), event = Event, error = ::std::io::Error)]
    pub(crate) struct State {
        pub(crate) n: ::core::primitive::u64,
    }

    impl Aggregate for State {
        async fn handle(
            &self,
            (): (),
            (): &(),
        ) -> ::core::result::Result<::std::vec::Vec<Event>, ::std::io::Error> {
            ::core::result::Result::Ok(::std::vec![Event::Unit])
        }

        fn apply(&mut self, _: &Event) {
            self.n += 1;
        }
    }

    pub(crate) fn name() -> &'static ::core::primitive::str {
        <State as AggregateType>::NAME
    }
}

/// Primitive type names shadowed. Kept apart from the module above because serde's own
/// derive output names `str` unqualified, so the variants here avoid the serde helpers
/// (unit and attribute-free newtype variants use es-core's functions directly).
mod primitives_shadowed {
    #![allow(dead_code, non_camel_case_types)]

    use ::es_core::{AggregateType, DomainEvent};

    struct u32;
    struct u8;
    struct str;
    struct bool;

    #[derive(Debug, ::core::clone::Clone, ::core::cmp::PartialEq, DomainEvent)]
    pub(crate) enum Event {
        #[event(version = 7)]
        Unit,
        Newtype(::core::primitive::u8),
    }

    #[derive(Debug, ::core::clone::Clone, DomainEvent)]
    pub(crate) struct UnitEvent;

    #[derive(Debug, ::core::default::Default, ::core::cmp::PartialEq, AggregateType)]
    #[aggregate(name = "primitive", command = (), event = Event, error = ::std::io::Error, snapshot_version = 2)]
    pub(crate) struct State;
}

/// No prelude at all: not even `Option` or `Clone` by their short names.
#[no_implicit_prelude]
mod without_prelude {
    use ::es_core::{AggregateType, DomainEvent};

    #[derive(::core::fmt::Debug, ::core::clone::Clone, ::core::cmp::PartialEq, DomainEvent)]
    pub(crate) enum Event {
        Named {
            #[tag]
            text: ::std::string::String,
            #[personal(subject = text, forgotten = Default)]
            #[serde(default)]
            count: ::core::primitive::u32,
        },
        Newtype(#[tag(prefix = "n")] ::core::primitive::i64),
        Unit,
    }

    #[derive(
        ::core::fmt::Debug, ::core::default::Default, ::core::cmp::PartialEq, AggregateType,
    )]
    #[aggregate(name = "bare", command = (), event = Event, error = ::std::io::Error, services = ::std::string::String)]
    pub(crate) struct State;
}

use es_core::{AggregateType, DomainEvent};
use serde_json::json;

#[test]
fn shadowed_names_do_not_change_the_generated_code() {
    use shadowed::Event;

    let event = Event::Named {
        text: "x".into(),
        maybe: None,
    };
    assert_eq!(event.encode().unwrap(), json!({ "text": "x" }));
    let tags: Vec<String> = event
        .tags()
        .unwrap()
        .iter()
        .map(|t| t.to_string())
        .collect();
    assert_eq!(tags, ["text:x"]);
    assert_eq!(shadowed::StructEvent { n: 1 }.tags().unwrap().len(), 1);
    assert_eq!(
        Event::decode("Named", 1, json!({ "text": "x" })).unwrap(),
        event
    );
    assert_eq!(Event::Unit.event_type(), "Renamed");
    assert_eq!(Event::Unit.schema_version(), 2);
    assert_eq!(Event::Newtype(vec![1]).encode().unwrap(), json!([1]));
    let boxed = Event::Boxed {
        inner: Box::new(Event::Unit),
    };
    assert_eq!(
        Event::decode("Boxed", 1, boxed.encode().unwrap()).unwrap(),
        boxed
    );
    assert_eq!(
        shadowed::StructEvent { n: 1 }.encode().unwrap(),
        json!({ "n": 1 })
    );
    assert_eq!(shadowed::UnitEvent.encode().unwrap(), json!({}));
    assert_eq!(shadowed::name(), "shadowed");
    let personal = Event::personal_fields("Personal");
    assert_eq!(personal.len(), 2);
    assert_eq!(personal[0].forgotten.value(), json!(0));
    assert!(shadowed::State { n: 1 }.encode_snapshot().is_some());
}

#[test]
fn shadowed_primitives_do_not_change_the_generated_code() {
    use primitives_shadowed::{Event, State, UnitEvent};

    assert_eq!(Event::Unit.schema_version(), 7);
    assert_eq!(Event::Newtype(3).encode().unwrap(), json!(3));
    assert_eq!(
        Event::decode("Newtype", 1, json!(3)).unwrap(),
        Event::Newtype(3)
    );
    assert_eq!(UnitEvent.event_type(), "UnitEvent");
    assert_eq!(State::SNAPSHOT_VERSION, 2);
    assert_eq!(State.__state_eq(&State), Some(true));
}

#[test]
fn the_derives_work_without_a_prelude() {
    use without_prelude::{Event, State};

    assert_eq!(Event::EVENT_TYPES, ["Named", "Newtype", "Unit"]);
    assert_eq!(
        Event::decode("Named", 1, json!({ "text": "t" })).unwrap(),
        Event::Named {
            text: "t".into(),
            count: 0
        }
    );
    assert_eq!(Event::Newtype(-1).tags().unwrap()[0].as_str(), "n:-1");
    assert_eq!(
        Event::personal_fields("Named")[0].forgotten.value(),
        json!(0)
    );
    assert_eq!(State::NAME, "bare");
    assert!(State.encode_snapshot().is_none());
    assert_eq!(State.__state_eq(&State), Some(true));
}
