//! [`PayloadError`]: why stored JSON (an event's payload, its metadata) does not decode,
//! told without any of the stored values.
//!
//! serde's messages quote the values they refuse (`invalid type: string "ada@example.com",
//! expected u64`), and stored values are personal data and secrets as often as not. Decode
//! errors reach logs, projection statuses and dead-letter rows, so they keep what serde said
//! was wrong and where, and drop every value.

use std::fmt;

/// Stored JSON does not fit the type it is decoded into: serde_json's message with every
/// stored value taken out, where in the text it failed, and its category.
///
/// What is kept of serde's message:
///
/// - `invalid type:` and `invalid value:`: the kind of value found (`string`, `integer`,
///   `floating point`, `boolean`, `null`, `map`, `sequence`, ...), never the value, and the
///   `expected ...` part, which the code wrote;
/// - `invalid length`: the `expected ...` part only;
/// - `unknown variant` and `unknown field`: what was expected, never the stored name;
/// - `missing field` and `duplicate field`: the field's name, which is the code's;
/// - serde_json's syntax messages (`EOF while parsing a string`, `trailing characters`, ...)
///   as they are: they never quote the text;
/// - any other message (a `Deserialize` implementation's own, such as uuid's or chrono's):
///   everything from its first backtick or double quote to its last is replaced by
///   `<redacted>`, since that is where messages put values. A message that writes a value
///   without quoting it cannot be told apart from prose; quote values in your own
///   `Deserialize` errors.
///
/// [`Display`](fmt::Display) is the kept message, then the line and column when decoding
/// read text; [`Debug`](fmt::Debug) shows the same parts. There is no
/// [`source`](std::error::Error::source): serde's error holds the values.
///
/// ```
/// use es_core::{PayloadError, PayloadErrorCategory};
///
/// let serde_error = serde_json::from_str::<u64>(r#""ada@example.com""#).unwrap_err();
/// let error = PayloadError::from(serde_error);
/// assert_eq!(error.message(), "invalid type: string, expected u64");
/// assert_eq!((error.line(), error.column()), (1, 17));
/// assert_eq!(error.category(), PayloadErrorCategory::Data);
/// assert_eq!(
///     error.to_string(),
///     "invalid type: string, expected u64 at line 1 column 17"
/// );
/// assert!(!format!("{error:?}").contains("ada"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct PayloadError(Box<Failure>);

/// What [`PayloadError`] holds; boxed so that decode and read errors stay small.
#[derive(Clone, PartialEq, Eq)]
struct Failure {
    message: String,
    line: usize,
    column: usize,
    category: PayloadErrorCategory,
}

/// What kind of failure a [`PayloadError`] is: serde_json's categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PayloadErrorCategory {
    /// The text is not JSON.
    Syntax,
    /// The JSON does not fit the type (a wrong type, a missing field, a value refused).
    Data,
    /// The text ends in the middle of a JSON value.
    Eof,
    /// Reading the input failed (never for a payload handed over whole).
    Io,
}

impl PayloadError {
    /// What is wrong, without any stored value.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The line (from 1) where decoding text failed; 0 when decoding a JSON value.
    pub fn line(&self) -> usize {
        self.0.line
    }

    /// The column (from 1) where decoding text failed; 0 when decoding a JSON value.
    pub fn column(&self) -> usize {
        self.0.column
    }

    /// What kind of failure this is.
    pub fn category(&self) -> PayloadErrorCategory {
        self.0.category
    }
}

impl From<serde_json::Error> for PayloadError {
    /// Keeps what serde_json reports without the values it quotes (see [`PayloadError`]).
    fn from(error: serde_json::Error) -> Self {
        use serde_json::error::Category;

        let (line, column) = (error.line(), error.column());
        let category = match error.classify() {
            Category::Syntax => PayloadErrorCategory::Syntax,
            Category::Data => PayloadErrorCategory::Data,
            Category::Eof => PayloadErrorCategory::Eof,
            Category::Io => PayloadErrorCategory::Io,
        };
        // serde_json has no accessor for the bare message: its `Display` adds the location
        // to it, and the location is known, so it comes off exactly.
        let shown = error.to_string();
        let location = format!(" at line {line} column {column}");
        let bare = match line {
            0 => shown.as_str(),
            _ => shown.strip_suffix(&location).unwrap_or(&shown),
        };
        let message = match category {
            PayloadErrorCategory::Syntax | PayloadErrorCategory::Eof => syntax(bare),
            PayloadErrorCategory::Data | PayloadErrorCategory::Io => data(bare),
        };
        Self(Box::new(Failure {
            message,
            line,
            column,
            category,
        }))
    }
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)?;
        if self.0.line != 0 {
            write!(f, " at line {} column {}", self.0.line, self.0.column)?;
        }
        Ok(())
    }
}

impl fmt::Debug for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PayloadError")
            .field("message", &self.0.message)
            .field("line", &self.0.line)
            .field("column", &self.0.column)
            .field("category", &self.0.category)
            .finish()
    }
}

impl std::error::Error for PayloadError {}

/// What replaces the quoted parts of a message.
const REDACTED: &str = "<redacted>";

/// serde's separator before the part of a message that the code wrote. Values come before
/// it and may hold it too, so messages are split at its last occurrence: what follows that
/// is the code's.
const EXPECTED: &str = ", expected ";

/// What serde's `Unexpected` writes before the value, for each kind of value (serde_json
/// writes `null` for the unit).
const KINDS: &[&str] = &[
    "boolean",
    "integer",
    "floating point",
    "character",
    "string",
    "byte array",
    "unit value",
    "null",
    "Option value",
    "newtype struct",
    "sequence",
    "map",
    "enum",
    "unit variant",
    "newtype variant",
    "tuple variant",
    "struct variant",
];

/// The messages serde_json writes for text that is not JSON, or ends too soon, are fixed
/// texts; those that hold a quote or backtick are these. Any other one with a quote or
/// backtick (a later serde_json that quotes the text) goes through the general rule.
const SYNTAX_QUOTING: &[&str] = &[
    "expected `:`",
    "expected `,` or `]`",
    "expected `,` or `}`",
    "expected `\"`",
];

fn syntax(message: &str) -> String {
    if SYNTAX_QUOTING.contains(&message) {
        message.to_owned()
    } else {
        unquoted(message)
    }
}

/// A data message (serde's or a `Deserialize` implementation's) without its values.
fn data(message: &str) -> String {
    if let Some(found) = message.strip_prefix("invalid type: ") {
        return unexpected("invalid type", found);
    }
    if let Some(found) = message.strip_prefix("invalid value: ") {
        return unexpected("invalid value", found);
    }
    if message.starts_with("invalid length ") {
        return expecting("invalid length", message);
    }
    if message.starts_with("unknown variant ") {
        return unknown("unknown variant", message, ", there are no variants");
    }
    if message.starts_with("unknown field ") {
        return unknown("unknown field", message, ", there are no fields");
    }
    // serde takes these names as `&'static str`: they come from the code, never the data.
    if ["missing field `", "duplicate field `"]
        .iter()
        .any(|prefix| names_one_field(message, prefix))
    {
        return message.to_owned();
    }
    unquoted(message)
}

/// `{what}: {kind}, expected {expected}` from `found` (the kind, the value, then the
/// expected part), keeping the kind only when it is one serde writes.
fn unexpected(what: &str, found: &str) -> String {
    let Some((value, expected)) = found.rsplit_once(EXPECTED) else {
        return what.to_owned();
    };
    let kind = KINDS.iter().find(|kind| {
        value
            .strip_prefix(**kind)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
    });
    match kind {
        Some(kind) => format!("{what}: {kind}{EXPECTED}{expected}"),
        None => format!("{what}{EXPECTED}{expected}"),
    }
}

/// `{what}, expected {expected}`, dropping everything before the expected part.
fn expecting(what: &str, message: &str) -> String {
    match message.rsplit_once(EXPECTED) {
        Some((_, expected)) => format!("{what}{EXPECTED}{expected}"),
        None => what.to_owned(),
    }
}

/// An unknown variant or field, without its name. serde writes either what it expected or
/// `none` (when the type has no variants or fields); `none` is checked first, since then
/// the stored name is all there is before it and may hold the `expected` separator.
fn unknown(what: &str, message: &str, none: &str) -> String {
    if message.ends_with(none) {
        format!("{what}{none}")
    } else {
        expecting(what, message)
    }
}

/// Whether `message` is exactly `{prefix}name`` with a name free of backticks.
fn names_one_field(message: &str, prefix: &str) -> bool {
    message
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_suffix('`'))
        .is_some_and(|name| !name.contains('`'))
}

/// `message` with everything from its first backtick or double quote to its last replaced.
///
/// Values sit between delimiters, but a value may hold delimiters itself, so matching them
/// pair by pair could end a quoted part inside the value and show the rest; the whole span
/// from the first to the last holds every quoted value whatever it contains.
fn unquoted(message: &str) -> String {
    let is_delimiter = |c: char| c == '`' || c == '"';
    let Some(first) = message.find(is_delimiter) else {
        return message.to_owned();
    };
    // A lone delimiter opens a value that runs to the end.
    let end = match message.rfind(is_delimiter) {
        Some(last) if last > first => last + 1,
        _ => message.len(),
    };
    format!("{}{REDACTED}{}", &message[..first], &message[end..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::Error as _;

    fn custom(message: &str) -> PayloadError {
        PayloadError::from(serde_json::Error::custom(message))
    }

    #[test]
    fn keeps_the_kind_and_what_was_expected() {
        let cases = [
            (
                r#"invalid type: string "a, expected b", expected u64"#,
                "invalid type: string, expected u64",
            ),
            (
                "invalid value: integer `5`, expected a value below 3",
                "invalid value: integer, expected a value below 3",
            ),
            (
                "invalid type: floating point `1.5`, expected u8",
                "invalid type: floating point, expected u8",
            ),
            (
                "invalid type: unit value, expected a string",
                "invalid type: unit value, expected a string",
            ),
            (
                "invalid type: stringly `x`, expected u8",
                "invalid type, expected u8",
            ),
            ("invalid type: `x` without expected", "invalid type"),
            (
                "invalid length 3, expected a tuple of size 2",
                "invalid length, expected a tuple of size 2",
            ),
        ];
        for (message, kept) in cases {
            assert_eq!(custom(message).message(), kept, "{message}");
        }
    }

    #[test]
    fn drops_unknown_names() {
        let cases = [
            (
                "unknown variant `x, expected y`, expected `A` or `B`",
                "unknown variant, expected `A` or `B`",
            ),
            (
                "unknown variant `x, expected secret`, there are no variants",
                "unknown variant, there are no variants",
            ),
            (
                "unknown field `k`, expected one of `a`, `b`, `c`",
                "unknown field, expected one of `a`, `b`, `c`",
            ),
            (
                "unknown field `k`, there are no fields",
                "unknown field, there are no fields",
            ),
            ("unknown field `k` and more", "unknown field"),
        ];
        for (message, kept) in cases {
            assert_eq!(custom(message).message(), kept, "{message}");
        }
    }

    #[test]
    fn keeps_field_names_from_the_code() {
        for message in ["missing field `amount`", "duplicate field `amount`"] {
            assert_eq!(custom(message).message(), message);
        }
        // Not serde's shape: the general rule.
        assert_eq!(
            custom("missing field `a` in `secret`").message(),
            "missing field <redacted>"
        );
    }

    #[test]
    fn other_messages_lose_every_quoted_span() {
        let cases = [
            (
                "invalid character: expected an optional prefix of `urn:uuid:` followed by [0-9a-fA-F-], found `z` at 1",
                "invalid character: expected an optional prefix of <redacted> at 1",
            ),
            ("`a`b` is not an email", "<redacted> is not an email"),
            ("bad \"a\\\"b\" and `c`, sorry", "bad <redacted>, sorry"),
            ("opened `and never closed", "opened <redacted>"),
            (
                "input contains invalid characters",
                "input contains invalid characters",
            ),
        ];
        for (message, kept) in cases {
            assert_eq!(custom(message).message(), kept, "{message}");
        }
    }

    #[test]
    fn syntax_errors_keep_their_fixed_texts_and_location() {
        let error = PayloadError::from(serde_json::from_str::<u8>("[1 2]").unwrap_err());
        assert_eq!(error.message(), "invalid type: sequence, expected u8");
        let error =
            PayloadError::from(serde_json::from_str::<serde_json::Value>("{\"a\" 1}").unwrap_err());
        assert_eq!(error.message(), "expected `:`");
        assert_eq!(error.category(), PayloadErrorCategory::Syntax);
        assert_eq!(error.to_string(), "expected `:` at line 1 column 6");
        let error =
            PayloadError::from(serde_json::from_str::<serde_json::Value>("\"secret").unwrap_err());
        assert_eq!(error.category(), PayloadErrorCategory::Eof);
        assert_eq!(error.message(), "EOF while parsing a string");
    }

    #[test]
    fn values_lose_no_location_they_do_not_have() {
        let error = PayloadError::from(
            serde_json::from_value::<u8>(serde_json::json!("secret")).unwrap_err(),
        );
        assert_eq!((error.line(), error.column()), (0, 0));
        assert_eq!(error.to_string(), "invalid type: string, expected u8");
        assert_eq!(
            format!("{error:?}"),
            r#"PayloadError { message: "invalid type: string, expected u8", line: 0, column: 0, category: Data }"#
        );
    }
}
