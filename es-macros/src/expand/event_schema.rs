//! `#[derive(EventSchema)]`: each event type's name, version, docs and payload JSON Schema.
//!
//! The payload schema must describe what `DomainEvent` stores, so it is derived by schemars
//! from a private mirror of the payload: the variant's fields with their `#[serde(...)]`,
//! `#[schemars(...)]` and doc attributes, which schemars reads as serde does. A struct event
//! is mirrored with its container attributes too, since its own serde derive honours them.
//! No schema is written by hand here, so serde's and schemars' rules stay the only ones.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::{Attribute, Data, DeriveInput, Fields, LitStr};

use crate::ast::{EventData, EventInput};
use crate::attr::Upcast;
use crate::check;
use crate::ctxt::Ctxt;
use crate::expand::{private, reexport_string, replace_self, wrap_in_const};

/// The derive. Attribute mistakes are `#[derive(DomainEvent)]`'s to report: this derive
/// emits nothing for an input that does not model, so each mistake is reported once; without
/// `DomainEvent` beside it, the missing supertrait is the error.
pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    let cx = Ctxt::new();
    let (model, _) = EventInput::from_syn(&cx, input);
    if let Some(model) = &model {
        check::domain_event(&cx, model);
    }
    match cx.finish(model) {
        Ok(model) => expand(input, &model),
        Err(_) => TokenStream::new(),
    }
}

/// What one event type contributes: its description, built from a mirror of its payload.
struct Described<'a> {
    name: &'a str,
    version: u32,
    rust_name: String,
    attrs: &'a [Attribute],
    aliases: &'a [LitStr],
    upcasts: &'a [Upcast],
    /// The mirror's container attributes (a struct event's own `#[serde(...)]`).
    container: Vec<&'a Attribute>,
    fields: &'a Fields,
}

fn expand(input: &DeriveInput, model: &EventInput<'_>) -> TokenStream {
    let krate = &model.krate;
    let private = private(krate);
    let ident = model.ident;
    // The model keeps every variant when nothing was reported, in declaration order.
    let described: Vec<Described<'_>> = match (&input.data, &model.data) {
        (Data::Enum(data), EventData::Enum { variants }) => data
            .variants
            .iter()
            .zip(variants)
            .map(|(syn_variant, variant)| Described {
                name: &variant.name.value,
                version: variant.version,
                rust_name: variant.ident.to_string(),
                attrs: &syn_variant.attrs,
                aliases: &variant.aliases,
                upcasts: &variant.upcasts,
                container: Vec::new(),
                fields: &syn_variant.fields,
            })
            .collect(),
        (Data::Struct(data), EventData::Struct(event)) => vec![Described {
            name: &event.name.value,
            version: event.version,
            rust_name: ident.to_string(),
            attrs: &input.attrs,
            aliases: &event.aliases,
            upcasts: &event.upcasts,
            container: attrs_named(&input.attrs, &["serde"]),
            fields: &data.fields,
        }],
        _ => return TokenStream::new(),
    };

    let descriptions = described.iter().map(|event| {
        let mirror = mirror(event, ident, krate);
        let name = event.name;
        let version = event.version;
        let rust_name = &event.rust_name;
        let docs = docs(event.attrs);
        let aliases = event.aliases;
        let mut older: Vec<u32> = event.upcasts.iter().map(|u| u.from_value).collect();
        older.sort_unstable();
        quote! {{
            #mirror
            #private::EventDescription::__new(
                (#name, #version, #rust_name),
                #docs,
                (&[#(#aliases),*], &[#(#older),*]),
                <__Payload as #private::schemars::JsonSchema>::json_schema(generator),
            )
        }}
    });

    wrap_in_const(&quote! {
        #[automatically_derived]
        impl #private::EventSchema for #ident {
            fn describe(
                generator: &mut #private::schemars::SchemaGenerator,
            ) -> ::std::vec::Vec<#private::EventDescription> {
                ::std::vec![#(#descriptions),*]
            }
        }
    })
}

/// `struct __Payload` shaped as the stored payload, deriving schemars' `JsonSchema`.
fn mirror(event: &Described<'_>, ident: &syn::Ident, krate: &syn::Path) -> TokenStream {
    let title = LitStr::new(event.name, Span::call_site());
    let schemars_crate = reexport_string(krate, "schemars");
    let container = &event.container;
    let docs = attrs_named(event.attrs, &["doc"]);
    let fields = event.fields.iter().map(|field| {
        let attrs = attrs_named(&field.attrs, &["serde", "schemars", "doc"]);
        let ty = replace_self(&field.ty, ident);
        match &field.ident {
            Some(name) => quote!(#(#attrs)* #name: #ty),
            None => quote!(#(#attrs)* #ty),
        }
    });
    let body = match event.fields {
        Fields::Unnamed(unnamed) if !unnamed.unnamed.is_empty() => quote!((#(#fields),*);),
        // A unit variant's payload (`V`, `V {}` or `V()`) is `{}`, an object: mirrored as a
        // struct without fields.
        _ => quote!({ #(#fields),* }),
    };
    quote! {
        #[derive(#krate::__private::schemars::JsonSchema)]
        #[schemars(crate = #schemars_crate, rename = #title)]
        #(#docs)*
        #(#container)*
        #[allow(dead_code)]
        struct __Payload #body
    }
}

/// The attributes among `attrs` whose path is one of `names`.
fn attrs_named<'a>(attrs: &'a [Attribute], names: &[&str]) -> Vec<&'a Attribute> {
    attrs
        .iter()
        .filter(|attr| names.iter().any(|name| attr.path().is_ident(name)))
        .collect()
}

/// The doc comment's text: each `#[doc = "..."]` line, trimmed of the one space rustdoc
/// strips, joined with `\n`, and the whole trimmed.
fn docs(attrs: &[Attribute]) -> LitStr {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|attr| attr.path().is_ident("doc"))
        .filter_map(|attr| match &attr.meta {
            syn::Meta::NameValue(syn::MetaNameValue {
                value:
                    syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(text),
                        ..
                    }),
                ..
            }) => Some(text.value()),
            _ => None,
        })
        .map(|line| {
            line.strip_prefix(' ')
                .unwrap_or(&line)
                .trim_end()
                .to_owned()
        })
        .collect();
    LitStr::new(lines.join("\n").trim(), Span::call_site())
}
