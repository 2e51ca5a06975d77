//! `#[personal(...)]` on the fields of an event: parsing into [`PersonalFields`], the part of
//! the model that `DomainEvent::personal_fields` is generated from.
//!
//! A personal field holds personal data of a *data subject*, named by another field of the
//! same payload (`subject = customer_id`) or fixed (`subject = "fixed:crm"`); a store that
//! protects personal data encrypts it under that subject's key, so forgetting the subject
//! leaves the field's declared replacement (`forgotten = ...`) in its place.
//!
//! Mistakes that concern one attribute on its own (a bad key or value, a duplicate key, a
//! second `#[personal]`, an unnamed field, `#[personal]` on a variant) are recorded while
//! reading; the rules that need the other fields or a reason (the subject field exists and
//! is stored in the clear, serde stores the field under its key, an `Option` or a
//! replacement) are in [`crate::check`].

use syn::ext::IdentExt;
use syn::meta::ParseNestedMeta;
use syn::{Attribute, Fields, Ident, LitStr, Meta, Type};

use crate::attr::{Slot, rest_of_value, unknown_key};
use crate::ctxt::Ctxt;
use crate::serde_attr::{self, SerdeKey};
use crate::symbol::{FORGOTTEN, PERSONAL, SUBJECT, TAG};
use crate::tag;

/// The personal fields of one payload, with every named field of it (which a subject may
/// name).
pub(crate) struct PersonalFields<'a> {
    /// The fields marked `#[personal]`, in declaration order.
    pub(crate) fields: Vec<PersonalDecl<'a>>,
    /// Every named field of the payload, personal or not.
    pub(crate) named: Vec<NamedField<'a>>,
}

/// A named field of a payload, as a subject's source.
pub(crate) struct NamedField<'a> {
    pub(crate) ident: &'a Ident,
    /// The key serde writes it under.
    pub(crate) key: String,
    /// Its `#[serde(...)]` keys: a subject must be a field serde stores as it is.
    pub(crate) serde_keys: Vec<SerdeKey>,
}

/// A field marked `#[personal(...)]`.
pub(crate) struct PersonalDecl<'a> {
    pub(crate) ident: &'a Ident,
    /// The `#[personal(...)]` attribute, where errors about the whole declaration point.
    pub(crate) attr: &'a Attribute,
    /// The key serde writes it under (its `#[serde(rename)]`, else its name).
    pub(crate) key: String,
    pub(crate) ty: &'a Type,
    /// The field's type is an `Option<T>` (read from its syntax): it reads as `None` once
    /// forgotten, unless `forgotten` says otherwise.
    pub(crate) option: bool,
    /// `None` if missing or malformed (already reported).
    pub(crate) subject: Option<SubjectDecl>,
    /// `None` if not written, or malformed (already reported: see `forgotten_written`).
    pub(crate) forgotten: Option<ForgottenDecl>,
    /// `forgotten = ...` was written, even if its value was not understood.
    pub(crate) forgotten_written: bool,
    /// The field's `#[serde(...)]` keys: a personal field must be stored under its key.
    pub(crate) serde_keys: Vec<SerdeKey>,
    /// The field's `#[tag]`, which a personal field must not have.
    pub(crate) tag: Option<&'a Attribute>,
}

/// The `subject = ...` of a personal field, as written.
pub(crate) enum SubjectDecl {
    /// `subject = customer_id`: another field of the same payload.
    Field(Ident),
    /// `subject = "fixed:crm"`: the literal, whose text [`crate::check`] judges.
    Fixed(LitStr),
}

/// The `forgotten = ...` of a personal field.
pub(crate) enum ForgottenDecl {
    /// `forgotten = "text"`.
    Text(LitStr),
    /// `forgotten = Default`: the field type's default, encoded.
    Default,
}

/// The personal fields among `fields`; a `#[personal]` on an unnamed field is reported and
/// left out.
pub(crate) fn personal_fields<'a>(cx: &Ctxt, fields: &'a Fields) -> PersonalFields<'a> {
    let mut personal = Vec::new();
    let mut named = Vec::new();
    for field in fields {
        let Some(ident) = &field.ident else {
            for attr in field.attrs.iter().filter(|attr| *attr.path() == PERSONAL) {
                cx.error_spanned_by(
                    attr,
                    "`#[personal(...)]` goes on a named field: a personal field is found by its key \
                     in the payload object, and an unnamed field has none; name the \
                     field, like `Variant { name: String }`",
                );
            }
            continue;
        };
        let key = serde_attr::serialized_name(field, ident);
        let serde_keys = serde_attr::serde_keys(&field.attrs);
        if let Some(decl) = personal_attr(cx, &field.attrs) {
            personal.push(PersonalDecl {
                ident,
                attr: decl.attr,
                key: key.clone(),
                ty: &field.ty,
                option: tag::option_of(&field.ty).is_some(),
                subject: decl.subject,
                forgotten: decl.forgotten,
                forgotten_written: decl.forgotten_written,
                serde_keys: serde_attr::serde_keys(&field.attrs),
                tag: field.attrs.iter().find(|attr| *attr.path() == TAG),
            });
        }
        named.push(NamedField {
            ident,
            key,
            serde_keys,
        });
    }
    PersonalFields {
        fields: personal,
        named,
    }
}

/// What one `#[personal(...)]` says.
struct Declared<'a> {
    attr: &'a Attribute,
    subject: Option<SubjectDecl>,
    forgotten: Option<ForgottenDecl>,
    forgotten_written: bool,
}

/// Reads the field's `#[personal(...)]`; `None` if it has none. A second one is reported
/// and ignored.
fn personal_attr<'a>(cx: &Ctxt, attrs: &'a [Attribute]) -> Option<Declared<'a>> {
    let mut found: Option<Declared<'a>> = None;
    for attr in attrs.iter().filter(|attr| *attr.path() == PERSONAL) {
        if found.is_some() {
            cx.error_spanned_by(
                attr,
                "this field already has a `#[personal(...)]`; a field holds the data of one \
                 subject: put every key in one attribute",
            );
            continue;
        }
        let mut subject = Slot::new(PERSONAL, SUBJECT);
        let mut forgotten = Slot::new(PERSONAL, FORGOTTEN);
        match &attr.meta {
            Meta::List(_) => {
                let parsed = attr.parse_nested_meta(|meta| {
                    if meta.path == SUBJECT {
                        let value = parse_subject(cx, &meta)?;
                        subject.record(cx, &meta.path, value);
                        Ok(())
                    } else if meta.path == FORGOTTEN {
                        let value = parse_forgotten(cx, &meta)?;
                        forgotten.record(cx, &meta.path, value);
                        Ok(())
                    } else {
                        unknown_key(cx, &meta, PERSONAL, &[SUBJECT, FORGOTTEN])
                    }
                });
                match parsed {
                    Err(error) => cx.syn_error(error),
                    Ok(()) if !subject.seen() => cx.error_spanned_by(attr, MISSING_SUBJECT),
                    Ok(()) => {}
                }
            }
            Meta::Path(_) | Meta::NameValue(_) => cx.error_spanned_by(attr, MISSING_SUBJECT),
        }
        found = Some(Declared {
            attr,
            subject: subject.value,
            forgotten_written: forgotten.seen(),
            forgotten: forgotten.value,
        });
    }
    found
}

const MISSING_SUBJECT: &str = "`#[personal]` needs the data's subject: \
     `#[personal(subject = customer_id)]` (the value of another field of this payload) or \
     `#[personal(subject = \"fixed:crm\")]` (a fixed subject)";

/// `subject = field_name` or `subject = "fixed:..."`.
fn parse_subject(cx: &Ctxt, meta: &ParseNestedMeta<'_>) -> syn::Result<Option<SubjectDecl>> {
    let advice = "`subject` takes the name of another field of this payload, like \
                  `subject = customer_id`, or a fixed subject, like `subject = \"fixed:crm\"`";
    if !expect_value(cx, meta, advice)? {
        return Ok(None);
    }
    if meta.input.peek(LitStr) {
        return Ok(Some(SubjectDecl::Fixed(meta.input.parse()?)));
    }
    let fork = meta.input.fork();
    if fork.call(Ident::parse_any).is_ok() && (fork.is_empty() || fork.peek(syn::Token![,])) {
        return Ok(Some(SubjectDecl::Field(meta.input.call(Ident::parse_any)?)));
    }
    let value = rest_of_value(meta.input)?;
    cx.error_spanned_by(value, advice);
    Ok(None)
}

/// `forgotten = "text"` or `forgotten = Default`.
fn parse_forgotten(cx: &Ctxt, meta: &ParseNestedMeta<'_>) -> syn::Result<Option<ForgottenDecl>> {
    let advice = "`forgotten` takes the text a reader sees once the subject is forgotten, \
                  like `forgotten = \"(forgotten)\"`, or `Default`, for the field type's \
                  default: `forgotten = Default`";
    if !expect_value(cx, meta, advice)? {
        return Ok(None);
    }
    if meta.input.peek(LitStr) {
        return Ok(Some(ForgottenDecl::Text(meta.input.parse()?)));
    }
    let value = rest_of_value(meta.input)?;
    match syn::parse2::<Ident>(value.clone()) {
        Ok(ident) if ident == "Default" => Ok(Some(ForgottenDecl::Default)),
        _ => {
            cx.error_spanned_by(value, advice);
            Ok(None)
        }
    }
}

/// Consumes the `=` after a key; `false` (and an error at the key) if there is none.
fn expect_value(cx: &Ctxt, meta: &ParseNestedMeta<'_>, advice: &str) -> syn::Result<bool> {
    if meta.input.peek(syn::Token![=]) {
        meta.input.parse::<syn::Token![=]>()?;
        Ok(true)
    } else {
        cx.error_spanned_by(&meta.path, advice);
        rest_of_value(meta.input)?;
        Ok(false)
    }
}

/// Refuses `#[personal]` where no field is: on an enum, a variant or a struct, `what` saying
/// which. A whole event is not personal data: its fields are, each of some subject's.
pub(crate) fn reject_personal_attrs(cx: &Ctxt, attrs: &[Attribute], what: &str) {
    for attr in attrs.iter().filter(|attr| *attr.path() == PERSONAL) {
        cx.error_spanned_by(
            attr,
            format!(
                "`#[personal(...)]` goes on a named field, whose value is the personal data, not \
                 on {what}; mark each field that holds personal data"
            ),
        );
    }
}

impl PersonalDecl<'_> {
    /// The Rust name of the field, as messages show it (`r#type` as `type`).
    pub(crate) fn name(&self) -> String {
        self.ident.unraw().to_string()
    }
}
