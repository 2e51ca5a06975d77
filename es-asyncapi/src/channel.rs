//! One channel: an aggregate category's events, as [`Channel`].

use es_core::{AggregateType, EventDescription, EventSchema};
use schemars::SchemaGenerator;

/// The events of one stream category, published on one address.
///
/// Made from an aggregate type with [`Channel::for_aggregate`], which names it
/// `EventSource<Category>s` at address `<category>s.{streamId}` (`EventSourceOrders` at
/// `orders.{streamId}` for category `order`); both can be changed. Each event type the
/// aggregate's event type derives with `EventSchema` becomes one message of the channel.
///
/// ```
/// # use es_core::{Aggregate, AggregateType, DomainEvent, EventSchema};
/// # #[derive(Debug, Clone, DomainEvent, EventSchema)]
/// # enum OrderEvent { Placed }
/// # #[derive(Debug, thiserror::Error)] #[error("no")] struct Never;
/// # #[derive(Debug, Default, AggregateType)]
/// # #[aggregate(name = "order", command = (), event = OrderEvent, error = Never)]
/// # struct Order;
/// # impl Aggregate for Order {
/// #     async fn handle(&self, _: (), _: &()) -> Result<Vec<OrderEvent>, Never> { Ok(vec![]) }
/// #     fn apply(&mut self, _: &OrderEvent) {}
/// # }
/// use es_asyncapi::Channel;
///
/// let channel = Channel::for_aggregate::<Order>();
/// assert_eq!(channel.name(), "EventSourceOrders");
/// assert_eq!(channel.address(), "orders.{streamId}");
///
/// let channel = channel.with_name("orders").with_address("shop.orders.{streamId}");
/// assert_eq!(channel.name(), "orders");
/// ```
#[derive(Debug, Clone)]
pub struct Channel {
    pub(crate) name: String,
    pub(crate) address: String,
    pub(crate) category: &'static str,
    pub(crate) title: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) describe: fn(&mut SchemaGenerator) -> Vec<EventDescription>,
}

impl Channel {
    /// The channel of aggregate `A`'s events.
    #[must_use]
    pub fn for_aggregate<A>() -> Self
    where
        A: AggregateType,
        A::Event: EventSchema,
    {
        let plural = format!("{}s", A::NAME);
        Self {
            name: format!("EventSource{}", pascal_case(&plural)),
            address: format!("{plural}.{{streamId}}"),
            category: A::NAME,
            title: None,
            description: None,
            describe: <A::Event as EventSchema>::describe,
        }
    }

    /// Names the channel (its key in the document, and what operations refer to).
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the address pattern: dot-separated tokens, each a literal or one of the
    /// parameters `{streamId}` (the id within the category) and `{category}`. It is checked
    /// when the document is built.
    #[must_use]
    pub fn with_address(mut self, pattern: impl Into<String>) -> Self {
        self.address = pattern.into();
        self
    }

    /// Sets a short, human title.
    #[must_use]
    pub fn with_title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// Sets a longer description (CommonMark).
    #[must_use]
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// The channel's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address pattern as given.
    #[must_use]
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The stream category whose events it carries.
    #[must_use]
    pub fn category(&self) -> &'static str {
        self.category
    }
}

/// `order_lines` → `OrderLines`: categories are ASCII letters, digits and `_`.
fn pascal_case(text: &str) -> String {
    text.split('_')
        .filter(|word| !word.is_empty())
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::pascal_case;

    #[test]
    fn categories_become_pascal_case() {
        assert_eq!(pascal_case("orders"), "Orders");
        assert_eq!(pascal_case("api_products"), "ApiProducts");
        assert_eq!(pascal_case("v2_items"), "V2Items");
    }
}
