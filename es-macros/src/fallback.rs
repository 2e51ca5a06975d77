//! Stub impls emitted next to the errors when an input is rejected (thiserror's habit).
//!
//! Without them, every use of the type as an event or aggregate would add a "trait not
//! implemented" error after the real one, and IDEs would lose completion on the type. The
//! stubs are never run: the `compile_error!`s beside them stop the build.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{DeriveInput, Path, Type};

use crate::ast::crate_path;
use crate::attr::AggregateAttrs;
use crate::expand::{private, wrap_in_const};

/// `impl DomainEvent` with no event types and bodies that are never reached.
pub(crate) fn domain_event(input: &DeriveInput, krate: &Path, error: &syn::Error) -> TokenStream {
    let private = private(krate);
    let header = impl_header(
        input,
        &quote!(#private::DomainEvent),
        &quote!(::core::clone::Clone),
    );
    let error = error.to_compile_error();
    let stub = wrap_in_const(&quote! {
        #header {
            const EVENT_TYPES: &'static [&'static ::core::primitive::str] = &[];

            fn event_type(&self) -> &::core::primitive::str {
                ::core::unreachable!()
            }

            fn schema_version(&self) -> ::core::primitive::u32 {
                ::core::unreachable!()
            }

            fn encode(
                &self,
            ) -> ::core::result::Result<#private::serde_json::Value, #private::EncodeError> {
                ::core::unreachable!()
            }

            fn decode(
                _: &::core::primitive::str,
                _: ::core::primitive::u32,
                _: #private::serde_json::Value,
            ) -> ::core::result::Result<Self, #private::DecodeError> {
                ::core::unreachable!()
            }
        }
    });
    quote!(#error #stub)
}

/// `impl AggregateType` with the types that were given, and neutral ones for the rest.
pub(crate) fn aggregate(
    input: &DeriveInput,
    attrs: &AggregateAttrs,
    error: &syn::Error,
) -> TokenStream {
    let krate = crate_path(attrs.krate.as_ref());
    let private = private(&krate);
    let header = impl_header(
        input,
        &quote!(#private::AggregateType),
        &quote!(::core::default::Default),
    );
    let name = attrs
        .name
        .as_ref()
        .map_or_else(|| quote!(""), |name| quote!(#name));
    let or = |ty: Option<&Type>, default: TokenStream| ty.map_or(default, |ty| quote!(#ty));
    let command = or(attrs.command.as_ref(), quote!(()));
    let event = or(attrs.event.as_ref(), quote!(#krate::RawEvent));
    let error_ty = or(attrs.error.as_ref(), quote!(::core::convert::Infallible));
    let services = or(attrs.services.as_ref(), quote!(()));
    let error = error.to_compile_error();
    let stub = wrap_in_const(&quote! {
        #header {
            const NAME: &'static ::core::primitive::str = #name;
            type Command = #command;
            type Event = #event;
            type Error = #error_ty;
            type Services = #services;
        }
    });
    quote!(#error #stub)
}

/// `impl<..> Trait for Type<..> where ..`, bounded so that the stub itself adds no error.
///
/// The supertraits (`Send`, `Sync` and `Clone` or `Default`) are required through a
/// higher-ranked bound rather than proven, because a trivially false bound such as
/// `Order: Default` would be an error of its own (trivial bounds are unstable), while
/// `for<'a> Order: Default` merely makes the stub inapplicable. A type with lifetime
/// parameters also needs `'static`, which for a type without parameters always holds.
fn impl_header(input: &DeriveInput, trait_path: &TokenStream, extra: &TokenStream) -> TokenStream {
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let mut predicates = where_clause
        .map(|clause| {
            clause
                .predicates
                .iter()
                .map(|p| quote!(#p))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    predicates.push(quote! {
        for<'__es> #ident #ty_generics: #extra + ::core::marker::Send + ::core::marker::Sync
    });
    if !input.generics.params.is_empty() {
        predicates.push(quote!(#ident #ty_generics: 'static));
    }
    quote! {
        #[automatically_derived]
        impl #impl_generics #trait_path for #ident #ty_generics
        where
            #(#predicates,)*
    }
}
