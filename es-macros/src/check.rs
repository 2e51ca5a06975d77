//! Rules across the parts of an input (and rules on values that need a reason), checked
//! after it is read. One function per rule, each saying why the rule exists.

use std::collections::HashMap;

use proc_macro2::Span;
use syn::ext::IdentExt;

use syn::{Generics, LitStr};

use crate::ast::{EventData, EventInput, EventName, Field, Shape};
use crate::attr::Upcast;
use crate::ctxt::Ctxt;
use crate::personal::{PersonalDecl, PersonalFields, SubjectDecl};
use crate::serde_attr::SerdeKey;
use crate::tag::TaggedField;

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
            no_serde_attrs_on_an_event_enum(cx, &input.serde);
            for variant in variants {
                event_name_is_exact(cx, &variant.name);
                upcasts_lead_to_the_current_version(cx, variant.version, &variant.upcasts);
                no_serde_attrs_on_an_event_variant(cx, &variant.serde);
                if let Shape::Newtype(field) = &variant.shape {
                    newtype_field_serde_attrs_apply(cx, field);
                }
                tagged_fields_are_usable(cx, &variant.tags);
                personal_fields_are_usable(cx, &variant.personal, "variant");
            }
            event_names_are_unique(cx, input);
        }
        EventData::Struct(event) => {
            event_name_is_exact(cx, &event.name);
            upcasts_lead_to_the_current_version(cx, event.version, &event.upcasts);
            event_names_are_unique(cx, input);
            if event.unit {
                no_serde_attrs_on_a_struct_without_fields(cx, &input.serde);
            }
            tagged_fields_are_usable(cx, &event.tags);
            personal_fields_are_usable(cx, &event.personal, "struct");
            if !event.personal.fields.is_empty() {
                no_rename_all_with_personal_fields(cx, &input.serde);
            }
        }
    }
}

/// The rules for each `#[personal]` field of one payload, which is a `what` (`variant` or
/// `struct`).
fn personal_fields_are_usable(cx: &Ctxt, personal: &PersonalFields<'_>, what: &str) {
    for field in &personal.fields {
        personal_field_is_not_a_tag(cx, field);
        stored_under_its_key(cx, &field.serde_keys, "a `#[personal]` field", "it");
        match &field.subject {
            Some(SubjectDecl::Field(subject)) => {
                subject_field_is_stored_in_clear(cx, personal, field, subject, what);
            }
            Some(SubjectDecl::Fixed(text)) => fixed_subject_is_a_subject(cx, text),
            None => {}
        }
        forgotten_is_known(cx, field);
    }
}

/// A personal field carries no `#[tag]`.
///
/// Why: tags are stored and indexed in the clear, beside the encrypted payload, so the
/// value would stay readable in every event's tags after its subject is forgotten.
fn personal_field_is_not_a_tag(cx: &Ctxt, field: &PersonalDecl<'_>) {
    if let Some(tag) = field.tag {
        cx.error_spanned_by(
            tag,
            "a `#[personal]` field cannot be a `#[tag]`: tags are stored in the clear, so the \
             value would stay readable after its subject is forgotten; tag with an id instead \
             (such as the subject's own field)",
        );
    }
}

/// A field the personal machinery reads by its key (a personal field, or a subject) is
/// written under that key, as it is: no `skip`, `skip_serializing`, `skip_deserializing`
/// or `flatten`.
///
/// Why: a skipped personal field is not stored, or not read back, so what is encrypted or
/// forgotten would not be what the event holds; a flattened one has no key of its own (its
/// fields are spread into the payload). A skipped subject is missing from the stored
/// payload, so no key could be found for the data, and a flattened one is not one value.
/// Nor `skip_serializing_if`: a protecting store refuses a payload missing a declared
/// personal field or subject (that is how it tells a payload not of the declared shape,
/// which it would otherwise store in clear), so a field sometimes left out would fail
/// those appends; a `None` personal field is stored as `null`, unencrypted, instead.
fn stored_under_its_key(cx: &Ctxt, keys: &[SerdeKey], what: &str, it: &str) {
    for key in keys {
        let why = match key.key.as_deref() {
            Some("skip" | "skip_serializing" | "skip_deserializing") => {
                "would not be stored and read back as it is"
            }
            Some("skip_serializing_if") => {
                "would be left out of some payloads, which a protecting store refuses"
            }
            Some("flatten") => "would have no key of its own in the payload",
            _ => continue,
        };
        cx.error_spanned_by(
            &key.tokens,
            format!(
                "{} on {what}: {it} {why}, so the personal data could not be found by its key; \
                 remove the attribute",
                shown(key)
            ),
        );
    }
}

/// `subject = name` names another named field of the same payload, which is not personal
/// itself and is stored in the clear under its key.
///
/// Why: the subject is read from the stored payload to find the key the field is encrypted
/// under, and to find what to forget. A personal subject would be encrypted under its own
/// key, so it could not be read to find that key; a field that is not there has no value.
fn subject_field_is_stored_in_clear(
    cx: &Ctxt,
    personal: &PersonalFields<'_>,
    field: &PersonalDecl<'_>,
    subject: &syn::Ident,
    what: &str,
) {
    let name = subject.unraw().to_string();
    if name == field.name() {
        cx.error_spanned_by(
            subject,
            format!(
                "`subject = {name}` names the personal field itself; the subject is another \
                 field, which says whose data this is (such as `customer_id`), or \
                 `subject = \"fixed:<name>\"`"
            ),
        );
        return;
    }
    let Some(source) = personal
        .named
        .iter()
        .find(|named| named.ident.unraw() == name)
    else {
        let names: Vec<String> = personal
            .named
            .iter()
            .filter(|named| named.ident.unraw() != field.name())
            .map(|named| format!("`{}`", named.ident.unraw()))
            .collect();
        let others = if names.is_empty() {
            "and no other field".to_owned()
        } else {
            format!("its other fields are {}", names.join(", "))
        };
        cx.error_spanned_by(
            subject,
            format!(
                "`subject = {name}`: this {what} has no field `{name}` ({others}); name a field \
                 of the same {what}, or use `subject = \"fixed:<name>\"`"
            ),
        );
        return;
    };
    if personal
        .fields
        .iter()
        .any(|other| other.ident.unraw() == name)
    {
        cx.error_spanned_by(
            subject,
            format!(
                "`subject = {name}` names a `#[personal]` field: the subject must be stored in \
                 the clear, to find the key the data is encrypted under; make the subject an id \
                 that is not personal data itself"
            ),
        );
    }
    stored_under_its_key(
        cx,
        &source.serde_keys,
        &format!("`{name}`, the subject of a `#[personal]` field"),
        "the subject",
    );
}

/// A fixed subject is written `"fixed:<name>"`, `<name>` a valid subject: 1 to 255 bytes,
/// no control character.
///
/// Why: the `fixed:` prefix keeps a fixed subject apart from a field name at a glance, and
/// a string without it is most likely a field name written as a string; the name must pass
/// `Subject`'s check at run time, or every write of the event would fail.
fn fixed_subject_is_a_subject(cx: &Ctxt, literal: &LitStr) {
    const MAX_SUBJECT_BYTES: usize = 255;
    let text = literal.value();
    let problem = match text.strip_prefix("fixed:") {
        None => format!(
            "`subject = {text:?}` is not a fixed subject: use a field name, without quotes \
             (`subject = customer_id`), or `subject = \"fixed:<name>\"`"
        ),
        Some("") => "`subject = \"fixed:\"` names no subject: use a field name (`subject = \
                     customer_id`) or `subject = \"fixed:<name>\"`"
            .to_owned(),
        Some(name) if name.chars().any(char::is_control) => {
            "a fixed subject cannot hold a control character; write `\"fixed:<name>\"`".to_owned()
        }
        Some(name) if name.len() > MAX_SUBJECT_BYTES => {
            "a fixed subject takes at most 255 bytes after `fixed:`".to_owned()
        }
        Some(_) => return,
    };
    cx.error_spanned_by(literal, problem);
}

/// A field that is not an `Option` says what it reads as once forgotten.
///
/// Why: a forgotten field's value is gone, and something must decode in its place; an
/// `Option` reads as `None`, but any other type has no value the derive could pick on its
/// own that would still decode (an empty string is not a `u32`).
fn forgotten_is_known(cx: &Ctxt, field: &PersonalDecl<'_>) {
    if field.option || field.forgotten_written {
        return;
    }
    cx.error_spanned_by(
        field.attr,
        format!(
            "`{}` is not an `Option`, so say what it reads as once its subject is forgotten: \
             add `forgotten = \"...\"` (a text, for a field that reads one) or \
             `forgotten = Default` (the type's `Default`)",
            field.name()
        ),
    );
}

/// A struct event with personal fields has no container `#[serde(rename_all)]`.
///
/// Why: personal fields are found by their keys in the stored payload, which the derive
/// takes from the field's name or `#[serde(rename)]`; it does not apply serde's case
/// conversions, so under `rename_all` it would look for keys that are not there, and the
/// data would be stored unencrypted.
///
/// Nor any container attribute that makes the stored payload something other than the
/// struct's fields as keys (`into`, `transparent`, `remote`, `tag`, `untagged`, `content`,
/// `from`/`try_from` for the way back): the personal fields' keys would be missing or
/// elsewhere, and the values stored in clear.
fn no_rename_all_with_personal_fields(cx: &Ctxt, keys: &[SerdeKey]) {
    for key in keys {
        match key.key.as_deref() {
            Some("rename_all") => cx.error_spanned_by(
                &key.tokens,
                "`#[serde(rename_all)]` on a struct event with `#[personal]` fields is not \
                 supported: personal fields are found by their keys, which the derive does not \
                 convert; rename each field with `#[serde(rename = \"...\")]` instead",
            ),
            Some(
                name @ ("into" | "from" | "try_from" | "transparent" | "remote" | "tag"
                | "untagged" | "content"),
            ) => cx.error_spanned_by(
                &key.tokens,
                format!(
                    "`#[serde({name})]` on a struct event with `#[personal]` fields is not \
                     supported: the stored payload would not hold the fields under their own \
                     keys, so the personal ones could not be found to encrypt; store the \
                     struct's own fields, and convert in the event type instead"
                ),
            ),
            _ => {}
        }
    }
}

/// The rules for each `#[tag]` field.
fn tagged_fields_are_usable(cx: &Ctxt, tags: &[TaggedField<'_>]) {
    for field in tags {
        if let Some(prefix) = &field.prefix {
            tag_prefix_is_a_key(cx, prefix);
        }
        tagged_field_is_stored(cx, field);
    }
}

/// A `prefix` is a usable tag key: not empty, no `:`, no control character, short enough
/// to leave room for a value.
///
/// Why: `Tag::pair` refuses such a key at run time, so every event would fail to append
/// with `AppendError::InvalidTag`; the literal is known now, so the mistake is a compile
/// error at it. A `:` would also move the key/value split: `Tag::key` is the text before
/// the first `:`, so `prefix = "a:b"` would tag with the key `a`. The length bound is
/// es-core's `Tag::MAX_BYTES` (255) less the `:`.
fn tag_prefix_is_a_key(cx: &Ctxt, prefix: &LitStr) {
    const MAX_PREFIX_BYTES: usize = 255 - 1;
    let text = prefix.value();
    let problem = if text.is_empty() {
        "cannot be empty"
    } else if text.contains(':') {
        "cannot hold a `:`, which separates the key from the value"
    } else if text.chars().any(char::is_control) {
        "cannot hold a control character"
    } else if text.len() > MAX_PREFIX_BYTES {
        "is too long: a tag takes at most 255 bytes, key, `:` and value together"
    } else {
        return;
    };
    cx.error_spanned_by(
        prefix,
        format!("a tag prefix {problem}; write the tag's key, like `prefix = \"course\"`"),
    );
}

/// A tagged field is stored in the payload: `#[tag]` is refused on a field with
/// `#[serde(skip)]`, `skip_serializing` or `skip_deserializing`.
///
/// Why: an event read back from the store would hold another value in that field (its
/// default) than the tag recorded beside it, so its `tags()` would disagree with its stored
/// tags, and whatever recomputes tags from events (a test harness folding given events, a
/// copy to another store) would see different events than the store. Keeping the value
/// only in a tag is no way out either: tags are stored in the clear, for queries, not as a
/// record. `skip_serializing_if` is allowed: a value it leaves out reads back as the same
/// value through `default`.
fn tagged_field_is_stored(cx: &Ctxt, field: &TaggedField<'_>) {
    for key in &field.serde_keys {
        if let Some(skip @ ("skip" | "skip_serializing" | "skip_deserializing")) =
            key.key.as_deref()
        {
            cx.error_spanned_by(
                &key.tokens,
                format!(
                    "`#[serde({skip})]` on a `#[tag]` field: the field would not read back as \
                     stored, so the event's tags would not either; store the field, or put the \
                     tag in the event's metadata (`Metadata::with_tag`) instead"
                ),
            );
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

/// `#[serde(...)]` on an event enum is refused, whatever the key.
///
/// Why: each variant is stored as its own untagged payload, through helpers the derive
/// builds from the variant's fields; the enum's serde attributes never reach them, so
/// `rename_all` or `deny_unknown_fields` there would look as if they shaped the stored
/// payloads while changing nothing (the derive registers `serde` as a helper attribute for
/// fields, so without this rule nothing would complain). A serde derive on the enum applies
/// them to serde's own tagged encoding only, which is never stored. Starting to honour them
/// instead would silently change the payloads of events already stored without them.
fn no_serde_attrs_on_an_event_enum(cx: &Ctxt, keys: &[SerdeKey]) {
    for key in keys {
        let advice = match key.key.as_deref() {
            Some("rename_all") => {
                "rename a field with `#[serde(rename = \"...\")]` on the field, or an event \
                 type with `#[event(name = \"...\")]` on its variant"
            }
            Some("rename_all_fields") => {
                "rename each field with `#[serde(rename = \"...\")]` on the field"
            }
            Some("rename" | "alias") => {
                "the enum's name is never stored; name each event type with \
                 `#[event(name = \"...\")]` on its variant"
            }
            Some("tag" | "content" | "untagged") => {
                "payloads are stored without a tag, with the event type name beside each \
                 one; remove it"
            }
            Some("deny_unknown_fields") => {
                "unknown fields in a stored payload are ignored; to refuse them for one event \
                 type, make its variant wrap a struct that has `#[serde(deny_unknown_fields)]` \
                 (`Variant(Struct)` stores that struct's own encoding)"
            }
            _ => {
                "each variant's payload is built from its fields and their own \
                 `#[serde(...)]` attributes; put the attribute on a field, or on a struct the \
                 variant wraps (`Variant(Struct)` stores that struct's own encoding)"
            }
        };
        cx.error_spanned_by(
            &key.tokens,
            format!(
                "{} on an event enum is not applied to payloads: {advice}",
                shown(key)
            ),
        );
    }
}

/// `#[serde(...)]` on a variant of an event enum is refused, whatever the key.
///
/// Why: a variant's payload helper is built from its fields alone and its event type name
/// from `#[event(name)]`, so serde's variant attributes change neither; a `rename` there,
/// read as naming the stored event, or a `with` meant for the field, would silently do
/// nothing (and would change stored payloads if honoured later).
fn no_serde_attrs_on_an_event_variant(cx: &Ctxt, keys: &[SerdeKey]) {
    for key in keys {
        let on_the_field;
        let advice = match key.key.as_deref() {
            Some("rename") => {
                "the stored event type name is set with `#[event(name = \"...\")]`, and field \
                 names with `#[serde(rename = \"...\")]` on each field"
            }
            Some("alias") => {
                "a name the event type was stored under before is declared with \
                 `#[event(alias = \"...\")]`"
            }
            Some("rename_all") => {
                "rename each field with `#[serde(rename = \"...\")]`, or wrap a struct that has \
                 its own `rename_all` (`Variant(Struct)` stores that struct's own encoding)"
            }
            Some("skip" | "skip_serializing" | "skip_deserializing") => {
                "every variant is an event type that is stored and read back; remove the \
                 attribute, or the variant"
            }
            Some(with @ ("with" | "serialize_with" | "deserialize_with")) => {
                on_the_field = format!(
                    "put it on the field instead, like `Variant(#[serde({with} = \"...\")] Type)`"
                );
                &on_the_field
            }
            _ => {
                "the payload is built from the variant's fields and their own \
                 `#[serde(...)]` attributes; put the attribute on a field, or remove it"
            }
        };
        cx.error_spanned_by(
            &key.tokens,
            format!(
                "{} on an event variant is not applied to its payload: {advice}",
                shown(key)
            ),
        );
    }
}

/// On the field of a newtype variant, serde's keys that a newtype payload ignores are
/// refused; `with`, `serialize_with` and `deserialize_with` are honoured.
///
/// Why: the payload is the field's own encoding, (de)serialized through a newtype helper
/// that carries the field's attributes, and serde applies no name, default or skip to a
/// newtype's field (it accepts them silently, except `flatten`, which it refuses with a
/// message about a helper the user never wrote). A `rename` there reads as if the payload
/// became `{"name": ...}`, and a `default` as if a missing payload were filled in; neither
/// happens. Keys serde does not know are left to serde, which names them better.
fn newtype_field_serde_attrs_apply(cx: &Ctxt, field: &Field<'_>) {
    for key in &field.serde_keys {
        let advice = match key.key.as_deref() {
            Some("rename" | "alias") => {
                "the payload is the field's own encoding, without a field name; use a struct \
                 variant, like `Variant { name: Type }`, to store a named field"
            }
            Some("default") => {
                "the payload is the field's value itself, so it is never missing; use a struct \
                 variant for a field that older events may lack"
            }
            Some("skip" | "skip_serializing" | "skip_deserializing" | "skip_serializing_if") => {
                "the payload is the field's own encoding, which cannot leave the field out; use \
                 a struct variant, whose fields can be skipped, or a unit variant"
            }
            Some("flatten") => "the payload already is the field's own encoding; remove it",
            // Honoured (`with` and friends), not a field key at all (serde reports it), or
            // not a list (serde reports that too).
            _ => continue,
        };
        cx.error_spanned_by(
            &key.tokens,
            format!(
                "{} on the field of a newtype variant is not applied to its payload: {advice}",
                shown(key)
            ),
        );
    }
}

/// `#[serde(...)]` on an event struct without fields is refused, whatever the key.
///
/// Why: such a struct's payload is always `{}`, written and read without serde (so that it
/// needs no serde derive, like a unit variant); an attribute such as `into` would change
/// the struct's serde encoding but not its payload.
fn no_serde_attrs_on_a_struct_without_fields(cx: &Ctxt, keys: &[SerdeKey]) {
    for key in keys {
        cx.error_spanned_by(
            &key.tokens,
            format!(
                "{} on an event struct without fields is not applied to its payload: the \
                 payload is always `{{}}`, written without serde; remove it",
                shown(key)
            ),
        );
    }
}

/// A serde attribute as messages name it: `#[serde(rename_all)]`, without its value.
fn shown(key: &SerdeKey) -> String {
    match &key.key {
        Some(name) => format!("`#[serde({name})]`"),
        None => "`#[serde]`".to_owned(),
    }
}

/// Every rule for `#[derive(AggregateType)]`. Takes the parts rather than the model, so the rules
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
