//! The error accumulator: every mistake in an input is collected and reported at once, each
//! at its own span, instead of stopping at the first one (serde's `Ctxt` habit).

use std::cell::RefCell;
use std::fmt::Display;

use proc_macro2::Span;
use quote::ToTokens;

/// Collects errors while an input is read and checked.
///
/// Shared by reference (`&Ctxt`) through the parsing and checking passes; consumed by
/// [`Ctxt::finish`], which turns the errors into one combined [`syn::Error`].
#[derive(Default)]
#[must_use = "errors collected in a `Ctxt` are lost unless `finish` is called"]
pub(crate) struct Ctxt {
    errors: RefCell<Vec<syn::Error>>,
}

impl Ctxt {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Records an error spanning `tokens` (every token they cover is underlined).
    pub(crate) fn error_spanned_by(&self, tokens: impl ToTokens, message: impl Display) {
        // `into_token_stream` first keeps `new_spanned` from being instantiated per token type.
        self.syn_error(syn::Error::new_spanned(tokens.into_token_stream(), message));
    }

    /// Records an error at one span.
    pub(crate) fn error_at(&self, span: Span, message: impl Display) {
        self.syn_error(syn::Error::new(span, message));
    }

    /// Records an error syn produced (a syntax error inside an attribute, for example).
    pub(crate) fn syn_error(&self, error: syn::Error) {
        self.errors.borrow_mut().push(error);
    }

    /// Ends the pass: `value` if no error was recorded, otherwise every error combined.
    ///
    /// `value` is `None` only when the input could not be modelled at all, which always comes
    /// with a recorded error; the defensive message below covers a pass that forgets to.
    pub(crate) fn finish<T>(self, value: Option<T>) -> Result<T, syn::Error> {
        let mut errors = self.errors.into_inner().into_iter();
        match (errors.next(), value) {
            (None, Some(value)) => Ok(value),
            (Some(mut combined), _) => {
                for error in errors {
                    combined.combine(error);
                }
                Err(combined)
            }
            (None, None) => Err(syn::Error::new(
                Span::call_site(),
                "es-macros could not read this input (this is a bug in es-macros; please report it)",
            )),
        }
    }
}
