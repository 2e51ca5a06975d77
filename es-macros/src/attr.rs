//! Parsing of `#[event(...)]` and `#[aggregate(...)]` into typed values that keep their spans.
//!
//! Every key is parsed on its own: a bad value, an unknown key or a duplicate is recorded in
//! the [`Ctxt`] and parsing goes on with the next key, so one compile reports every mistake.
//! Only a syntax error (unbalanced tokens, a type that does not parse) abandons the rest of
//! that one attribute. Keys may be spread over several attributes of the same name, as with
//! serde; a key given twice is an error at the second occurrence.

use proc_macro2::{TokenStream, TokenTree};
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::parse::ParseStream;
use syn::{Attribute, Ident, LitInt, LitStr, Path, Token, Type};

use crate::ctxt::Ctxt;
use crate::symbol::{
    AGGREGATE, ALIAS, COMMAND, CRATE, ERROR, EVENT, EVENT_TYPE, FROM, NAME, SERVICES,
    SNAPSHOT_VERSION, Symbol, TYPED, UPCAST, VERSION, WITH,
};

/// A version number from `version = N` or `snapshot_version = N`: at least 1, fits a `u32`.
#[derive(Clone, Copy)]
pub(crate) struct Version {
    pub(crate) value: u32,
}

/// Where an `#[event(...)]` attribute sits; decides which keys it accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventPosition {
    /// On an enum: one event type per variant.
    Enum,
    /// On a struct: the struct is one event type.
    Struct,
    /// On one variant of an enum.
    Variant,
}

/// The keys of `#[event(...)]`, wherever it sits; [`EventPosition`] decides which may be set.
#[derive(Default)]
pub(crate) struct EventAttrs {
    pub(crate) krate: Option<Path>,
    pub(crate) name: Option<LitStr>,
    pub(crate) version: Option<Version>,
    /// `alias = "..."`: names this event type was stored under before a rename.
    pub(crate) aliases: Vec<LitStr>,
    /// `upcast(from = N, ...)`: how stored payloads of older versions are brought up to date.
    pub(crate) upcasts: Vec<Upcast>,
}

/// One `upcast(from = N, with = path)` or `upcast(from = N, typed = Type)`.
pub(crate) struct Upcast {
    /// The `from` literal: the stored version this step reads.
    pub(crate) from: LitInt,
    pub(crate) from_value: u32,
    pub(crate) step: UpcastStep,
}

/// What an upcast step does.
pub(crate) enum UpcastStep {
    /// `with = path`: a function from the stored event (type, version, payload) to the next
    /// one, on the JSON.
    Json(Path),
    /// `typed = Type`: the payload decodes as `Type`, which converts into the event with
    /// `From`; ends the chain.
    Typed(Type),
}

impl EventAttrs {
    /// Reads every `#[event(...)]` in `attrs`, which sit at `position`.
    pub(crate) fn from_attrs(cx: &Ctxt, attrs: &[Attribute], position: EventPosition) -> Self {
        let mut krate = Slot::new(EVENT, CRATE);
        let mut name = Slot::new(EVENT, NAME);
        let mut version = Slot::new(EVENT, VERSION);
        let mut aliases = Vec::new();
        let mut upcasts = Vec::new();

        for_each_key(cx, attrs, EVENT, |meta| {
            let key = &meta.path;
            match position {
                EventPosition::Enum
                    if *key == NAME || *key == VERSION || *key == ALIAS || *key == UPCAST =>
                {
                    let key = key_name(key);
                    let form = if key == UPCAST.as_str() {
                        format!("{key}(...)")
                    } else {
                        format!("{key} = ...")
                    };
                    return misplaced_key(
                        cx,
                        meta,
                        format!(
                            "`{key}` is set on each variant of an event enum, not on the enum: \
                             put `#[event({form})]` on the variant"
                        ),
                    );
                }
                EventPosition::Variant if *key == CRATE => {
                    return misplaced_key(
                        cx,
                        meta,
                        "`crate` is set on the enum, not on a variant: put `#[event(crate = \"...\")]` above the enum",
                    );
                }
                _ => {}
            }
            if *key == CRATE {
                krate.record(cx, key, parse_crate_path(cx, meta)?);
            } else if *key == NAME {
                name.record(cx, key, parse_lit_str(cx, meta, NAME, "\"OrderPlaced\"")?);
            } else if *key == VERSION {
                version.record(cx, key, parse_version(cx, meta, VERSION)?);
            } else if *key == ALIAS {
                aliases.extend(parse_lit_str(cx, meta, ALIAS, "\"OrderCreated\"")?);
            } else if *key == UPCAST {
                upcasts.extend(parse_upcast(cx, meta)?);
            } else {
                let expected: &[Symbol] = match position {
                    EventPosition::Enum => &[CRATE],
                    EventPosition::Struct => &[NAME, VERSION, ALIAS, UPCAST, CRATE],
                    EventPosition::Variant => &[NAME, VERSION, ALIAS, UPCAST],
                };
                return unknown_key(cx, meta, EVENT, expected);
            }
            Ok(())
        });

        Self {
            krate: krate.value,
            name: name.value,
            version: version.value,
            aliases,
            upcasts,
        }
    }
}

/// Rejects `#[event(...)]` on a field: the payload's field names and encodings are serde's
/// business, so the attribute has nothing to say there, and silently ignoring it would hide
/// the mistake.
pub(crate) fn reject_event_attrs_on_field(cx: &Ctxt, attrs: &[Attribute]) {
    for attr in attrs.iter().filter(|attr| *attr.path() == EVENT) {
        cx.error_spanned_by(
            attr,
            "`#[event(...)]` is not allowed on a field; it goes on the enum, its variants or \
             the struct (use `#[serde(...)]` to rename or skip a field)",
        );
    }
}

/// The keys of `#[aggregate(...)]`.
pub(crate) struct AggregateAttrs {
    /// The first `#[aggregate(...)]`, where missing keys are reported; `None` if there is
    /// none at all.
    pub(crate) first: Option<Attribute>,
    pub(crate) krate: Option<Path>,
    pub(crate) name: Option<LitStr>,
    pub(crate) command: Option<Type>,
    pub(crate) event: Option<Type>,
    pub(crate) error: Option<Type>,
    pub(crate) services: Option<Type>,
    pub(crate) snapshot_version: Option<Version>,
    /// The required keys never written, in the order the docs list them.
    pub(crate) missing: Vec<Symbol>,
}

impl AggregateAttrs {
    /// Reads every `#[aggregate(...)]` in `attrs`.
    pub(crate) fn from_attrs(cx: &Ctxt, attrs: &[Attribute]) -> Self {
        let mut krate = Slot::new(AGGREGATE, CRATE);
        let mut name = Slot::new(AGGREGATE, NAME);
        let mut command = Slot::new(AGGREGATE, COMMAND);
        let mut event = Slot::new(AGGREGATE, EVENT_TYPE);
        let mut error = Slot::new(AGGREGATE, ERROR);
        let mut services = Slot::new(AGGREGATE, SERVICES);
        let mut snapshot_version = Slot::new(AGGREGATE, SNAPSHOT_VERSION);

        let complete = for_each_key(cx, attrs, AGGREGATE, |meta| {
            let key = &meta.path;
            if *key == CRATE {
                krate.record(cx, key, parse_crate_path(cx, meta)?);
            } else if *key == NAME {
                name.record(cx, key, parse_lit_str(cx, meta, NAME, "\"order\"")?);
            } else if *key == SNAPSHOT_VERSION {
                snapshot_version.record(cx, key, parse_version(cx, meta, SNAPSHOT_VERSION)?);
            } else {
                let slot = if *key == COMMAND {
                    &mut command
                } else if *key == EVENT_TYPE {
                    &mut event
                } else if *key == ERROR {
                    &mut error
                } else if *key == SERVICES {
                    &mut services
                } else {
                    return unknown_key(
                        cx,
                        meta,
                        AGGREGATE,
                        &[
                            NAME,
                            COMMAND,
                            EVENT_TYPE,
                            ERROR,
                            SERVICES,
                            SNAPSHOT_VERSION,
                            CRATE,
                        ],
                    );
                };
                let value = parse_type(cx, meta, slot.key)?;
                slot.record(cx, key, value);
            }
            Ok(())
        });

        let missing = [
            (name.seen, NAME),
            (command.seen, COMMAND),
            (event.seen, EVENT_TYPE),
            (error.seen, ERROR),
        ]
        .into_iter()
        // Keys after a syntax error were never read; reporting them as missing would be wrong.
        .filter_map(|(seen, key)| (complete && !seen).then_some(key))
        .collect();

        Self {
            missing,
            first: attrs.iter().find(|attr| *attr.path() == AGGREGATE).cloned(),
            krate: krate.value,
            name: name.value,
            command: command.value,
            event: event.value,
            error: error.value,
            services: services.value,
            snapshot_version: snapshot_version.value,
        }
    }
}

/// One key's value, remembering whether the key was seen so a second occurrence is reported
/// even when the first one's value was invalid.
pub(crate) struct Slot<T> {
    attr: Symbol,
    key: Symbol,
    seen: bool,
    pub(crate) value: Option<T>,
}

impl<T> Slot<T> {
    pub(crate) fn new(attr: Symbol, key: Symbol) -> Self {
        Self {
            attr,
            key,
            seen: false,
            value: None,
        }
    }

    /// Whether the key was written at all (whatever its value).
    pub(crate) fn seen(&self) -> bool {
        self.seen
    }

    /// Records an occurrence of the key at `path` with its parsed value (`None` if the value
    /// was invalid, which is already reported). A second occurrence is an error at its key,
    /// whatever the values, and the first one's value is kept.
    pub(crate) fn record(&mut self, cx: &Ctxt, path: &Path, value: Option<T>) {
        if self.seen {
            cx.error_spanned_by(
                path,
                format!("duplicate key `{}` in `#[{}(...)]`", self.key, self.attr),
            );
        } else {
            self.seen = true;
            self.value = value;
        }
    }
}

/// Runs `logic` on each key of each `#[attr_name(...)]` in `attrs`, recording syntax errors.
///
/// Returns `false` if an attribute had a syntax error, after which its remaining keys were
/// not read (so they cannot be reported as missing).
fn for_each_key(
    cx: &Ctxt,
    attrs: &[Attribute],
    attr_name: Symbol,
    mut logic: impl FnMut(&ParseNestedMeta<'_>) -> syn::Result<()>,
) -> bool {
    let mut complete = true;
    for attr in attrs.iter().filter(|attr| *attr.path() == attr_name) {
        if let Err(error) = attr.parse_nested_meta(|meta| logic(&meta)) {
            cx.syn_error(error);
            complete = false;
        }
    }
    complete
}

/// `key` as written, for messages.
pub(crate) fn key_name(path: &Path) -> String {
    path.to_token_stream().to_string().replace(' ', "")
}

pub(crate) fn unknown_key(
    cx: &Ctxt,
    meta: &ParseNestedMeta<'_>,
    attr: Symbol,
    expected: &[Symbol],
) -> syn::Result<()> {
    let key = key_name(&meta.path);
    // A near miss gets a suggestion; anything else gets the list of valid keys.
    let help = match (closest(&key, expected), expected) {
        (Some(close), _) => format!("; did you mean `{close}`?"),
        (None, []) => String::new(),
        (None, [only]) => format!("; the only key here is `{only}`"),
        (None, [first, second]) => format!("; expected `{first}` or `{second}`"),
        (None, keys) => {
            let list: Vec<String> = keys.iter().map(|key| format!("`{key}`")).collect();
            format!("; expected one of {}", list.join(", "))
        }
    };
    // `upcast(...)` sits inside `#[event(...)]`, not on its own.
    let place = if attr == UPCAST {
        format!("`{attr}(...)`")
    } else {
        format!("`#[{attr}(...)]`")
    };
    misplaced_key(cx, meta, format!("unknown key `{key}` in {place}{help}"))
}

/// The expected key within two edits of `key`, if there is exactly one best candidate.
fn closest(key: &str, expected: &[Symbol]) -> Option<Symbol> {
    let mut scored: Vec<(usize, Symbol)> = expected
        .iter()
        .map(|&symbol| (edit_distance(key, symbol.as_str()), symbol))
        .filter(|&(distance, _)| distance <= 2)
        .collect();
    scored.sort_by_key(|&(distance, _)| distance);
    match scored.as_slice() {
        [(best, symbol), (next, _), ..] if best < next => Some(*symbol),
        [(_, symbol)] => Some(*symbol),
        _ => None,
    }
}

/// Levenshtein distance, for typo suggestions on short keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    // `previous[j]` is the distance between the first `i` chars of `a` and the first `j` of `b`.
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut left = i + 1;
        let mut current = vec![left];
        for ((cb, &diagonal), &up) in b.iter().zip(&previous).zip(previous.iter().skip(1)) {
            left = (diagonal + usize::from(ca != *cb))
                .min(up + 1)
                .min(left + 1);
            current.push(left);
        }
        previous = current;
    }
    previous.last().copied().unwrap_or_default()
}

/// Reports a key that cannot be used here, then skips its value so parsing can go on.
fn misplaced_key(
    cx: &Ctxt,
    meta: &ParseNestedMeta<'_>,
    message: impl std::fmt::Display,
) -> syn::Result<()> {
    cx.error_spanned_by(&meta.path, message);
    if meta.input.peek(Token![=]) {
        meta.input.parse::<Token![=]>()?;
        rest_of_value(meta.input)?;
    } else if meta.input.peek(syn::token::Paren) {
        meta.input.parse::<TokenTree>()?;
    }
    Ok(())
}

/// Consumes the tokens up to the next top-level `,` (or the end), returning them.
pub(crate) fn rest_of_value(input: ParseStream<'_>) -> syn::Result<TokenStream> {
    let mut tokens = TokenStream::new();
    while !input.is_empty() && !input.peek(Token![,]) {
        tokens.extend([input.parse::<TokenTree>()?]);
    }
    Ok(tokens)
}

/// Consumes the `=` after a key; `false` (and an error) if there is none.
fn expect_value(
    cx: &Ctxt,
    meta: &ParseNestedMeta<'_>,
    key: Symbol,
    example: &str,
) -> syn::Result<bool> {
    if meta.input.peek(Token![=]) {
        meta.input.parse::<Token![=]>()?;
        Ok(true)
    } else {
        cx.error_spanned_by(
            &meta.path,
            format!("`{key}` needs a value, like `{key} = {example}`"),
        );
        if meta.input.peek(syn::token::Paren) {
            meta.input.parse::<TokenTree>()?;
        }
        Ok(false)
    }
}

/// Reports a value of the wrong kind at its tokens (or at the key if the value is missing).
fn wrong_value(cx: &Ctxt, meta: &ParseNestedMeta<'_>, value: TokenStream, message: String) {
    if value.is_empty() {
        cx.error_spanned_by(&meta.path, message);
    } else {
        cx.error_spanned_by(value, message);
    }
}

pub(crate) fn parse_lit_str(
    cx: &Ctxt,
    meta: &ParseNestedMeta<'_>,
    key: Symbol,
    example: &str,
) -> syn::Result<Option<LitStr>> {
    if !expect_value(cx, meta, key, example)? {
        return Ok(None);
    }
    if meta.input.peek(LitStr) {
        return meta.input.parse().map(Some);
    }
    let value = rest_of_value(meta.input)?;
    // A bare identifier is most likely the intended text without its quotes.
    let message = match syn::parse2::<Ident>(value.clone()) {
        Ok(ident) => format!("`{key}` takes a string literal: write `{key} = \"{ident}\"`"),
        Err(_) => format!("`{key}` takes a string literal, like `{key} = {example}`"),
    };
    wrong_value(cx, meta, value, message);
    Ok(None)
}

fn parse_version(
    cx: &Ctxt,
    meta: &ParseNestedMeta<'_>,
    key: Symbol,
) -> syn::Result<Option<Version>> {
    if !expect_value(cx, meta, key, "2")? {
        return Ok(None);
    }
    let range = format!(
        "`{key}` takes an integer from 1 to {}, like `{key} = 2`",
        u32::MAX
    );
    if meta.input.peek(LitStr) {
        let lit: LitStr = meta.input.parse()?;
        let message = match lit.value().trim().parse::<u32>() {
            Ok(number) if number > 0 => {
                format!("`{key}` takes an integer, not a string: write `{key} = {number}`")
            }
            _ => range,
        };
        cx.error_spanned_by(&lit, message);
        return Ok(None);
    }
    if !meta.input.peek(LitInt) {
        let value = rest_of_value(meta.input)?;
        wrong_value(cx, meta, value, range);
        return Ok(None);
    }
    let lit: LitInt = meta.input.parse()?;
    if !matches!(lit.suffix(), "" | "u32") {
        cx.error_spanned_by(
            &lit,
            format!(
                "`{key}` is a `u32`; write it without the `{}` suffix",
                lit.suffix()
            ),
        );
        return Ok(None);
    }
    match lit.base10_parse::<u32>() {
        Ok(0) => {
            cx.error_spanned_by(&lit, format!("`{key}` starts at 1, not 0"));
            Ok(None)
        }
        Ok(value) => Ok(Some(Version { value })),
        Err(_) => {
            cx.error_spanned_by(&lit, range);
            Ok(None)
        }
    }
}

/// Parses `upcast(from = N, with = path)` or `upcast(from = N, typed = Type)`; `None` if
/// something is missing or wrong (recorded in `cx`).
fn parse_upcast(cx: &Ctxt, meta: &ParseNestedMeta<'_>) -> syn::Result<Option<Upcast>> {
    if !meta.input.peek(syn::token::Paren) {
        cx.error_spanned_by(
            &meta.path,
            "`upcast` takes its steps in parentheses, like `upcast(from = 1, with = shipped_v1)`",
        );
        rest_of_value(meta.input)?;
        return Ok(None);
    }
    let mut from: Option<(LitInt, u32)> = None;
    let mut from_seen = false;
    let mut unknown_seen = false;
    let mut steps: Vec<(Path, UpcastStep)> = Vec::new();
    meta.parse_nested_meta(|inner| {
        let key = &inner.path;
        if *key == FROM {
            if from_seen {
                cx.error_spanned_by(key, "duplicate key `from` in `upcast(...)`");
            }
            from_seen = true;
            if !expect_value(cx, &inner, FROM, "1")? {
                return Ok(());
            }
            if !inner.input.peek(LitInt) {
                let value = rest_of_value(inner.input)?;
                wrong_value(
                    cx,
                    &inner,
                    value,
                    "`from` takes the stored version this step reads, like `from = 1`".to_owned(),
                );
                return Ok(());
            }
            let lit: LitInt = inner.input.parse()?;
            match lit.base10_parse::<u32>() {
                Ok(value) if value > 0 => from = Some((lit, value)),
                _ => cx.error_spanned_by(
                    &lit,
                    format!("`from` takes a version from 1 to {}", u32::MAX),
                ),
            }
        } else if *key == WITH {
            if !expect_value(cx, &inner, WITH, "shipped_v1_to_v2")? {
                return Ok(());
            }
            let path: Path = inner.input.parse()?;
            steps.push((key.clone(), UpcastStep::Json(path)));
        } else if *key == TYPED {
            if !expect_value(cx, &inner, TYPED, "ShippedV2")? {
                return Ok(());
            }
            let ty: Type = inner.input.parse()?;
            steps.push((key.clone(), UpcastStep::Typed(ty)));
        } else {
            unknown_seen = true;
            return unknown_key(cx, &inner, UPCAST, &[FROM, WITH, TYPED]);
        }
        Ok(())
    })?;
    let step = match steps.len() {
        1 => steps.pop().map(|(_, step)| step),
        // An unknown key was most likely the step, misspelt: that error says enough.
        0 if unknown_seen => None,
        0 => {
            cx.error_spanned_by(
                &meta.path,
                "`upcast(...)` needs `with = function` (a step on the JSON) or `typed = Type` \
                 (decode the old payload as `Type` and convert it with `From`)",
            );
            None
        }
        _ => {
            cx.error_spanned_by(
                &steps[1].0,
                "`upcast(...)` takes one of `with` and `typed`, not both",
            );
            None
        }
    };
    if from.is_none() && !from_seen {
        cx.error_spanned_by(
            &meta.path,
            "`upcast(...)` needs `from = N`: the stored version it reads",
        );
    }
    Ok(match (from, step) {
        (Some((from, from_value)), Some(step)) => Some(Upcast {
            from,
            from_value,
            step,
        }),
        _ => None,
    })
}

fn parse_type(cx: &Ctxt, meta: &ParseNestedMeta<'_>, key: Symbol) -> syn::Result<Option<Type>> {
    let example = match key.as_str() {
        "command" => "OrderCommand",
        "event" => "OrderEvent",
        "error" => "OrderError",
        _ => "MyServices",
    };
    if !expect_value(cx, meta, key, example)? {
        return Ok(None);
    }
    if meta.input.peek(LitStr) {
        let lit: LitStr = meta.input.parse()?;
        cx.error_spanned_by(
            &lit,
            format!(
                "`{key}` takes a type, not a string: write `{key} = {}`",
                lit.value()
            ),
        );
        return Ok(None);
    }
    if meta.input.is_empty() || meta.input.peek(Token![,]) {
        cx.error_spanned_by(
            &meta.path,
            format!("`{key}` needs a type, like `{key} = {example}`"),
        );
        return Ok(None);
    }
    meta.input.parse().map(Some)
}

fn parse_crate_path(cx: &Ctxt, meta: &ParseNestedMeta<'_>) -> syn::Result<Option<Path>> {
    let Some(lit) = parse_lit_str(cx, meta, CRATE, "\"my_crate::es_core\"")? else {
        return Ok(None);
    };
    let message =
        "`crate` takes the path es_core is reachable at, like `crate = \"my_crate::es_core\"`";
    match lit.parse::<Path>() {
        Ok(path)
            if path
                .segments
                .iter()
                .all(|segment| segment.arguments.is_none()) =>
        {
            Ok(Some(path))
        }
        _ => {
            cx.error_spanned_by(&lit, message);
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_character_edits() {
        assert_eq!(edit_distance("name", "name"), 0);
        assert_eq!(edit_distance("nmae", "name"), 2);
        assert_eq!(edit_distance("eror", "error"), 1);
        assert_eq!(edit_distance("", "crate"), 5);
    }

    #[test]
    fn closest_suggests_only_a_clear_winner() {
        assert_eq!(closest("eror", &[NAME, ERROR, EVENT_TYPE]), Some(ERROR));
        assert_eq!(closest("verison", &[NAME, VERSION]), Some(VERSION));
        assert_eq!(closest("colour", &[NAME, VERSION]), None);
    }
}
