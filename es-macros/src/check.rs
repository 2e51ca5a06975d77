//! Rules across the parts of an input (and rules on values that need a reason), checked
//! after it is read. One function per rule, each saying why the rule exists.

use std::collections::HashMap;

use proc_macro2::Span;

use syn::{Generics, LitStr};

use crate::ast::{EventData, EventInput, EventName};
use crate::attr::Upcast;
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
                upcasts_lead_to_the_current_version(cx, variant.version, &variant.upcasts);
            }
            event_names_are_unique(cx, input);
        }
        EventData::Struct(event) => {
            event_name_is_exact(cx, &event.name);
            upcasts_lead_to_the_current_version(cx, event.version, &event.upcasts);
            event_names_are_unique(cx, input);
        }
    }
}

/// Each upcast step reads an older version than the current one, and no version has two.
///
/// Why: a step reads a stored version and hands on a newer one until the current version
/// decodes; a step from the current version (or a later one) would never run, and two
/// steps from one version would leave it unclear which runs.
fn upcasts_lead_to_the_current_version(cx: &Ctxt, version: u32, upcasts: &[Upcast]) {
    let mut seen = HashMap::new();
    for upcast in upcasts {
        if upcast.from_value >= version {
            cx.error_spanned_by(
                &upcast.from,
                format!(
                    "this event is at version {version}, so an upcast reads an older stored \
                     version: `from` must be below {version}"
                ),
            );
        }
        if seen.insert(upcast.from_value, ()).is_some() {
            cx.error_spanned_by(
                &upcast.from,
                format!("version {} already has an upcast step", upcast.from_value),
            );
        }
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
    name_text_is_exact(cx, literal, &name.value);
}

/// Reports `text` (written as `literal`) unless it is a usable event type name; `true` if it
/// is.
fn name_text_is_exact(cx: &Ctxt, literal: &LitStr, text: &str) -> bool {
    if text.is_empty() {
        cx.error_spanned_by(literal, "an event type name cannot be empty");
        false
    } else if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        cx.error_spanned_by(
            literal,
            format!(
                "event type name {text:?} contains whitespace or control characters; stored names \
                 must read the same in logs and queries as in code"
            ),
        );
        false
    } else {
        true
    }
}

/// No two event types share a name, counting the aliases of renamed ones, and each alias
/// is an exact name too.
///
/// Why: decoding looks a stored event up by its name; two variants (or a variant and an
/// alias) with one name would make one of them impossible to read back. The error is at
/// the second use and names the first.
fn event_names_are_unique(cx: &Ctxt, input: &EventInput<'_>) {
    // Every name in use: the name, who uses it, and where.
    let mut uses: Vec<(String, String, Span)> = Vec::new();
    let add_aliases = |uses: &mut Vec<(String, String, Span)>, aliases: &[LitStr], who: &str| {
        for alias in aliases {
            if name_text_is_exact(cx, alias, &alias.value()) {
                uses.push((alias.value(), format!("an alias of {who}"), alias.span()));
            }
        }
    };
    match &input.data {
        EventData::Enum { variants } => {
            for variant in variants {
                let who = format!("variant `{}`", variant.ident);
                uses.push((variant.name.value.clone(), who.clone(), variant.name.span));
                add_aliases(&mut uses, &variant.aliases, &who);
            }
        }
        EventData::Struct(event) => {
            let who = format!("`{}`", input.ident);
            uses.push((event.name.value.clone(), who.clone(), event.name.span));
            add_aliases(&mut uses, &event.aliases, &who);
        }
    }
    let mut first_use: HashMap<String, String> = HashMap::new();
    for (name, who, span) in uses {
        if let Some(first) = first_use.get(&name) {
            let message = format!(
                "event type name `{name}` is already used by {first}; give one of them \
                 another `#[event(name = \"...\")]`"
            );
            cx.error_at(span, message);
        } else {
            first_use.insert(name, who);
        }
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
