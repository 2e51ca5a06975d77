//! The inputs of both derives as a small model: what the expansion needs, with the original
//! syn nodes kept for spans.
//!
//! Building the model records, in the [`Ctxt`], every mistake that concerns one item on its
//! own (a bad key, a variant shape that cannot be encoded); rules across items live in
//! [`crate::check`].

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::{Attribute, Data, DeriveInput, Fields, Generics, Ident, LitStr, Path, Type};

use crate::attr::{self, AggregateAttrs, EventAttrs, EventPosition, Upcast};
use crate::ctxt::Ctxt;
use crate::personal::{self, PersonalFields};
use crate::serde_attr::{self, SerdeKey};
use crate::symbol::Symbol;
use crate::tag::{self, TaggedField};

/// The version an event or snapshot has when none is declared.
const DEFAULT_VERSION: u32 = 1;

/// The path at which generated code reaches es-core: `::es_core` unless `crate = "..."`.
pub(crate) fn crate_path(given: Option<&Path>) -> Path {
    given.cloned().unwrap_or_else(|| {
        let mut path = Path::from(Ident::new("es_core", Span::call_site()));
        path.leading_colon = Some(Default::default());
        path
    })
}

/// A `#[derive(DomainEvent)]` input.
pub(crate) struct EventInput<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) generics: &'a Generics,
    pub(crate) krate: Path,
    /// The `#[serde(...)]` keys on the enum or struct itself, which only a struct with
    /// fields honours (through its own serde implementation).
    pub(crate) serde: Vec<SerdeKey>,
    pub(crate) data: EventData<'a>,
}

pub(crate) enum EventData<'a> {
    /// One event type per variant, in declaration order.
    Enum {
        /// The variants that could be modelled (one with an unencodable shape is left out).
        variants: Vec<EventVariant<'a>>,
    },
    /// The struct is one event type.
    Struct(StructEvent<'a>),
}

/// A struct deriving `DomainEvent`.
pub(crate) struct StructEvent<'a> {
    pub(crate) name: EventName,
    pub(crate) version: u32,
    /// Older names of this event type, still decoded.
    pub(crate) aliases: Vec<LitStr>,
    /// Steps from older stored versions towards `version`.
    pub(crate) upcasts: Vec<Upcast>,
    /// A unit struct has the empty payload `{}` and needs no serde; any other struct is its
    /// own payload through its `Serialize` and `Deserialize` implementations.
    pub(crate) unit: bool,
    /// Its `#[tag]` fields.
    pub(crate) tags: Vec<TaggedField<'a>>,
    /// Its `#[personal]` fields.
    pub(crate) personal: PersonalFields<'a>,
}

/// One variant of an event enum: one event type.
pub(crate) struct EventVariant<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) name: EventName,
    pub(crate) version: u32,
    /// Older names of this event type, still decoded.
    pub(crate) aliases: Vec<LitStr>,
    /// Steps from older stored versions towards `version`.
    pub(crate) upcasts: Vec<Upcast>,
    /// The `#[serde(...)]` keys on the variant, which no payload honours.
    pub(crate) serde: Vec<SerdeKey>,
    pub(crate) shape: Shape<'a>,
    /// Its `#[tag]` fields.
    pub(crate) tags: Vec<TaggedField<'a>>,
    /// Its `#[personal]` fields.
    pub(crate) personal: PersonalFields<'a>,
}

/// An event type name and where it came from.
pub(crate) struct EventName {
    pub(crate) value: String,
    /// The `name = "..."` literal, if the name was given rather than taken from an identifier.
    pub(crate) literal: Option<LitStr>,
    /// Where to report problems with the name: the literal, or the identifier it came from.
    pub(crate) span: Span,
}

impl EventName {
    fn new(given: Option<LitStr>, ident: &Ident) -> Self {
        match given {
            Some(literal) => Self {
                value: literal.value(),
                span: literal.span(),
                literal: Some(literal),
            },
            // `r#type` is stored as `type`.
            None => Self {
                value: ident.unraw().to_string(),
                span: ident.span(),
                literal: None,
            },
        }
    }
}

/// What a variant carries, which decides its payload.
pub(crate) enum Shape<'a> {
    /// No fields (`V`, `V {}` or `V()`): the payload is `{}`.
    Unit,
    /// One unnamed field: the payload is the field's own encoding.
    Newtype(Field<'a>),
    /// Named fields: the payload is an object of them.
    Struct(Vec<Field<'a>>),
}

/// A field of a variant.
pub(crate) struct Field<'a> {
    /// `None` for the field of a newtype variant.
    pub(crate) ident: Option<&'a Ident>,
    pub(crate) ty: &'a Type,
    /// Its `#[serde(...)]` attributes, which the payload helpers carry over.
    pub(crate) serde_attrs: Vec<&'a Attribute>,
    /// The keys of those attributes, judged where the helper would ignore some (the field
    /// of a newtype variant).
    pub(crate) serde_keys: Vec<SerdeKey>,
}

impl<'a> EventInput<'a> {
    /// Models `input`; `None` if it cannot be (a union), with the reason recorded in `cx`.
    pub(crate) fn from_syn(cx: &Ctxt, input: &'a DeriveInput) -> (Option<Self>, Path) {
        let position = match input.data {
            Data::Struct(_) => EventPosition::Struct,
            Data::Enum(_) | Data::Union(_) => EventPosition::Enum,
        };
        let attrs = EventAttrs::from_attrs(cx, &input.attrs, position);
        let what = match position {
            EventPosition::Struct => "a struct",
            EventPosition::Enum | EventPosition::Variant => "an enum",
        };
        tag::reject_tag_attrs(cx, &input.attrs, what);
        personal::reject_personal_attrs(cx, &input.attrs, what);
        let krate = crate_path(attrs.krate.as_ref());

        let data = match &input.data {
            Data::Enum(data) => EventData::Enum {
                variants: data
                    .variants
                    .iter()
                    .filter_map(|variant| EventVariant::from_syn(cx, variant))
                    .collect(),
            },
            Data::Struct(data) => {
                for field in &data.fields {
                    attr::reject_event_attrs_on_field(cx, &field.attrs);
                }
                EventData::Struct(StructEvent {
                    name: EventName::new(attrs.name, &input.ident),
                    version: attrs.version.map_or(DEFAULT_VERSION, |v| v.value),
                    aliases: attrs.aliases,
                    upcasts: attrs.upcasts,
                    unit: data.fields.is_empty(),
                    tags: tag::tagged_fields(cx, &data.fields),
                    personal: personal::personal_fields(cx, &data.fields),
                })
            }
            Data::Union(data) => {
                cx.error_spanned_by(
                    data.union_token,
                    "`DomainEvent` cannot be derived for a union; use an enum (one event type \
                     per variant) or a struct",
                );
                return (None, krate);
            }
        };

        let model = Self {
            ident: &input.ident,
            generics: &input.generics,
            krate: krate.clone(),
            serde: serde_attr::serde_keys(&input.attrs),
            data,
        };
        (Some(model), krate)
    }
}

impl<'a> EventVariant<'a> {
    /// Models one variant; `None` if its shape cannot be encoded (recorded in `cx`).
    fn from_syn(cx: &Ctxt, variant: &'a syn::Variant) -> Option<Self> {
        let attrs = EventAttrs::from_attrs(cx, &variant.attrs, EventPosition::Variant);
        tag::reject_tag_attrs(cx, &variant.attrs, "a variant");
        personal::reject_personal_attrs(cx, &variant.attrs, "a variant");
        for field in &variant.fields {
            attr::reject_event_attrs_on_field(cx, &field.attrs);
        }
        let shape = match &variant.fields {
            fields if fields.is_empty() => Shape::Unit,
            Fields::Named(fields) => {
                Shape::Struct(fields.named.iter().map(Field::from_syn).collect())
            }
            Fields::Unnamed(fields) if fields.unnamed.len() == 1 => {
                Shape::Newtype(Field::from_syn(fields.unnamed.first()?))
            }
            // Several unnamed fields would have to be stored as a JSON array, whose meaning
            // depends on field order alone; reordering or inserting a field would then silently
            // misread every stored event. Named fields survive such changes.
            Fields::Unnamed(fields) => {
                cx.error_spanned_by(
                    fields,
                    format!(
                        "variant `{}` has {} unnamed fields, which would be stored without \
                         names; name them with a struct variant, like `{} {{ a: A, b: B }}`",
                        variant.ident,
                        fields.unnamed.len(),
                        variant.ident,
                    ),
                );
                return None;
            }
            Fields::Unit => Shape::Unit,
        };
        Some(Self {
            ident: &variant.ident,
            name: EventName::new(attrs.name, &variant.ident),
            version: attrs.version.map_or(DEFAULT_VERSION, |v| v.value),
            aliases: attrs.aliases,
            upcasts: attrs.upcasts,
            serde: serde_attr::serde_keys(&variant.attrs),
            shape,
            tags: tag::tagged_fields(cx, &variant.fields),
            personal: personal::personal_fields(cx, &variant.fields),
        })
    }
}

impl<'a> Field<'a> {
    fn from_syn(field: &'a syn::Field) -> Self {
        Self {
            ident: field.ident.as_ref(),
            ty: &field.ty,
            serde_attrs: serde_attr::serde_attrs(&field.attrs),
            serde_keys: serde_attr::serde_keys(&field.attrs),
        }
    }
}

/// A `#[derive(AggregateType)]` input.
pub(crate) struct AggregateInput<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) krate: Path,
    pub(crate) name: LitStr,
    pub(crate) command: Type,
    pub(crate) event: Type,
    pub(crate) error: Type,
    pub(crate) services: Option<Type>,
    pub(crate) snapshot_version: u32,
}

impl<'a> AggregateInput<'a> {
    /// Models `input`; `None` if a required key is missing or it is a union (recorded in
    /// `cx`). Also returns the attributes as read, which the fallback impl uses.
    pub(crate) fn from_syn(cx: &Ctxt, input: &'a DeriveInput) -> (Option<Self>, AggregateAttrs) {
        let attrs = AggregateAttrs::from_attrs(cx, &input.attrs);

        if let Data::Union(data) = &input.data {
            cx.error_spanned_by(
                data.union_token,
                "`AggregateType` cannot be derived for a union; an aggregate is a struct or an enum",
            );
        }

        match &attrs.first {
            None => cx.error_at(
                Span::call_site(),
                "`#[derive(AggregateType)]` needs an `#[aggregate(...)]` attribute, like \
                 `#[aggregate(name = \"order\", command = OrderCommand, event = OrderEvent, error = OrderError)]`",
            ),
            Some(first) => report_missing_keys(cx, first, &attrs.missing),
        }

        let model = match (&attrs.name, &attrs.command, &attrs.event, &attrs.error) {
            (Some(name), Some(command), Some(event), Some(error)) => Some(Self {
                ident: &input.ident,
                krate: crate_path(attrs.krate.as_ref()),
                name: name.clone(),
                command: command.clone(),
                event: event.clone(),
                error: error.clone(),
                services: attrs.services.clone(),
                snapshot_version: attrs.snapshot_version.map_or(DEFAULT_VERSION, |v| v.value),
            }),
            _ => None,
        };
        (model, attrs)
    }
}

/// One error for all required keys never written (a key written with a bad value has its own
/// error already), at the first `#[aggregate(...)]`.
fn report_missing_keys(cx: &Ctxt, first: &Attribute, missing: &[Symbol]) {
    let message = match missing {
        [] => return,
        [key] => {
            let what = match key.as_str() {
                "name" => "the stream category, like `name = \"order\"`",
                "command" => "the type of the commands it handles",
                "event" => "the type of the events it emits",
                _ => "the type of the errors it rejects commands with",
            };
            format!("`#[aggregate(...)]` is missing `{key} = ...`: {what}")
        }
        [init @ .., last] => {
            let init: Vec<String> = init.iter().map(|key| format!("`{key} = ...`")).collect();
            format!(
                "`#[aggregate(...)]` is missing {} and `{last} = ...`",
                init.join(", ")
            )
        }
    };
    cx.error_spanned_by(first, message);
}
