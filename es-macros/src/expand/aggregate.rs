//! `#[derive(AggregateType)]`: `AggregateType` from `#[aggregate(...)]`, with snapshot and state
//! comparison hooks chosen by what the aggregate implements.

use proc_macro2::{Literal, TokenStream};
use quote::quote;
use syn::DeriveInput;

use crate::ast::AggregateInput;
use crate::check;
use crate::ctxt::Ctxt;
use crate::expand::{private, wrap_in_const};
use crate::fallback;

/// The derive: model, check, then generate, or emit the errors beside a stub impl.
pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    let cx = Ctxt::new();
    let (model, attrs) = AggregateInput::from_syn(&cx, input);
    check::aggregate(&cx, &input.generics, attrs.name.as_ref());
    match cx.finish(model) {
        Ok(model) => expand(&model),
        Err(error) => fallback::aggregate(input, &attrs, &error),
    }
}

fn expand(input: &AggregateInput<'_>) -> TokenStream {
    let private = private(&input.krate);
    let AggregateInput {
        ident,
        name,
        command,
        event,
        error,
        ..
    } = input;
    let services = input
        .services
        .as_ref()
        .map_or_else(|| quote!(()), |ty| quote!(#ty));
    let snapshot_version = Literal::u32_suffixed(input.snapshot_version);

    // The hooks use autoref specialisation: `(&Probe::<Self>::new()).method(..)` resolves to
    // the trait implemented for `Probe<Self>` when `Self` has the capability (serde, or
    // `PartialEq`), and otherwise, one autoref further, to the fallback implemented for
    // `&Probe<Self>`, which returns `None`. No flag is needed, and nothing is required of
    // aggregates that have neither.
    wrap_in_const(&quote! {
        #[automatically_derived]
        impl #private::AggregateType for #ident {
            const NAME: &'static ::core::primitive::str = #name;
            const SNAPSHOT_VERSION: ::core::primitive::u32 = #snapshot_version;

            type Command = #command;
            type Event = #event;
            type Error = #error;
            type Services = #services;

            fn encode_snapshot(
                &self,
            ) -> ::core::option::Option<
                ::core::result::Result<#private::serde_json::Value, #private::serde_json::Error>,
            > {
                #[allow(unused_imports)]
                use #private::{SnapshotUnsupported as _, SnapshotViaSerde as _};
                (&#private::Probe::<Self>::new()).encode_state(self)
            }

            fn decode_snapshot(
                state: #private::serde_json::Value,
            ) -> ::core::option::Option<::core::result::Result<Self, #private::serde_json::Error>>
            {
                #[allow(unused_imports)]
                use #private::{SnapshotUnsupported as _, SnapshotViaSerde as _};
                (&#private::Probe::<Self>::new()).decode_state(state)
            }

            fn __state_eq(&self, other: &Self) -> ::core::option::Option<::core::primitive::bool> {
                #[allow(unused_imports)]
                use #private::{EqUnsupported as _, EqViaPartialEq as _};
                (&#private::Probe::<Self>::new()).state_eq(self, other)
            }
        }
    })
}
