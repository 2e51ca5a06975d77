//! Channel addresses: subject patterns such as `orders.{streamId}`.

use crate::error::AsyncApiError;

/// The parameters an address may hold, with what each stands for.
pub(crate) const PARAMETERS: &[(&str, &str)] = &[
    (
        "category",
        "The stream category, such as `order` in stream `order-42`.",
    ),
    (
        "streamId",
        "The id of the stream within its category, such as `42` in stream `order-42`.",
    ),
];

/// A checked address pattern: dot-separated tokens, each a literal or one `{parameter}`.
///
/// The pattern is also a publish subject once its parameters are filled in, so it holds to
/// what NATS and most brokers accept: no empty token, no whitespace, no wildcard (`*`,
/// `>`), and only the parameters in [`PARAMETERS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Address {
    pattern: String,
    parameters: Vec<&'static str>,
}

impl Address {
    /// Checks `pattern` for the channel `channel` (named in the error).
    pub(crate) fn parse(channel: &str, pattern: &str) -> Result<Self, AsyncApiError> {
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
    pub(crate) fn as_str(&self) -> &str {
        &self.pattern
    }

    /// The parameters it holds, in order.
    pub(crate) fn parameters(&self) -> &[&'static str] {
        &self.parameters
    }
}

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
