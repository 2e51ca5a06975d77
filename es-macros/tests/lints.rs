//! The derives' output is clean under strict lints, so users who deny them are not forced to
//! allow anything because of us. Run under clippy (`cargo clippy --all-targets`) for the
//! clippy groups to take effect; rustc's lints apply to every `cargo test`.

#![deny(
    warnings,
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    unused_qualifications,
    unused_results,
    unused_lifetimes,
    single_use_lifetimes,
    elided_lifetimes_in_paths,
    trivial_casts,
    trivial_numeric_casts,
    variant_size_differences,
    clippy::all,
    clippy::pedantic,
    clippy::nursery,
    clippy::alloc_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::std_instead_of_core,
    clippy::clone_on_ref_ptr,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::missing_docs_in_private_items,
    clippy::absolute_paths,
    clippy::pattern_type_mismatch,
    clippy::shadow_unrelated,
    clippy::wildcard_enum_match_arm,
    clippy::question_mark_used
)]

use es_core::{Aggregate, AggregateType, DomainEvent};
use serde::{Deserialize, Serialize};

/// Events with every variant shape, field attributes, and versions.
#[derive(Debug, Clone, PartialEq, Eq, DomainEvent)]
pub enum LintedEvent {
    /// A struct variant without serde attributes (borrowed payload view).
    Opened {
        /// Who opened it.
        owner: String,
    },
    /// A struct variant with one field, so a helper lifetime is used once.
    Named {
        /// The name.
        name: String,
    },
    /// A struct variant with serde attributes (owned payload helper).
    #[event(name = "FundsDeposited", version = 2)]
    Deposited {
        /// How much.
        #[serde(rename = "amountCents")]
        amount: u64,
        /// Optional note.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// A newtype variant.
    Renamed(String),
    /// A newtype variant with a serde attribute (owned payload helper).
    Tagged(#[serde(serialize_with = "serialize_tags")] Vec<String>),
    /// A variant with tags, one of them optional.
    Enrolled {
        /// Gives the tag `course:{course}`.
        #[tag(prefix = "course")]
        course: String,
        /// Gives the tag `student:{student}`, if any.
        #[tag]
        student: Option<u64>,
    },
    /// A newtype variant with a tag.
    Moved(#[tag(prefix = "course")] u32),
    /// A variant with personal fields, of each kind of subject and replacement.
    Registered {
        /// Whose data the personal fields are.
        customer: String,
        /// Reads as a text once forgotten.
        #[personal(subject = customer, forgotten = "")]
        name: String,
        /// Reads as the type's default once forgotten.
        #[personal(subject = customer, forgotten = Default)]
        age: u32,
        /// Reads as `None` once forgotten.
        #[personal(subject = "fixed:crm")]
        note: Option<String>,
    },
    /// A unit variant.
    Closed,
}

/// How [`LintedEvent::Tagged`] stores its tags: as they are. (Only `serialize_with`: serde's
/// own code for `deserialize_with` uses `?`, which `clippy::question_mark_used` denies.)
fn serialize_tags<S: serde::Serializer>(tags: &[String], serializer: S) -> Result<S::Ok, S::Error> {
    tags.serialize(serializer)
}

/// A struct event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, DomainEvent)]
#[event(name = "Pinged", version = 3)]
pub struct Ping {
    /// A counter, also a tag.
    #[tag]
    pub seq: u64,
}

/// A unit struct event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, DomainEvent)]
pub struct Heartbeat;

/// Why a command fails.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("rejected")]
pub struct Rejected;

/// An aggregate with serde and `PartialEq` (both hooks active).
#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize, AggregateType)]
#[aggregate(name = "linted", command = (), event = LintedEvent, error = Rejected, snapshot_version = 2)]
pub struct Linted {
    /// Whether it is open.
    pub open: bool,
}

/// An aggregate with neither (both hooks fall back).
#[derive(Debug, Default, AggregateType)]
#[aggregate(name = "bare", command = (), event = Heartbeat, error = Rejected, services = Services)]
pub struct Bare;

/// Services for [`Bare`].
#[derive(Debug, Default)]
pub struct Services;

impl Aggregate for Linted {
    async fn handle(&self, (): (), _services: &()) -> Result<Vec<LintedEvent>, Rejected> {
        if self.open {
            Err(Rejected)
        } else {
            Ok(vec![LintedEvent::Opened {
                owner: String::from("ada"),
            }])
        }
    }

    fn apply(&mut self, event: &LintedEvent) {
        if matches!(*event, LintedEvent::Opened { .. }) {
            self.open = true;
        }
    }
}

#[test]
fn the_linted_derives_still_work() {
    let event = LintedEvent::Deposited {
        amount: 1,
        note: None,
    };
    let payload = event.encode().unwrap();
    assert_eq!(payload, serde_json::json!({ "amountCents": 1 }));
    assert_eq!(
        LintedEvent::decode("FundsDeposited", 2, payload).unwrap(),
        event
    );
    assert_eq!(Ping { seq: 1 }.schema_version(), 3);
    assert_eq!(Ping { seq: 1 }.tags().unwrap().len(), 1);
    let enrolled = LintedEvent::Enrolled {
        course: String::from("c1"),
        student: Some(2),
    };
    assert_eq!(enrolled.tags().unwrap().len(), 2);
    assert_eq!(LintedEvent::Moved(1).tags().unwrap().len(), 1);
    assert_eq!(Heartbeat.encode().unwrap(), serde_json::json!({}));
    let personal = LintedEvent::personal_fields("Registered");
    assert_eq!(personal.len(), 3);
    assert_eq!(
        personal.get(1).map(|field| field.forgotten.value()),
        Some(serde_json::json!(0))
    );
}
