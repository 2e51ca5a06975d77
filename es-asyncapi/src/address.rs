//! Channel addresses: subject patterns such as `orders.{streamId}`.

use es_core::StreamId;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use crate::error::AsyncApiError;

/// The parameters an address may hold, with what each stands for.
pub(crate) const PARAMETERS: &[(&str, &str)] = &[
    (
        "category",
        "The stream category, such as `order` in stream `order-42`.",
    ),
    (
        "streamId",
        "The id of the stream within its category, such as `42` in stream `order-42`; characters a subject token cannot hold (`.`, `*`, `>`, `%`, whitespace, control and non-ASCII) are percent-encoded, so `a.b` is `a%2Eb`.",
    ),
];

/// A checked channel address: dot-separated tokens, each a literal or one `{parameter}`,
/// such as `orders.{streamId}`.
///
/// The pattern is also a publish subject once its parameters are filled in, so it holds to
/// what NATS and most brokers accept: no empty token, no whitespace, no wildcard (`*`,
/// `>`), and only the parameters `{streamId}` (the id within the category) and
/// `{category}`. [`subject`](Address::subject) fills them in for one stream, encoding what a
/// subject token cannot hold, so a relay and the document agree on where each event goes.
///
/// ```
/// use es_asyncapi::Address;
/// use es_core::StreamId;
///
/// let address = Address::parse("EventSourceOrders", "orders.{streamId}")?;
/// assert_eq!(address.subject(&StreamId::new("order", "42")?), "orders.42");
/// // Dots, wildcards, spaces and `%` in an id are percent-encoded: one token per id.
/// assert_eq!(address.subject(&StreamId::new("order", "a.b *")?), "orders.a%2Eb%20%2A");
/// assert_eq!(address.filter(), "orders.*");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pattern: String,
    parameters: Vec<&'static str>,
}

impl Address {
    /// Checks `pattern`, the address of channel `channel` (named in the error).
    ///
    /// # Errors
    ///
    /// [`AsyncApiError::InvalidAddress`] saying which token is wrong and why.
    pub fn parse(channel: &str, pattern: &str) -> Result<Self, AsyncApiError> {
        let invalid = |reason: String| AsyncApiError::InvalidAddress {
            channel: channel.to_owned(),
            address: pattern.to_owned(),
            reason,
        };
        let mut parameters = Vec::new();
        for token in pattern.split('.') {
            if token.is_empty() {
                return Err(invalid(
                    "a token is empty (two dots in a row, or a dot at either end)".to_owned(),
                ));
            }
            if let Some(name) = token.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
                let Some(&(known, _)) = PARAMETERS.iter().find(|(known, _)| *known == name) else {
                    return Err(invalid(format!(
                        "`{{{name}}}` is not a parameter; use `{{streamId}}` or `{{category}}`"
                    )));
                };
                if parameters.contains(&known) {
                    return Err(invalid(format!("`{{{name}}}` appears twice")));
                }
                parameters.push(known);
                continue;
            }
            if let Some(bad) = token
                .chars()
                .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '*' | '>' | '{' | '}'))
            {
                return Err(invalid(format!(
                    "token `{token}` holds {bad:?}; a token is a literal without whitespace, \
                     wildcards or braces, or exactly one `{{parameter}}`"
                )));
            }
        }
        Ok(Self {
            pattern: pattern.to_owned(),
            parameters,
        })
    }

    /// The pattern as written.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// The parameters it holds, in order.
    #[must_use]
    pub fn parameters(&self) -> &[&'static str] {
        &self.parameters
    }

    /// The subject of `stream`'s events: the pattern with `{category}` and `{streamId}`
    /// filled in. The id is percent-encoded where a subject token could not hold it (`.`,
    /// `*`, `>`, `%`, whitespace, control and non-ASCII characters), so that each stream is
    /// one token and no id can reach another stream's subject.
    #[must_use]
    pub fn subject(&self, stream: &StreamId) -> String {
        self.pattern
            .split('.')
            .map(|token| match token {
                "{category}" => stream.category().to_owned(),
                "{streamId}" => utf8_percent_encode(stream.id(), NOT_IN_A_TOKEN).to_string(),
                literal => literal.to_owned(),
            })
            .collect::<Vec<_>>()
            .join(".")
    }

    /// The subject filter that matches every stream's subject: each parameter a `*`.
    #[must_use]
    pub fn filter(&self) -> String {
        self.pattern
            .split('.')
            .map(|token| if token.starts_with('{') { "*" } else { token })
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// What a subject token cannot hold, or holds only by convention: token and wildcard
/// characters, whitespace, and `%` itself so that the encoding can be undone. Controls and
/// non-ASCII are always encoded.
const NOT_IN_A_TOKEN: &AsciiSet = &CONTROLS
    .add(b'.')
    .add(b'*')
    .add(b'>')
    .add(b'%')
    .add(b' ')
    .add(b'\t');

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_literals_and_known_parameters() {
        let address = Address::parse("c", "shop.{category}.{streamId}").unwrap();
        assert_eq!(address.parameters(), ["category", "streamId"]);
        assert_eq!(address.as_str(), "shop.{category}.{streamId}");
        assert!(
            Address::parse("c", "orders")
                .unwrap()
                .parameters()
                .is_empty()
        );
    }

    #[test]
    fn subjects_keep_each_stream_in_one_token() {
        let address = Address::parse("c", "shop.{category}.{streamId}").unwrap();
        let subject = |id: &str| address.subject(&StreamId::new("order", id).unwrap());
        assert_eq!(subject("42"), "shop.order.42");
        assert_eq!(subject("2f1c-77"), "shop.order.2f1c-77");
        assert_eq!(subject("a.b"), "shop.order.a%2Eb");
        assert_eq!(subject(">"), "shop.order.%3E");
        assert_eq!(subject("50%"), "shop.order.50%25");
        assert_eq!(subject("é"), "shop.order.%C3%A9");
        assert_eq!(address.filter(), "shop.*.*");
        for id in ["a.b", "*", ">", "x y", "é.%", "a.>.*"] {
            assert_eq!(subject(id).split('.').count(), 3, "{id:?}");
        }
    }

    #[test]
    fn refuses_what_a_subject_cannot_hold() {
        for bad in [
            "",
            "orders.",
            ".orders",
            "orders..x",
            "orders.*",
            "orders.>",
            "orders.a b",
            "orders.{id}",
            "orders.{streamId}.{streamId}",
            "orders.x{streamId}",
            "orders.{streamId",
        ] {
            let error = Address::parse("EventSourceOrders", bad).unwrap_err();
            let message = error.to_string();
            assert!(
                message.contains("EventSourceOrders") && message.contains(&format!("`{bad}`")),
                "{bad:?}: {message}"
            );
        }
    }
}
