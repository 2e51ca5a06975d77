//! `#[tag]` on the fields of an event: parsing into [`TaggedField`]s, the part of the model
//! that `DomainEvent::tags` is generated from.
//!
//! Mistakes that concern one attribute on its own (a bad key, a second `#[tag]`, an
//! unnamed field without a prefix, `#[tag]` on a variant) are recorded while reading; the
//! rules that need a reason (the prefix's text, a field serde skips) are in
//! [`crate::check`].

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::spanned::Spanned as _;
use syn::{Attribute, Fields, GenericArgument, LitStr, Member, Meta, PathArguments, Type};

use crate::attr::{Slot, parse_lit_str, unknown_key};
use crate::ctxt::Ctxt;
use crate::serde_attr::{self, SerdeKey};
use crate::symbol::{PREFIX, TAG};

/// A field marked `#[tag]`: it gives the tag `key:{value}`, `value` being the field's
/// `Display` (or nothing, for an `Option` that is `None`).
pub(crate) struct TaggedField<'a> {
    /// How the generated code reaches the field (`name`, or `0` for an unnamed one).
    pub(crate) member: Member,
    /// The tag's key: the prefix if given, else the field's name (`r#type` gives `type`).
    pub(crate) key: String,
    /// The `prefix = "..."` literal, whose text [`crate::check`] judges.
    pub(crate) prefix: Option<LitStr>,
    /// The field's type is an `Option<T>` (read from its syntax, as serde does): `None`
    /// gives no tag, `Some(value)` the tag of `value`.
    pub(crate) option: bool,
    /// The type whose `Display` makes the value: the field's, or the `T` of its
    /// `Option<T>`. Where a missing `Display` is reported.
    pub(crate) value_ty: &'a Type,
    /// The field's `#[serde(...)]` keys: a tag must not be made of a field serde skips.
    pub(crate) serde_keys: Vec<SerdeKey>,
}

/// The tagged fields among `fields`, in declaration order.
pub(crate) fn tagged_fields<'a>(cx: &Ctxt, fields: &'a Fields) -> Vec<TaggedField<'a>> {
    let mut tagged = Vec::new();
    for (index, field) in fields.iter().enumerate() {
        let Some((attr, prefix)) = tag_attr(cx, &field.attrs) else {
            continue;
        };
        let (member, key) = match (&field.ident, &prefix) {
            (_, Some(prefix)) => (member(field, index), prefix.value()),
            (Some(ident), None) => (Member::Named(ident.clone()), ident.unraw().to_string()),
            (None, None) => {
                cx.error_spanned_by(
                    attr,
                    "an unnamed field has no name to make the tag's key of; give one, like \
                     `#[tag(prefix = \"course\")]` for the tag `course:{value}`",
                );
                continue;
            }
        };
        tagged.push(TaggedField {
            member,
            key,
            prefix,
            option: option_of(&field.ty).is_some(),
            value_ty: option_of(&field.ty).unwrap_or(&field.ty),
            serde_keys: serde_attr::serde_keys(&field.attrs),
        });
    }
    tagged
}

fn member(field: &syn::Field, index: usize) -> Member {
    match &field.ident {
        Some(ident) => Member::Named(ident.clone()),
        None => Member::Unnamed(syn::Index {
            index: u32::try_from(index).unwrap_or(u32::MAX),
            span: field.ty.span(),
        }),
    }
}

/// Reads the field's `#[tag]`: the attribute and its prefix, if any. `None` if there is
/// none, or if it is so malformed that no tag can be made of it (recorded in `cx`).
fn tag_attr<'a>(cx: &Ctxt, attrs: &'a [Attribute]) -> Option<(&'a Attribute, Option<LitStr>)> {
    let mut found: Option<(&Attribute, Option<LitStr>)> = None;
    for attr in attrs.iter().filter(|attr| *attr.path() == TAG) {
        if found.is_some() {
            cx.error_spanned_by(
                attr,
                "this field already has a `#[tag]`; a field gives one tag (tag another field \
                 for another tag)",
            );
            continue;
        }
        let prefix = match &attr.meta {
            Meta::Path(_) => None,
            Meta::List(_) => {
                let mut prefix = Slot::new(TAG, PREFIX);
                let parsed = attr.parse_nested_meta(|meta| {
                    if meta.path == PREFIX {
                        let value = parse_lit_str(cx, &meta, PREFIX, "\"course\"")?;
                        prefix.record(cx, &meta.path, value);
                        Ok(())
                    } else {
                        unknown_key(cx, &meta, TAG, &[PREFIX])
                    }
                });
                if let Err(error) = parsed {
                    cx.syn_error(error);
                }
                prefix.value
            }
            Meta::NameValue(meta) => {
                cx.error_spanned_by(
                    meta,
                    "`#[tag]` takes no value: write `#[tag]` (the key is the field's name) or \
                     `#[tag(prefix = \"course\")]`",
                );
                None
            }
        };
        found = Some((attr, prefix));
    }
    found
}

/// Refuses `#[tag]` where no field is: on an enum, a variant or a struct, `what` saying
/// which. Tags come from fields' values; a fixed tag on every event of a kind would be
/// the same for all of them and select nothing a type does not already select.
pub(crate) fn reject_tag_attrs(cx: &Ctxt, attrs: &[Attribute], what: &str) {
    for attr in attrs.iter().filter(|attr| *attr.path() == TAG) {
        cx.error_spanned_by(
            attr,
            format!(
                "`#[tag]` goes on a field, whose value makes the tag, not on {what}; to tag one \
                 event with a fixed tag, add it to its metadata (`Metadata::with_tag`)"
            ),
        );
    }
}

/// The `T` of `ty` if it is written as an `Option<T>` (with any path: `Option`,
/// `std::option::Option`, ...). Read from the syntax, as serde reads it: a type alias of
/// an `Option` is not recognised (and then needs `Display` itself), and a type of one's own
/// named `Option` is taken for one.
pub(crate) fn option_of(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ungroup(ty) else {
        return None;
    };
    if path.qself.is_some() {
        return None;
    }
    let last = path.path.segments.last()?;
    let PathArguments::AngleBracketed(arguments) = &last.arguments else {
        return None;
    };
    match (arguments.args.len(), arguments.args.first()) {
        (1, Some(GenericArgument::Type(inner))) if last.ident == "Option" => Some(inner),
        _ => None,
    }
}

/// `ty` without the invisible groups a `macro_rules!` expansion may wrap it in.
fn ungroup(mut ty: &Type) -> &Type {
    while let Type::Group(group) = ty {
        ty = &group.elem;
    }
    ty
}

/// A span for a generated name that stands for the field's value: the type whose
/// `Display` it needs, so that a type without one is reported at the field.
pub(crate) fn value_span(field: &TaggedField<'_>) -> Span {
    field.value_ty.span()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_recognised_by_their_syntax() {
        let yes: [Type; 3] = [
            syn::parse_quote!(Option<String>),
            syn::parse_quote!(::std::option::Option<u32>),
            syn::parse_quote!(core::option::Option<Vec<u8>>),
        ];
        let no: [Type; 4] = [
            syn::parse_quote!(String),
            syn::parse_quote!(Maybe<String>),
            syn::parse_quote!(Option),
            syn::parse_quote!(<T as Trait>::Option<u8>),
        ];
        assert!(yes.iter().all(|ty| option_of(ty).is_some()));
        assert!(no.iter().all(|ty| option_of(ty).is_none()));
        let inner: Type = syn::parse_quote!(u32);
        assert_eq!(yes.get(1).and_then(option_of), Some(&inner));
    }
}
