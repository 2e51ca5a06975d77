//! Rules across the parts of an input (and rules on values that need a reason), checked
//! after it is read. One function per rule, each saying why the rule exists.

use std::collections::HashMap;

use syn::{Generics, LitStr};

use crate::ast::{EventData, EventInput, EventName};
use crate::ctxt::Ctxt;

/// Every rule for `#[derive(DomainEvent)]`.
pub(crate) fn domain_event(cx: &Ctxt, input: &EventInput<'_>) {
    no_generics(
        cx,
        input.generics,
        "an event type",
        "events are stored data, decoded back into owned `'static` values by type name alone",
    );
    match &input.data {
        EventData::Enum { variants } => {
            enum_has_variants(cx, input, variants.is_empty());
            for variant in variants {
                event_name_is_exact(cx, &variant.name);
            }
            event_names_are_unique(cx, input);
        }
        EventData::Struct(event) => event_name_is_exact(cx, &event.name),
    }
}

/// Every rule for `#[derive(Aggregate)]`. Takes the parts rather than the model, so the rules
/// run even when a missing key keeps the model from being built.
pub(crate) fn aggregate(cx: &Ctxt, generics: &Generics, name: Option<&LitStr>) {
    no_generics(
        cx,
        generics,
        "an aggregate",
        "its streams are named by one category (`name`), which every instantiation would share",
    );
    if let Some(name) = name {
        aggregate_name_is_a_category(cx, name);
    }
}

/// Generic parameters (lifetimes, types or consts) are rejected.
///
/// Why: an event is stored and later decoded from its type name, version and payload alone,
/// so it must be an owned `'static` type whose shape does not depend on a parameter; and an
/// aggregate's stream category is one constant string, so two instantiations would write to
/// the same streams with different event types.
fn no_generics(cx: &Ctxt, generics: &Generics, what: &str, why: &str) {
    if !generics.params.is_empty() {
        cx.error_spanned_by(
            generics,
            format!("{what} cannot have generic parameters: {why}"),
        );
    }
}

/// An event enum has at least one variant.
///
/// Why: an enum without variants has no value to encode and no event type to decode, so a
/// stream could never hold one; it is almost certainly unfinished code.
fn enum_has_variants(cx: &Ctxt, input: &EventInput<'_>, empty: bool) {
    if empty {
        cx.error_spanned_by(
            input.ident,
            "an event enum needs at least one variant: each variant is one event type",
        );
    }
}

/// An event type name is not empty and holds no whitespace or control characters.
///
/// Why: the name is stored beside every event and matched exactly when decoding and when
/// projections filter; an empty name matches nothing meaningful, and whitespace or control
/// characters are invisible in logs and SQL output, so two names that look the same would
/// not be.
fn event_name_is_exact(cx: &Ctxt, name: &EventName) {
    let Some(literal) = &name.literal else {
        // Taken from an identifier, which is never empty and holds no whitespace.
        return;
    };
    if name.value.is_empty() {
        cx.error_spanned_by(literal, "an event type name cannot be empty");
    } else if name
        .value
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        cx.error_spanned_by(
            literal,
            format!(
                "event type name {:?} contains whitespace or control characters; stored names \
                 must read the same in logs and queries as in code",
                name.value
            ),
        );
    }
}

/// No two variants share an event type name.
///
/// Why: decoding looks a stored event up by its name; two variants with one name would make
/// one of them impossible to read back. The error is at the second use and names the first.
fn event_names_are_unique(cx: &Ctxt, input: &EventInput<'_>) {
    let EventData::Enum { variants } = &input.data else {
        return;
    };
    let mut first_use = HashMap::new();
    for variant in variants {
        let Some(first) = first_use.insert(variant.name.value.as_str(), variant.ident) else {
            continue;
        };
        // Keep the first user, so a third duplicate also names the first.
        first_use.insert(variant.name.value.as_str(), first);
        let message = format!(
            "event type name `{}` is already used by variant `{first}`; give one of them \
             another `#[event(name = \"...\")]`",
            variant.name.value
        );
        cx.error_at(variant.name.span, message);
    }
}

/// The aggregate name is a valid stream category: an ASCII letter, then ASCII letters, digits
/// or `_`.
///
/// Why: it becomes the category of every stream id (`order-42`), which es-core splits at the
/// first `-`; a name with `-` would split wrongly, and anything outside this set is unsafe in
/// logs, metrics and SQL identifiers. es-core checks the same rule at run time
/// (`StreamId::new`); checking it here turns a failure at the first command into a compile
/// error at the literal.
fn aggregate_name_is_a_category(cx: &Ctxt, name: &LitStr) {
    let value = name.value();
    let mut chars = value.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        cx.error_spanned_by(
            name,
            format!(
                "aggregate name {value:?} is not a valid stream category: it must start with an \
                 ASCII letter and hold only ASCII letters, digits and `_`"
            ),
        );
    }
}
