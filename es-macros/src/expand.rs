//! Code generation, after the input is modelled and checked.

pub(crate) mod aggregate;
pub(crate) mod domain_event;
pub(crate) mod event_schema;

use proc_macro2::{Group, Ident, Span, TokenStream, TokenTree};
use quote::{ToTokens, quote};
use syn::{LitStr, Path};

/// Wraps generated items in an anonymous const, so helper items and imports never leak into
/// the user's module.
///
/// The `allow`s cover lints a user may deny that our absolute paths (`::core::result::Result`
/// where `Result` is in scope) would trip if rustc ever stopped exempting macro output, as
/// serde's output does; `tests/lints.rs` checks the output under strict lints.
pub(crate) fn wrap_in_const(items: &TokenStream) -> TokenStream {
    quote! {
        #[doc(hidden)]
        #[allow(non_upper_case_globals, unused_qualifications, clippy::absolute_paths)]
        const _: () = {
            #items
        };
    }
}

/// `<crate>::__private`, where generated code finds everything it uses.
pub(crate) fn private(krate: &Path) -> TokenStream {
    quote!(#krate::__private)
}

/// The string for serde's `#[serde(crate = "...")]`: es-core's re-export of serde.
pub(crate) fn serde_crate(krate: &Path) -> LitStr {
    reexport_string(krate, "serde")
}

/// `"<crate>::__private::<name>"` as a string literal, for derives of other crates (serde,
/// schemars) that take their crate's path as `crate = "..."`.
pub(crate) fn reexport_string(krate: &Path, name: &str) -> LitStr {
    let mut text = String::new();
    if krate.leading_colon.is_some() {
        text.push_str("::");
    }
    for segment in &krate.segments {
        text.push_str(&segment.ident.to_string());
        text.push_str("::");
    }
    text.push_str("__private::");
    text.push_str(name);
    LitStr::new(&text, Span::call_site())
}

/// `tokens` with every `Self` replaced by `ident`.
///
/// Helper structs generated inside a method body cannot name the outer `Self`, so a field
/// type such as `Box<Self>` is rewritten to `Box<OrderEvent>`.
pub(crate) fn replace_self(tokens: &impl ToTokens, ident: &Ident) -> TokenStream {
    fn walk(stream: TokenStream, ident: &Ident) -> TokenStream {
        stream
            .into_iter()
            .map(|tree| match tree {
                TokenTree::Ident(found) if found == "Self" => {
                    let mut replaced = ident.clone();
                    replaced.set_span(found.span());
                    TokenTree::Ident(replaced)
                }
                TokenTree::Group(group) => {
                    let mut replaced = Group::new(group.delimiter(), walk(group.stream(), ident));
                    replaced.set_span(group.span());
                    TokenTree::Group(replaced)
                }
                other => other,
            })
            .collect()
    }
    walk(tokens.to_token_stream(), ident)
}
