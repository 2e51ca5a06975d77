//! `personal_fields` of the `DomainEvent` derive: the description of each event type's
//! `#[personal]` fields (see [`crate::personal`] for the model they are read into).

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned as _;

use super::{Gen, name_lit};
use crate::expand::replace_self;
use crate::personal::{ForgottenDecl, PersonalFields, SubjectDecl};

impl Gen<'_> {
    /// `personal_fields`'s body, from each event type's name and personal fields: one arm
    /// per event type that has any, each a constant slice in declaration order; `None` if
    /// no event type has one. Only the current names are matched: an alias names payloads
    /// of an older shape, which the declaration does not describe.
    pub(super) fn personal_fields<'p>(
        &self,
        kinds: impl IntoIterator<Item = (&'p String, &'p PersonalFields<'p>)>,
    ) -> Option<TokenStream> {
        let krate = self.krate;
        let private = self.private;
        let arms: Vec<TokenStream> = kinds
            .into_iter()
            .filter(|(_, personal)| !personal.fields.is_empty())
            .map(|(name, personal)| {
                let name = name_lit(name);
                // A field without a subject was reported while reading, so the input is never
                // expanded; leaving it out keeps this total.
                let fields = personal.fields.iter().filter_map(|field| {
                    let key = name_lit(&field.key);
                    let subject = match &field.subject {
                        Some(SubjectDecl::Field(ident)) => {
                            // Checked to exist; its serde key, which the payload holds.
                            let key = personal
                                .named
                                .iter()
                                .find(|named| named.ident.unraw() == ident.unraw())
                                .map_or_else(
                                    || ident.unraw().to_string(),
                                    |named| named.key.clone(),
                                );
                            let key = name_lit(&key);
                            quote!(#krate::personal::SubjectSource::Field(#key))
                        }
                        Some(SubjectDecl::Fixed(literal)) => {
                            let text = literal.value();
                            let fixed = name_lit(text.strip_prefix("fixed:").unwrap_or(&text));
                            quote!(#krate::personal::SubjectSource::Fixed(#fixed))
                        }
                        None => return None,
                    };
                    let forgotten = match &field.forgotten {
                        Some(ForgottenDecl::Text(text)) => {
                            quote!(#krate::personal::Forgotten::Text(#text))
                        }
                        Some(ForgottenDecl::Default) => {
                            // Spanned at the field's type: a type without `Default` or
                            // `Serialize` is reported there.
                            let ty = replace_self(field.ty, self.ident);
                            let default = quote_spanned! {field.ty.span()=>
                                <#ty as ::core::default::Default>::default()
                            };
                            quote! {
                                #krate::personal::Forgotten::TypeDefault(|| {
                                    ::core::result::Result::unwrap_or(
                                        #private::serde_json::to_value(#default),
                                        #private::serde_json::Value::Null,
                                    )
                                })
                            }
                        }
                        None => quote!(#krate::personal::Forgotten::Null),
                    };
                    Some(quote! {
                        #krate::personal::PersonalField {
                            key: #key,
                            subject: #subject,
                            forgotten: #forgotten,
                        }
                    })
                });
                quote! {
                    #name => {
                        const FIELDS: &[#krate::personal::PersonalField] = &[#(#fields),*];
                        FIELDS
                    }
                }
            })
            .collect();
        (!arms.is_empty()).then(|| {
            quote! {
                match event_type {
                    #(#arms)*
                    _ => &[],
                }
            }
        })
    }
}
