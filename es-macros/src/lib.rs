//! Derive macros for `es-core`. Use them through `es_core`'s re-exports.

use proc_macro::TokenStream;

/// Placeholder.
#[proc_macro_derive(Aggregate, attributes(aggregate))]
pub fn derive_aggregate(_input: TokenStream) -> TokenStream {
    TokenStream::new()
}

/// Placeholder.
#[proc_macro_derive(DomainEvent, attributes(event))]
pub fn derive_domain_event(_input: TokenStream) -> TokenStream {
    TokenStream::new()
}
