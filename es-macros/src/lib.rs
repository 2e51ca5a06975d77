//! Derive macros for [es-core](https://docs.rs/es-core): `#[derive(DomainEvent)]` and
//! `#[derive(AggregateType)]`.
//!
//! This crate is an implementation detail of es-core, which re-exports both derives at the
//! paths of their traits (`es_core::DomainEvent`, `es_core::AggregateType`) and pins this crate
//! with `=`. Depend on es-core, not on this crate. Generated code reaches es-core only
//! through its hidden `__private` module and absolute paths, so it works under any imports
//! and lints; `crate = "..."` points it elsewhere when es-core is re-exported under another
//! path.
//!
//! Mistakes in the attributes are compile errors at the offending tokens, all reported at
//! once; the derive then still emits a stub implementation, so the rest of the crate does not
//! drown in "trait not implemented" errors.

mod ast;
mod attr;
mod check;
mod ctxt;
mod expand;
mod fallback;
mod personal;
mod serde_attr;
mod symbol;
mod tag;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Derives `es_core::AggregateType` from `#[aggregate(...)]`: the aggregate's stream category
/// and its command, event, error and services types.
///
/// You write the business logic yourself, as `impl es_core::Aggregate for YourType` with
/// `async fn handle` (decide) and `fn apply` (evolve). The type must also implement
/// `Default` (the state before the first event), `Send` and `Sync`. It may be a struct or an
/// enum (a state machine); unions and generic types are rejected.
///
/// # `#[aggregate(...)]` keys
///
/// Keys may be split over several `#[aggregate(...)]` attributes; each may appear once.
///
/// | Key | Required | Meaning |
/// |-----|----------|---------|
/// | `name = "order"` | yes | The stream category: streams are named `order-<id>`. It must start with an ASCII letter and hold only ASCII letters, digits and `_` (checked at compile time), because es-core splits stream ids at the first `-`. |
/// | `command = Type` | yes | The commands `handle` decides on (`Aggregate::Command`). |
/// | `event = Type` | yes | The events it emits and applies; must implement `DomainEvent`. |
/// | `error = Type` | yes | Why `handle` rejects a command; must implement `std::error::Error`. |
/// | `services = Type` | no, default `()` | What `handle` gets as its `services` argument (a clock, a client). |
/// | `snapshot_version = N` | no, default `1` | The schema version of snapshots, from 1 to `u32::MAX`. Raise it when the state's serde shape changes, and when `apply` (or an upcaster) changes what the events make of the state: older snapshots are then ignored and the state is replayed from events. Snapshots are kept by default (every 100 events), so a fix to `apply` reaches snapshotted states only through this. |
/// | `crate = "path"` | no, default `::es_core` | Where es-core is reachable, for crates that re-export it. |
///
/// # Snapshots and state comparison, without flags
///
/// If the aggregate implements serde's `Serialize` and `Deserialize`, the generated
/// `encode_snapshot` / `decode_snapshot` store its state through serde, and snapshots work;
/// otherwise they return `None` and the aggregate is always replayed from its events. If it
/// implements `PartialEq`, the test harness compares states with it to check that `apply` is
/// deterministic. Both are detected at compile time; nothing needs to be declared.
///
/// A snapshot is the state's own serde encoding, so serde's attributes on the aggregate
/// and its fields (`rename_all`, `default`, `skip`, ...) shape it, as anywhere else. This
/// derive registers no `serde` helper attribute, so without serde's derives such an
/// attribute is the compiler's error rather than silently ignored.
///
/// # Example
///
/// ```
/// use es_core::{Aggregate, AggregateType, DomainEvent};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Clone, PartialEq, DomainEvent)]
/// enum DoorEvent {
///     Opened,
///     Closed,
/// }
///
/// #[derive(Debug, Clone)]
/// enum DoorCommand {
///     Open,
///     Close,
/// }
///
/// #[derive(Debug, PartialEq, thiserror::Error)]
/// #[error("the door is already {0}")]
/// struct DoorError(&'static str);
///
/// #[derive(Debug, Default, PartialEq, Serialize, Deserialize, AggregateType)]
/// #[aggregate(name = "door", command = DoorCommand, event = DoorEvent, error = DoorError)]
/// enum Door {
///     #[default]
///     Closed,
///     Open,
/// }
///
/// impl Aggregate for Door {
///     async fn handle(&self, command: DoorCommand, _: &()) -> Result<Vec<DoorEvent>, DoorError> {
///         match (self, command) {
///             (Door::Closed, DoorCommand::Open) => Ok(vec![DoorEvent::Opened]),
///             (Door::Open, DoorCommand::Close) => Ok(vec![DoorEvent::Closed]),
///             (Door::Open, DoorCommand::Open) => Err(DoorError("open")),
///             (Door::Closed, DoorCommand::Close) => Err(DoorError("closed")),
///         }
///     }
///
///     fn apply(&mut self, event: &DoorEvent) {
///         *self = match event {
///             DoorEvent::Opened => Door::Open,
///             DoorEvent::Closed => Door::Closed,
///         };
///     }
/// }
///
/// assert_eq!(Door::NAME, "door");
/// // Serializable, so snapshotted:
/// assert!(Door::Open.encode_snapshot().is_some());
/// ```
#[proc_macro_derive(AggregateType, attributes(aggregate))]
pub fn derive_aggregate(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::aggregate::derive(&input).into()
}

/// A signpost, not a derive: `#[derive(Aggregate)]` is a compile error that says to derive
/// [`AggregateType`](macro@AggregateType) and implement `Aggregate` by hand.
///
/// `Aggregate` is the trait holding the business logic (`handle` and `apply`), which no
/// derive can write; the derivable part, the name and types, is `AggregateType`. Without
/// this signpost, `#[derive(Aggregate)]` would fail with rustc's "not a derive macro" and
/// leave the reader to find out why.
///
/// Beside the error it expands as [`AggregateType`](macro@AggregateType) would, and takes
/// its `#[aggregate(...)]` attribute: the reader sees this one error, not a second for the
/// attribute and more for every use of the missing trait.
#[doc(hidden)]
#[proc_macro_derive(Aggregate, attributes(aggregate))]
pub fn derive_aggregate_signpost(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    let signpost = syn::Error::new_spanned(
        &input.ident,
        format!(
            "`Aggregate` is the trait you implement yourself (`handle` and `apply`); \
             derive `AggregateType` instead, the name and types from `#[aggregate(...)]`, \
             and write `impl Aggregate for {}`",
            input.ident
        ),
    )
    .to_compile_error();
    let expansion = expand::aggregate::derive(&input);
    quote::quote!(#signpost #expansion).into()
}

/// Derives `es_core::DomainEvent`: stable event type names, schema versions, and a JSON
/// encoding of each event's payload *without* a type tag (the store keeps the type name
/// beside the payload).
///
/// # On an enum: one event type per variant
///
/// Each variant is its own event type, named after the variant unless renamed. The payload
/// depends on the variant's shape:
///
/// | Variant | Payload |
/// |---------|---------|
/// | `Deposited { amount: u64 }` | the object of its fields: `{"amount": 5}` |
/// | `Renamed(String)` | the field's own encoding: `"Ada"` |
/// | `Closed` (or `Closed {}`, `Closed()`) | `{}`; decoding also accepts `null` |
///
/// A variant with two or more unnamed fields is rejected: its payload would have no field
/// names. Use a struct variant.
///
/// The enum itself needs no serde derives; only the field types must implement
/// `Serialize` and `DeserializeOwned`. `#[serde(...)]` on fields works without a serde
/// derive on the enum; on the enum or a variant it is refused (see *`#[serde(...)]`
/// attributes* below). Unknown fields in a stored payload are ignored, so adding a field
/// with `#[serde(default)]` reads older events without a version bump.
///
/// # On a struct: one event type
///
/// The struct is one event type, named after the struct unless renamed. Its payload is its
/// own serde encoding, so a struct with fields must implement `Serialize` and
/// `Deserialize` (derive them; container attributes such as `rename_all` then apply). A unit
/// struct needs no serde: its payload is `{}`, like a unit variant's, and `#[serde(...)]` on
/// it is refused.
///
/// # `#[serde(...)]` attributes
///
/// The derive does not read serde's keys itself. It copies a field's `#[serde(...)]` onto
/// the private helper it (de)serializes that variant through, and a struct with fields is
/// (de)serialized by its own serde implementation. Where neither would carry an attribute
/// to the payload, the attribute is a compile error at its tokens saying what to write
/// instead, rather than accepted and ignored:
///
/// | Placement | Applied to the payload |
/// |-----------|------------------------|
/// | a field of a struct variant | every key: `rename`, `alias`, `default`, `skip`, `skip_serializing_if`, `with`, `flatten`, ... |
/// | the field of a newtype variant | `with`, `serialize_with`, `deserialize_with`. `rename`, `alias`, `default`, `skip`, `skip_serializing`, `skip_deserializing`, `skip_serializing_if` and `flatten` are **refused**: the payload is the field's own encoding, with no name, never missing (serde ignores them on a newtype) |
/// | the event enum | none: **refused**, whatever the key (`rename_all`, `rename_all_fields`, `tag`, `untagged`, `deny_unknown_fields`, ...) |
/// | a variant | none: **refused** (for `rename` and `alias`, use `#[event(name)]` and `#[event(alias)]`; put `with` on the field) |
/// | a struct event with fields, and its fields | every key, by the struct's own serde derive |
/// | a struct event without fields | none: **refused**; its payload is always `{}` |
///
/// Refused placements stay refused when the enum also derives `Serialize` or
/// `Deserialize`: serde would apply them to its own, tagged encoding, which is never stored
/// (keep that encoding on a separate type if it needs them). To give one event type
/// container attributes such as `rename_all` or `deny_unknown_fields`, let its variant wrap
/// a struct that carries them: `Opened(Opened)` stores `Opened`'s own serde encoding. A
/// struct event that implements serde by hand should carry no `#[serde(...)]`: nothing would
/// read it, and the derive cannot see whether serde's derive is there.
///
/// # `#[event(...)]` keys
///
/// | Where | Key | Meaning |
/// |-------|-----|---------|
/// | variant, or struct | `name = "FundsDeposited"` | The stored event type name (default: the variant's or struct's name). Not empty, no whitespace or control characters, unique within the enum. |
/// | variant, or struct | `version = N` | The payload's schema version, from 1 (the default) to `u32::MAX`. Older stored versions decode through `upcast` steps; others are `DecodeError::UnsupportedVersion`. |
/// | variant, or struct | `alias = "OldName"` | A name this event type was stored under before a rename; repeatable. Stored events under it decode as this type (through its `upcast` steps). Unique like names. |
/// | variant, or struct | `upcast(from = N, with = path)` | A step on the JSON from stored version `N` (below `version`): `fn(RawEvent) -> Result<RawEvent, UpcastError>`, returning the event at a later version, or under another type name (to split an old type in two). Repeatable, one per version; steps chain until a current name and version decodes. |
/// | variant, or struct | `upcast(from = N, typed = Type)` | A typed step: the payload of version `N` decodes as `Type` (`Deserialize`), converted into the event with `From<Type>`. Ends the chain. |
/// | enum or struct | `crate = "path"` | Where es-core is reachable (default `::es_core`), for crates that re-export it. |
///
/// `#[event]` on a field is an error: use `#[serde(...)]` there. Generic types and unions
/// are rejected, since events are stored data decoded into owned `'static` values.
///
/// # `#[tag]` fields: tags from what an event says
///
/// A field marked `#[tag]` gives the event the [tag](https://docs.rs/es-core/latest/es_core/struct.Tag.html)
/// `key:{value}`, which queries and conditional appends select it by. The derived
/// `DomainEvent::tags` returns them, and stores add them to the event's `Metadata::tags`
/// when they append it, so a stored event shows them beside any set in its metadata.
///
/// | Attribute | Tag |
/// |-----------|-----|
/// | `#[tag] student: StudentId` | `student:{student}`: the key is the field's Rust name (`r#type` gives `type`) |
/// | `#[tag(prefix = "course")] id: CourseId` | `course:{id}` |
/// | `#[tag] cohort: Option<String>` | `cohort:{value}` when `Some(value)`, none when `None` |
/// | `Renamed(#[tag(prefix = "course")] CourseId)` | `course:{0}`: an unnamed field needs a `prefix` |
///
/// - **The value** is the field's `Display`; a type without one is a compile error at the
///   field's type. A value that makes no valid tag (a control character, more than 255
///   bytes with its key) is no panic: `tags()` returns the `TagError` (which names the key,
///   never the value), and the append fails with `AppendError::InvalidTag`.
/// - **The key** is the Rust field name or the `prefix`, never serde's name for the field:
///   `#[serde(rename)]` and `rename_all` shape the stored JSON, tags are what queries name
///   in Rust (`Tag::pair("course", id)`). The key is stored with every event, so renaming a
///   field changes the tags of the events appended after; pin the key with `prefix` where
///   it must outlive the field's name. A prefix is checked at compile time: not empty, no
///   `:` (which separates key and value), no control character.
/// - **`Option`** is recognised by its syntax, as serde recognises it: the last path
///   segment is `Option` with one type argument (`Option<T>`, `std::option::Option<T>`).
///   An alias of it is not, and then needs `Display` itself.
/// - **Where:** on the named fields of a struct event and of struct variants, and on
///   unnamed fields (newtype variants, tuple structs) with a `prefix`. Several fields may
///   give tags, even under one key (`#[tag(prefix = "student")]` on `from` and `to`); one
///   field gives one tag (`#[tag]` twice is an error). `#[tag]` on an enum, a variant or
///   a struct itself is an error: a fixed tag goes in the event's metadata
///   (`Metadata::with_tag`).
/// - **Not on a field serde skips** (`skip`, `skip_serializing`, `skip_deserializing`): the
///   event read back would hold another value than its stored tag, so its `tags()` would
///   disagree with the store. `skip_serializing_if` is fine.
///
/// Tags are stored and indexed in the clear: tag with the ids of things, never with
/// personal data such as an email address.
///
/// ```
/// use es_core::{DomainEvent, Tag};
///
/// #[derive(Debug, Clone, PartialEq, DomainEvent)]
/// enum CourseEvent {
///     Defined {
///         #[tag(prefix = "course")]
///         id: String,
///         capacity: u32,
///     },
///     StudentSubscribed {
///         #[tag(prefix = "course")]
///         course: String,
///         #[tag]
///         student: u64,
///         #[tag]
///         #[serde(default, skip_serializing_if = "Option::is_none")]
///         cohort: Option<String>,
///     },
///     Closed,
/// }
///
/// let subscribed = CourseEvent::StudentSubscribed {
///     course: "c1".into(),
///     student: 42,
///     cohort: None,
/// };
/// assert_eq!(subscribed.tags()?, [Tag::pair("course", "c1")?, Tag::new("student:42")?]);
/// assert!(CourseEvent::Closed.tags()?.is_empty());
///
/// // A value that makes no valid tag is an error, not a panic.
/// let defined = CourseEvent::Defined { id: "c\n1".into(), capacity: 3 };
/// assert!(defined.tags().is_err());
/// # Ok::<(), es_core::TagError>(())
/// ```
///
/// # `#[personal(...)]` fields: personal data that can be forgotten
///
/// A field marked `#[personal(...)]` holds personal data of a *data subject*. The derived
/// `DomainEvent::personal_fields(event_type)` describes such fields
/// ([`es_core::personal::PersonalField`](https://docs.rs/es-core/latest/es_core/personal/struct.PersonalField.html)),
/// in declaration order, so that a store that protects personal data encrypts each one under
/// its subject's key, and shows the declared replacement once the subject is forgotten. The
/// attribute changes nothing in the payload itself.
///
/// | Key | Meaning |
/// |-----|---------|
/// | `subject = customer_id` | The subject is the value of another named field of the same payload (`SubjectSource::Field`, holding that field's payload key). |
/// | `subject = "fixed:crm"` | A fixed subject, here `crm` (`SubjectSource::Fixed`). A string without `fixed:`, or with nothing after it, is an error. |
/// | `forgotten = "text"` | Once forgotten, the field reads as this text (`Forgotten::Text`), for a field that reads a string. |
/// | `forgotten = Default` | Once forgotten, the field reads as its type's `Default`, encoded with its `Serialize` (`Forgotten::TypeDefault`; `null` if that encoding fails). The type must implement `Default` and `Serialize`; a `#[serde(with)]` on the field is not applied to it. |
/// | no `forgotten` | Only for an `Option` field (recognised by its syntax, as for `#[tag]`), which reads as `None` (`Forgotten::Null`). Any other type is an error saying to add `forgotten`. |
///
/// - **The key** is the one serde writes the field under: its `#[serde(rename = "...")]`
///   (or `rename(serialize = "...")`), else its name (`r#type` gives `type`). The same goes
///   for the subject field. A struct event's container `#[serde(rename_all)]` is refused
///   when it has personal fields: the derive would not find the converted keys.
/// - **Where:** on named fields of a struct event or of struct variants, whose payload is an
///   object; on an unnamed field, a variant, an enum or a struct itself it is an error.
/// - **The subject field** is another named field of the same variant or struct, not
///   `#[personal]` itself (it is read in the clear to find the key).
/// - **Stored as it is:** a personal field or its subject field cannot be
///   `#[serde(skip)]`, `skip_serializing`, `skip_deserializing`, `skip_serializing_if` or
///   `flatten` (a protecting store refuses a payload missing one; a `None` is stored as
///   `null`), and a personal field cannot be a `#[tag]`: tags are stored in the clear.
/// - **Event type names:** `personal_fields` answers for the current names only; an
///   `#[event(alias)]` or an unknown name gives no fields.
///
/// ```
/// use es_core::DomainEvent;
/// use es_core::personal::{Forgotten, SubjectSource};
/// use serde_json::json;
///
/// #[derive(Debug, Clone, PartialEq, DomainEvent)]
/// enum CustomerEvent {
///     Registered {
///         customer_id: String,
///         #[personal(subject = customer_id, forgotten = "(forgotten)")]
///         name: String,
///         #[personal(subject = customer_id)]
///         #[serde(rename = "phoneNumber")]
///         phone: Option<String>,
///         #[personal(subject = customer_id, forgotten = Default)]
///         year_of_birth: u16,
///     },
///     NoteTaken {
///         #[personal(subject = "fixed:crm", forgotten = "")]
///         note: String,
///     },
///     Closed,
/// }
///
/// let fields = CustomerEvent::personal_fields("Registered");
/// assert_eq!(fields.len(), 3);
/// assert_eq!(fields[0].key, "name");
/// assert_eq!(fields[0].subject, SubjectSource::Field("customer_id"));
/// assert_eq!(fields[0].forgotten, Forgotten::Text("(forgotten)"));
/// assert_eq!(fields[1].key, "phoneNumber");
/// assert_eq!(fields[1].forgotten, Forgotten::Null);
/// assert_eq!(fields[2].forgotten.value(), json!(0));
///
/// let note = CustomerEvent::personal_fields("NoteTaken");
/// assert_eq!(note[0].subject, SubjectSource::Fixed("crm"));
/// assert!(CustomerEvent::personal_fields("Closed").is_empty());
/// assert!(CustomerEvent::personal_fields("Unknown").is_empty());
/// ```
///
/// # Decoding
///
/// `decode(event_type, schema_version, payload)` (and `decode_json`, from text) decodes a
/// current name and version directly. Anything else is upcast first: an alias becomes the
/// current name, then the `upcast` step for the stored version runs, and so on until a
/// current name and version decodes. Every read of every store goes through `decode`, so
/// stream reads, aggregate loads, the global log, subscriptions and projections all see
/// upcast events; stored events are never rewritten. Failures are
/// `DecodeError::UnknownEventType`, `DecodeError::UnsupportedVersion` (no step from that
/// version), `DecodeError::Upcast` (a step failed, naming the type and version it read),
/// `DecodeError::UpcastLoop` and `DecodeError::InvalidPayload` (with a `PayloadError` as
/// its source: what serde reported, without the stored values). `EVENT_TYPES` lists every name in declaration order, then the aliases.
///
/// ```
/// use es_core::{DomainEvent, RawEvent, UpcastError};
/// use serde_json::json;
///
/// /// Version 1 called the carrier `by`.
/// fn shipped_v1(event: RawEvent) -> Result<RawEvent, UpcastError> {
///     Ok(event.rename_field("by", "carrier")?.with_version(2))
/// }
///
/// #[derive(Debug, Clone, PartialEq, DomainEvent)]
/// enum OrderEvent {
///     #[event(name = "OrderShipped", version = 2, alias = "Shipped", upcast(from = 1, with = shipped_v1))]
///     Shipped { carrier: String },
/// }
///
/// let old = OrderEvent::decode("Shipped", 1, json!({ "by": "ups" }))?;
/// assert_eq!(old, OrderEvent::Shipped { carrier: "ups".into() });
/// # Ok::<(), es_core::DecodeError>(())
/// ```
///
/// # Example
///
/// ```
/// use es_core::DomainEvent;
/// use serde_json::json;
///
/// #[derive(Debug, Clone, PartialEq, DomainEvent)]
/// enum AccountEvent {
///     Opened { owner: String },
///     #[event(name = "FundsDeposited", version = 2)]
///     Deposited {
///         amount: u64,
///         #[serde(default, skip_serializing_if = "Option::is_none")]
///         note: Option<String>,
///     },
///     Renamed(String),
///     Closed,
/// }
///
/// let event = AccountEvent::Deposited { amount: 5, note: None };
/// assert_eq!(event.event_type(), "FundsDeposited");
/// assert_eq!(event.schema_version(), 2);
/// assert_eq!(event.encode()?, json!({ "amount": 5 }));
/// assert_eq!(AccountEvent::decode("FundsDeposited", 2, json!({ "amount": 5 }))?, event);
/// assert_eq!(AccountEvent::Renamed("Ada".into()).encode()?, json!("Ada"));
/// assert_eq!(AccountEvent::Closed.encode()?, json!({}));
/// assert_eq!(
///     AccountEvent::EVENT_TYPES,
///     ["Opened", "FundsDeposited", "Renamed", "Closed"]
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[proc_macro_derive(DomainEvent, attributes(event, serde, tag, personal))]
pub fn derive_domain_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::domain_event::derive(&input).into()
}

/// Derives `es_core::EventSchema` (es-core feature `schema`) beside `DomainEvent`: for each
/// event type, its stored name, schema version, Rust name, doc comment, aliases, the older
/// versions its `upcast` steps read, and the JSON Schema of its payload.
///
/// The payload schema is [schemars](https://docs.rs/schemars)' `JsonSchema` of the payload
/// exactly as `DomainEvent` stores it: a struct variant's fields as an object, a newtype
/// variant's field's own schema, `{}` for a unit variant, a struct event's own fields and
/// container attributes. Field attributes carry over as they do for the stored payload:
/// `#[serde(...)]` (`rename`, `default`, `skip`, `flatten`, ...), doc comments (the fields'
/// descriptions), and `#[schemars(...)]`, which this derive accepts on fields for what
/// schemars alone needs (`#[schemars(with = "String")]` for a field type without a schema).
/// schemars reads serde's `with = "module"` as a *type*, so a field stored through
/// `#[serde(with = "module")]` also needs `#[schemars(with = "Type")]` naming what the
/// stored value looks like.
///
/// Every field type must implement `schemars::JsonSchema`; one that does not is a compile
/// error at the field's type. The `#[event(...)]` keys are `DomainEvent`'s: mistakes in them
/// are reported once, by that derive.
///
/// ```
/// use es_core::{DomainEvent, EventSchema};
///
/// #[derive(Debug, Clone, DomainEvent, EventSchema)]
/// enum AccountEvent {
///     /// An account was opened.
///     Opened {
///         /// Who owns it.
///         owner: String,
///         #[serde(default)]
///         nickname: Option<String>,
///     },
/// }
///
/// let mut generator = schemars::SchemaGenerator::default();
/// let opened = &AccountEvent::describe(&mut generator)[0];
/// let schema = opened.payload().as_value();
/// assert_eq!(schema["properties"]["owner"]["description"], "Who owns it.");
/// assert_eq!(schema["required"], serde_json::json!(["owner"]));
/// ```
#[proc_macro_derive(EventSchema, attributes(event, serde, schemars))]
pub fn derive_event_schema(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::event_schema::derive(&input).into()
}
