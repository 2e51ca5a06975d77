//! `#[derive(DomainEvent)]`: the event type names, versions and the tag-free JSON codec.

use proc_macro2::{Literal, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned as _;
use syn::{DeriveInput, Ident, LitStr, Path};

use crate::ast::{EventData, EventInput, EventVariant, Field, Shape, StructEvent};
use crate::attr::{Upcast, UpcastStep};
use crate::check;
use crate::ctxt::Ctxt;
use crate::expand::{private, replace_self, serde_crate, wrap_in_const};
use crate::fallback;
use crate::tag::{self, TaggedField};

/// The derive: model, check, then generate, or emit the errors beside a stub impl.
mod personal;

pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    let cx = Ctxt::new();
    let (model, krate) = EventInput::from_syn(&cx, input);
    if let Some(model) = &model {
        check::domain_event(&cx, model);
    }
    match cx.finish(model) {
        Ok(model) => expand(&model),
        Err(error) => fallback::domain_event(input, &krate, &error),
    }
}

/// The bodies of the trait's items.
struct Items {
    /// Every name decoded: each event type's name, then the aliases.
    names: Vec<LitStr>,
    event_type: TokenStream,
    schema_version: TokenStream,
    encode: TokenStream,
    decode: TokenStream,
    upcast: TokenStream,
    /// `tags`'s body, if any field is tagged (otherwise the trait's default, no tags).
    tags: Option<TokenStream>,
    /// `personal_fields`'s body, if any field is personal (otherwise the trait's default,
    /// none).
    personal: Option<TokenStream>,
}

fn expand(input: &EventInput<'_>) -> TokenStream {
    let private = private(&input.krate);
    let generator = Gen {
        ident: input.ident,
        krate: &input.krate,
        private: &private,
        serde_crate: serde_crate(&input.krate),
    };
    let Items {
        names,
        event_type,
        schema_version,
        encode,
        decode,
        upcast,
        tags,
        personal,
    } = match &input.data {
        EventData::Enum { variants } => generator.enum_items(variants),
        EventData::Struct(event) => generator.struct_items(event),
    };
    let ident = input.ident;
    let krate = &input.krate;
    let tags = tags.map(|body| {
        quote! {
            fn tags(
                &self,
            ) -> ::core::result::Result<::std::vec::Vec<#krate::Tag>, #krate::TagError> {
                #body
            }
        }
    });

    let personal = personal.map(|body| {
        quote! {
            fn personal_fields(
                event_type: &::core::primitive::str,
            ) -> &'static [#krate::personal::PersonalField] {
                #body
            }
        }
    });

    wrap_in_const(&quote! {
        #[automatically_derived]
        impl #private::DomainEvent for #ident {
            const EVENT_TYPES: &'static [&'static ::core::primitive::str] = &[#(#names),*];

            fn event_type(&self) -> &::core::primitive::str {
                #event_type
            }

            fn schema_version(&self) -> ::core::primitive::u32 {
                #schema_version
            }

            fn encode(
                &self,
            ) -> ::core::result::Result<#private::serde_json::Value, #private::EncodeError> {
                #encode
            }

            fn decode(
                event_type: &::core::primitive::str,
                schema_version: ::core::primitive::u32,
                payload: #private::serde_json::Value,
            ) -> ::core::result::Result<Self, #private::DecodeError> {
                <Self as __DecodeFrom>::decode_from(event_type, schema_version, payload)
            }

            fn decode_json(
                event_type: &::core::primitive::str,
                schema_version: ::core::primitive::u32,
                payload: &::core::primitive::str,
            ) -> ::core::result::Result<Self, #private::DecodeError> {
                <Self as __DecodeFrom>::decode_from(
                    event_type,
                    schema_version,
                    #private::JsonText(payload),
                )
            }

            fn decode_value(
                event_type: &::core::primitive::str,
                schema_version: ::core::primitive::u32,
                payload: &#private::serde_json::Value,
            ) -> ::core::result::Result<Self, #private::DecodeError> {
                <Self as __DecodeFrom>::decode_from(event_type, schema_version, payload)
            }

            #tags

            #personal
        }

        // One decoder for every form a store holds payloads in (a JSON value, borrowed or
        // not, JSON text),
        // so that neither takes a detour through the other; stored events of older names or
        // versions go through `upcast` first.
        trait __DecodeFrom: ::core::marker::Sized {
            fn decode_from<P: #private::Payload>(
                event_type: &::core::primitive::str,
                schema_version: ::core::primitive::u32,
                payload: P,
            ) -> ::core::result::Result<Self, #private::DecodeError>;

            fn upcast(
                raw: #private::RawEvent,
            ) -> ::core::result::Result<Self, #private::DecodeError>;
        }

        #[automatically_derived]
        impl __DecodeFrom for #ident {
            fn decode_from<P: #private::Payload>(
                event_type: &::core::primitive::str,
                schema_version: ::core::primitive::u32,
                payload: P,
            ) -> ::core::result::Result<Self, #private::DecodeError> {
                #decode
            }

            fn upcast(
                raw: #private::RawEvent,
            ) -> ::core::result::Result<Self, #private::DecodeError> {
                #upcast
            }
        }
    })
}

/// What every generated item of one event type refers to.
struct Gen<'a> {
    ident: &'a Ident,
    krate: &'a Path,
    private: &'a TokenStream,
    serde_crate: LitStr,
}

impl Gen<'_> {
    fn enum_items(&self, variants: &[EventVariant<'_>]) -> Items {
        let names: Vec<LitStr> = variants.iter().map(|v| name_lit(&v.name.value)).collect();
        let idents: Vec<&Ident> = variants.iter().map(|v| v.ident).collect();

        let event_type = quote! {
            match self {
                #(Self::#idents { .. } => #names,)*
            }
        };

        let encode_arms = variants.iter().map(|variant| self.encode_variant(variant));
        let encode = quote! {
            match self {
                #(#encode_arms)*
            }
        };

        let decode_arms = variants.iter().map(|variant| self.decode_variant(variant));
        let decode = self.decode_or_upcast(&quote!(#(#decode_arms)*));
        let kinds: Vec<EventKind<'_>> = variants
            .iter()
            .map(|v| EventKind {
                name: &v.name.value,
                version: v.version,
                aliases: &v.aliases,
                upcasts: &v.upcasts,
            })
            .collect();

        let tags = variants.iter().any(|v| !v.tags.is_empty()).then(|| {
            let arms = variants.iter().map(|variant| {
                let ident = variant.ident;
                let (pattern, body) = self.tags_of(&variant.tags);
                quote!(Self::#ident { #pattern .. } => { #body })
            });
            quote! {
                match self {
                    #(#arms)*
                }
            }
        });

        let personal = self.personal_fields(
            variants
                .iter()
                .map(|variant| (&variant.name.value, &variant.personal)),
        );

        Items {
            tags,
            personal,
            schema_version: schema_version(variants),
            names: with_aliases(names, &kinds),
            event_type,
            encode,
            decode,
            upcast: self.upcast(&kinds),
        }
    }

    fn encode_variant(&self, variant: &EventVariant<'_>) -> TokenStream {
        let private = self.private;
        let serde_crate = &self.serde_crate;
        let ident = variant.ident;
        let name = name_lit(&variant.name.value);
        match &variant.shape {
            Shape::Unit => quote! {
                Self::#ident { .. } => ::core::result::Result::Ok(#private::unit_payload()),
            },
            Shape::Newtype(field) if field.serde_attrs.is_empty() => quote! {
                Self::#ident(__field0) => #private::encode_payload(#name, __field0),
            },
            Shape::Newtype(field) => {
                // The field's serde attributes (`with`, `serialize_with`) expect the owned
                // type, so the helper holds a clone rather than a reference.
                let attrs = &field.serde_attrs;
                let ty = replace_self(field.ty, self.ident);
                quote! {
                    Self::#ident(__field0) => {
                        #[derive(#private::serde::Serialize)]
                        #[serde(crate = #serde_crate)]
                        struct __Payload(#(#attrs)* #ty);
                        #private::encode_payload(
                            #name,
                            &__Payload(::core::clone::Clone::clone(__field0)),
                        )
                    }
                }
            }
            Shape::Struct(fields) => {
                let bindings = bindings(fields.len());
                let names: Vec<&Ident> = fields.iter().filter_map(|f| f.ident).collect();
                let helper = if fields.iter().all(|f| f.serde_attrs.is_empty()) {
                    // No attribute can change how a field serializes, so a view of borrowed
                    // fields encodes exactly like the fields themselves, without copying.
                    // The `&'__a` keeps the derive's span: with the field type's span, clippy
                    // would lint the generated reference (`borrowed_box` on `Box<Self>`).
                    let tys = fields.iter().map(|f| {
                        let ty = replace_self(f.ty, self.ident);
                        quote!(&'__a #ty)
                    });
                    quote! {
                        #[derive(#private::serde::Serialize)]
                        #[serde(crate = #serde_crate)]
                        struct __Payload<'__a> {
                            #(#names: #tys,)*
                        }
                        let __payload = __Payload { #(#names: #bindings,)* };
                    }
                } else {
                    // Attributes such as `with` or `skip_serializing_if` call functions on the
                    // owned field type, so the helper owns clones of the fields.
                    let fields = self.owned_fields(fields);
                    quote! {
                        #[derive(#private::serde::Serialize)]
                        #[serde(crate = #serde_crate)]
                        #[allow(dead_code, reason = "serde does not read `#[serde(skip)]` fields")]
                        struct __Payload {
                            #(#fields,)*
                        }
                        let __payload = __Payload {
                            #(#names: ::core::clone::Clone::clone(#bindings),)*
                        };
                    }
                };
                quote! {
                    Self::#ident { #(#names: #bindings),* } => {
                        #helper
                        #private::encode_payload(#name, &__payload)
                    }
                }
            }
        }
    }

    fn decode_variant(&self, variant: &EventVariant<'_>) -> TokenStream {
        let private = self.private;
        let serde_crate = &self.serde_crate;
        let ident = variant.ident;
        let name = name_lit(&variant.name.value);
        let version = Literal::u32_suffixed(variant.version);
        let payload = match &variant.shape {
            Shape::Unit => quote! {
                #private::decode_unit_payload(event_type, schema_version, &payload)?;
                ::core::result::Result::Ok(Self::#ident {})
            },
            Shape::Newtype(field) if field.serde_attrs.is_empty() => {
                let ty = field.ty;
                quote! {
                    ::core::result::Result::Ok(Self::#ident(
                        #private::decode_payload::<#ty>(event_type, schema_version, payload)?,
                    ))
                }
            }
            Shape::Newtype(field) => {
                let attrs = &field.serde_attrs;
                let ty = replace_self(field.ty, self.ident);
                quote! {
                    #[derive(#private::serde::Deserialize)]
                    #[serde(crate = #serde_crate)]
                    struct __Payload(#(#attrs)* #ty);
                    let __Payload(__field0) =
                        #private::decode_payload::<__Payload>(event_type, schema_version, payload)?;
                    ::core::result::Result::Ok(Self::#ident(__field0))
                }
            }
            Shape::Struct(fields) => {
                let names: Vec<&Ident> = fields.iter().filter_map(|f| f.ident).collect();
                let fields = self.owned_fields(fields);
                quote! {
                    #[derive(#private::serde::Deserialize)]
                    #[serde(crate = #serde_crate)]
                    struct __Payload {
                        #(#fields,)*
                    }
                    let __payload =
                        #private::decode_payload::<__Payload>(event_type, schema_version, payload)?;
                    ::core::result::Result::Ok(Self::#ident { #(#names: __payload.#names,)* })
                }
            }
        };
        quote! {
            (#name, #version) => {
                #payload
            }
        }
    }

    /// `decode_from`'s body: the current names and versions decode at once; everything
    /// else goes through `upcast`.
    fn decode_or_upcast(&self, arms: &TokenStream) -> TokenStream {
        let private = self.private;
        quote! {
            match (event_type, schema_version) {
                #arms
                _ => <Self as __DecodeFrom>::upcast(#private::RawEvent::new(
                    event_type,
                    schema_version,
                    #private::payload_value(event_type, schema_version, payload)?,
                )),
            }
        }
    }

    /// `upcast`'s body: renames aliases, runs the steps from older versions until a current
    /// name and version decodes, and explains what does not.
    fn upcast(&self, kinds: &[EventKind<'_>]) -> TokenStream {
        let private = self.private;
        let mut renames = Vec::new();
        let mut steps = Vec::new();
        let mut current = Vec::new();
        let mut other_versions = Vec::new();
        for kind in kinds {
            let name = name_lit(kind.name);
            let version = Literal::u32_suffixed(kind.version);
            for alias in kind.aliases {
                renames.push(quote!(#alias => ::core::option::Option::Some(#name),));
            }
            for upcast in kind.upcasts {
                let from = Literal::u32_suffixed(upcast.from_value);
                steps.push(match &upcast.step {
                    UpcastStep::Json(path) => {
                        let span = path.span();
                        quote_spanned! {span=>
                            (#name, #from) => raw = #private::upcast_json(raw, #path)?,
                        }
                    }
                    UpcastStep::Typed(ty) => {
                        let span = ty.span();
                        let ty = replace_self(ty, self.ident);
                        quote_spanned! {span=>
                            (#name, #from) => return #private::upcast_typed::<#ty, Self>(raw),
                        }
                    }
                });
            }
            // One arm each: an or-pattern would trip `clippy::unnested_or_patterns` in
            // crates that deny pedantic lints.
            current.push(quote! {
                (#name, #version) => {
                    let (event_type, schema_version, payload) = #private::into_parts(raw);
                    return <Self as __DecodeFrom>::decode_from(
                        &event_type,
                        schema_version,
                        payload,
                    );
                }
            });
            other_versions.push(quote! {
                (#name, version) => {
                    return ::core::result::Result::Err(
                        #private::unsupported_version(#name, version, #version),
                    );
                }
            });
        }
        quote! {
            let mut raw = raw;
            let mut steps: ::core::primitive::u32 = 0;
            loop {
                steps += 1;
                if steps > #private::MAX_UPCAST_STEPS {
                    return ::core::result::Result::Err(#private::upcast_loop(&raw));
                }
                let renamed: ::core::option::Option<&'static ::core::primitive::str> =
                    match raw.event_type.as_str() {
                        #(#renames)*
                        _ => ::core::option::Option::None,
                    };
                if let ::core::option::Option::Some(name) = renamed {
                    #private::rename(&mut raw, name);
                }
                match (raw.event_type.as_str(), raw.schema_version) {
                    #(#steps)*
                    #(#current)*
                    #(#other_versions)*
                    (other, _) => {
                        return ::core::result::Result::Err(#private::unknown_event_type(other));
                    }
                }
            }
        }
    }

    /// `#[serde(...)] name: Type` for each field, as declared.
    fn owned_fields(&self, fields: &[Field<'_>]) -> Vec<TokenStream> {
        fields
            .iter()
            .map(|field| {
                let attrs = &field.serde_attrs;
                let name = field.ident;
                let ty = replace_self(field.ty, self.ident);
                quote!(#(#attrs)* #name: #ty)
            })
            .collect()
    }

    fn struct_items(&self, event: &StructEvent<'_>) -> Items {
        let private = self.private;
        let name = name_lit(&event.name.value);
        let version = Literal::u32_suffixed(event.version);
        // Spanned at the struct's name, so a missing `Serialize` or `Deserialize` is reported
        // there rather than at the derive.
        let span = self.ident.span();
        let (encode, payload) = if event.unit {
            (
                quote!(::core::result::Result::Ok(#private::unit_payload())),
                quote! {
                    #private::decode_unit_payload(event_type, schema_version, &payload)?;
                    ::core::result::Result::Ok(Self {})
                },
            )
        } else {
            (
                quote_spanned!(span=> #private::encode_payload(#name, self)),
                quote_spanned!(span=> #private::decode_payload::<Self>(event_type, schema_version, payload)),
            )
        };
        let decode = self.decode_or_upcast(&quote! {
            (#name, #version) => {
                #payload
            }
        });
        let kinds = [EventKind {
            name: &event.name.value,
            version: event.version,
            aliases: &event.aliases,
            upcasts: &event.upcasts,
        }];
        let tags = (!event.tags.is_empty()).then(|| {
            let (pattern, body) = self.tags_of(&event.tags);
            quote! {
                let Self { #pattern .. } = self;
                #body
            }
        });
        let personal = self.personal_fields([(&event.name.value, &event.personal)]);
        Items {
            tags,
            personal,
            event_type: quote!(#name),
            schema_version: quote!(#version),
            names: with_aliases(vec![name], &kinds),
            encode,
            decode,
            upcast: self.upcast(&kinds),
        }
    }
}

impl Gen<'_> {
    /// For the tagged fields of one event type: the pattern binding them (`name: __tag0,`)
    /// and the body that makes their tags, each `Tag::pair(key, value)?` so that a value
    /// that makes no valid tag is the caller's `TagError`, never a panic.
    fn tags_of(&self, fields: &[TaggedField<'_>]) -> (TokenStream, TokenStream) {
        let krate = self.krate;
        let mut pattern = TokenStream::new();
        let mut pushes = TokenStream::new();
        for (index, field) in fields.iter().enumerate() {
            // Spanned at the field's type: a type without `Display` is reported there.
            let binding = Ident::new(&format!("__tag{index}"), tag::value_span(field));
            let member = &field.member;
            let key = LitStr::new(&field.key, proc_macro2::Span::call_site());
            pattern.extend(quote!(#member: #binding,));
            pushes.extend(if field.option {
                let value = Ident::new("__value", tag::value_span(field));
                quote! {
                    if let ::core::option::Option::Some(#value) = #binding {
                        __tags.push(#krate::Tag::pair(#key, #value)?);
                    }
                }
            } else {
                quote! {
                    __tags.push(#krate::Tag::pair(#key, #binding)?);
                }
            });
        }
        let body = if fields.is_empty() {
            quote!(::core::result::Result::Ok(::std::vec::Vec::new()))
        } else {
            let capacity = fields.len();
            quote! {
                let mut __tags = ::std::vec::Vec::with_capacity(#capacity);
                #pushes
                ::core::result::Result::Ok(__tags)
            }
        };
        (pattern, body)
    }
}

/// `schema_version`'s body: one arm per distinct version, variants joined with `|`, or just
/// the version when all variants share it.
fn schema_version(variants: &[EventVariant<'_>]) -> TokenStream {
    let mut groups: Vec<(u32, Vec<&Ident>)> = Vec::new();
    for variant in variants {
        match groups
            .iter_mut()
            .find(|(version, _)| *version == variant.version)
        {
            Some((_, idents)) => idents.push(variant.ident),
            None => groups.push((variant.version, vec![variant.ident])),
        }
    }
    match groups.as_slice() {
        [] => quote!(match *self {}),
        [(version, _)] => Literal::u32_suffixed(*version).into_token_stream(),
        groups => {
            let arms = groups.iter().map(|(version, idents)| {
                let version = Literal::u32_suffixed(*version);
                quote!(#(Self::#idents { .. })|* => #version,)
            });
            quote!(match self { #(#arms)* })
        }
    }
}

/// One event type as decoding sees it: a variant, or a struct.
struct EventKind<'a> {
    name: &'a str,
    version: u32,
    aliases: &'a [LitStr],
    upcasts: &'a [Upcast],
}

/// The names decoded: `names`, then every alias.
fn with_aliases(mut names: Vec<LitStr>, kinds: &[EventKind<'_>]) -> Vec<LitStr> {
    names.extend(kinds.iter().flat_map(|k| k.aliases.iter().cloned()));
    names
}

fn bindings(count: usize) -> Vec<Ident> {
    (0..count).map(|i| format_ident!("__field{}", i)).collect()
}

fn name_lit(name: &str) -> LitStr {
    LitStr::new(name, proc_macro2::Span::call_site())
}
