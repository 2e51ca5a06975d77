//! The `#[serde(...)]` attributes `#[derive(DomainEvent)]` sees.
//!
//! The derive registers `serde` as one of its helper attributes, so that field attributes
//! work on an enum without a serde derive of its own. It does not interpret serde's keys: a
//! field's attributes are copied onto the payload helpers, where serde reads them. Every key
//! is also kept, with its tokens, so that [`crate::check`] can refuse the placements whose
//! attributes would never reach a payload.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::{Attribute, LitStr, Token};

use crate::attr::{key_name, rest_of_value};
use crate::symbol::SERDE;

/// One key of a `#[serde(...)]` attribute, as written.
pub(crate) struct SerdeKey {
    /// The key (`rename_all`), or `None` for an attribute that is not a list of keys, such
    /// as `#[serde = "..."]`.
    pub(crate) key: Option<String>,
    /// The key and its value (`rename_all = "camelCase"`), or the whole attribute when it is
    /// not a list: where an error about it points.
    pub(crate) tokens: TokenStream,
}

/// The `#[serde(...)]` attributes among `attrs`, as they are (to be copied onto a helper).
pub(crate) fn serde_attrs(attrs: &[Attribute]) -> Vec<&Attribute> {
    attrs.iter().filter(|attr| *attr.path() == SERDE).collect()
}

/// Every key of every `#[serde(...)]` among `attrs`, in order.
///
/// Never fails: values are taken as opaque tokens up to the next `,`, as serde's own syntax
/// allows, and an attribute that does not parse as a list of keys becomes one key-less
/// entry spanning the whole attribute.
pub(crate) fn serde_keys(attrs: &[Attribute]) -> Vec<SerdeKey> {
    let mut keys = Vec::new();
    for attr in serde_attrs(attrs) {
        let mut found = Vec::new();
        let parsed = attr.parse_nested_meta(|meta| {
            let mut tokens = meta.path.to_token_stream();
            // `= value` or `(...)`: whatever serde takes, up to the next key.
            if !meta.input.is_empty() && !meta.input.peek(Token![,]) {
                tokens.extend(rest_of_value(meta.input)?);
            }
            found.push(SerdeKey {
                key: Some(key_name(&meta.path)),
                tokens,
            });
            Ok(())
        });
        match parsed {
            Ok(()) => keys.extend(found),
            Err(_) => keys.push(SerdeKey {
                key: None,
                tokens: attr.to_token_stream(),
            }),
        }
    }
    keys
}

/// The key serde writes `field` (named `ident`) under in its payload object: the
/// `#[serde(rename = "...")]` (or `rename(serialize = "...")`) if there is one, else the
/// field's name (`r#type` is written `type`).
///
/// A container's `rename_all` is not applied here; where it matters, [`crate::check`]
/// refuses it. Attributes serde itself would refuse are read as far as they go: serde
/// reports them.
pub(crate) fn serialized_name(field: &syn::Field, ident: &syn::Ident) -> String {
    let mut name = None;
    for attr in serde_attrs(&field.attrs) {
        let _ = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("rename") {
                if meta.input.peek(Token![=]) {
                    let value: LitStr = meta.value()?.parse()?;
                    name = Some(value.value());
                } else {
                    meta.parse_nested_meta(|inner| {
                        if inner.path.is_ident("serialize") {
                            let value: LitStr = inner.value()?.parse()?;
                            name = Some(value.value());
                        } else if !inner.input.is_empty() && !inner.input.peek(Token![,]) {
                            rest_of_value(inner.input)?;
                        }
                        Ok(())
                    })?;
                }
            } else if !meta.input.is_empty() && !meta.input.peek(Token![,]) {
                rest_of_value(meta.input)?;
            }
            Ok(())
        });
    }
    name.unwrap_or_else(|| ident.unraw().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_of(attrs: &[Attribute]) -> Vec<(Option<String>, String)> {
        serde_keys(attrs)
            .into_iter()
            .map(|key| (key.key, key.tokens.to_string()))
            .collect()
    }

    #[test]
    fn every_key_is_kept_with_its_value() {
        let attrs: Vec<Attribute> = vec![
            syn::parse_quote!(#[serde(rename_all = "camelCase", deny_unknown_fields)]),
            syn::parse_quote!(#[doc = "not serde"]),
            syn::parse_quote!(#[serde(rename(serialize = "a"), bound = "T: X, U: Y")]),
        ];
        assert_eq!(
            keys_of(&attrs),
            [
                (
                    Some("rename_all".into()),
                    "rename_all = \"camelCase\"".into()
                ),
                (
                    Some("deny_unknown_fields".into()),
                    "deny_unknown_fields".into()
                ),
                (Some("rename".into()), "rename (serialize = \"a\")".into()),
                (Some("bound".into()), "bound = \"T: X, U: Y\"".into()),
            ]
        );
    }

    #[test]
    fn the_serialized_name_honours_rename() {
        let fields: syn::FieldsNamed = syn::parse_quote!({
            plain: u8,
            #[serde(default, rename = "given")]
            renamed: u8,
            #[serde(rename(serialize = "written", deserialize = "read"))]
            split: u8,
            #[serde(skip_serializing_if = "Option::is_none")]
            r#type: u8,
        });
        let names: Vec<String> = fields
            .named
            .iter()
            .filter_map(|field| Some(serialized_name(field, field.ident.as_ref()?)))
            .collect();
        assert_eq!(names, ["plain", "given", "written", "type"]);
    }

    #[test]
    fn an_attribute_that_is_not_a_list_is_one_keyless_entry() {
        let attrs: Vec<Attribute> = vec![syn::parse_quote!(#[serde = "x"])];
        assert_eq!(keys_of(&attrs), [(None, "# [serde = \"x\"]".into())]);
    }
}
