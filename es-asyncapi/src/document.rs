//! The document and its builder: [`AsyncApi`], [`Operation`], [`Document`].

use std::collections::BTreeMap;

use es_core::EventDescription;
use schemars::generate::{Contract, SchemaSettings};
use serde_json::{Value, json};

use crate::address::{self, Address};
use crate::channel::Channel;
use crate::error::AsyncApiError;
use crate::headers;

/// Where the document keeps the schemas that payloads refer to.
const SCHEMAS_PATH: &str = "/components/schemas/";

/// Builds an AsyncAPI 3.0.0 document: the service, its channels and what it does on them.
///
/// ```
/// # use es_core::{Aggregate, AggregateType, DomainEvent, EventSchema};
/// # /// What happens to an order.
/// # #[derive(Debug, Clone, DomainEvent, EventSchema)]
/// # enum OrderEvent {
/// #     /// The order left the warehouse.
/// #     #[event(name = "OrderShipped")]
/// #     Shipped { carrier: String },
/// # }
/// # #[derive(Debug, thiserror::Error)] #[error("no")] struct Never;
/// # #[derive(Debug, Default, AggregateType)]
/// # #[aggregate(name = "order", command = (), event = OrderEvent, error = Never)]
/// # struct Order;
/// # impl Aggregate for Order {
/// #     async fn handle(&self, _: (), _: &()) -> Result<Vec<OrderEvent>, Never> { Ok(vec![]) }
/// #     fn apply(&mut self, _: &OrderEvent) {}
/// # }
/// use es_asyncapi::{AsyncApi, Channel, Operation};
///
/// let document = AsyncApi::new("Orders", "1.0.0")
///     .channel(Channel::for_aggregate::<Order>())
///     .operation(Operation::send("publishOrderEvents", "EventSourceOrders"))
///     .build()?;
/// let json = document.as_json();
/// assert_eq!(json["asyncapi"], "3.0.0");
/// assert_eq!(json["channels"]["EventSourceOrders"]["address"], "orders.{streamId}");
/// assert_eq!(json["components"]["messages"]["OrderShipped"]["summary"], "The order left the warehouse.");
/// assert!(document.to_yaml()?.contains("OrderShipped"));
/// # Ok::<(), es_asyncapi::AsyncApiError>(())
/// ```
#[derive(Debug, Clone)]
pub struct AsyncApi {
    title: String,
    version: String,
    description: Option<String>,
    servers: Vec<Server>,
    channels: Vec<Channel>,
    operations: Vec<Operation>,
}

#[derive(Debug, Clone)]
struct Server {
    name: String,
    host: String,
    protocol: String,
    description: Option<String>,
}

impl AsyncApi {
    /// A document for the application `title` at API `version` (the version of the
    /// document, such as `1.0.0`, not of AsyncAPI).
    #[must_use]
    pub fn new(title: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            version: version.into(),
            description: None,
            servers: Vec::new(),
            channels: Vec::new(),
            operations: Vec::new(),
        }
    }

    /// Describes the application (CommonMark).
    #[must_use]
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Adds a server: a broker at `host` (such as `localhost:4222`) speaking `protocol`
    /// (such as `nats`).
    #[must_use]
    pub fn server(
        mut self,
        name: impl Into<String>,
        host: impl Into<String>,
        protocol: impl Into<String>,
    ) -> Self {
        self.servers.push(Server {
            name: name.into(),
            host: host.into(),
            protocol: protocol.into(),
            description: None,
        });
        self
    }

    /// Adds a channel.
    #[must_use]
    pub fn channel(mut self, channel: Channel) -> Self {
        self.channels.push(channel);
        self
    }

    /// Adds an operation on one of the channels.
    #[must_use]
    pub fn operation(mut self, operation: Operation) -> Self {
        self.operations.push(operation);
        self
    }

    /// Checks everything and builds the document.
    ///
    /// # Errors
    ///
    /// An [`AsyncApiError`] naming the channel, operation or event type at fault: an invalid
    /// address or id, a duplicate name, an event type in two channels, an operation on a
    /// channel or message the document does not hold.
    pub fn build(self) -> Result<Document, AsyncApiError> {
        let mut generator = SchemaSettings::draft07()
            .with(|settings| {
                settings.definitions_path = SCHEMAS_PATH.into();
                settings.meta_schema = None;
                // What a reader may find in the store, which is what the relay publishes:
                // events written before a field with a default was added lack it.
                settings.contract = Contract::Deserialize;
            })
            .into_generator();

        let mut channels = BTreeMap::new();
        let mut messages = BTreeMap::new();
        let mut carried: BTreeMap<&str, Vec<&'static str>> = BTreeMap::new();
        let mut owner: BTreeMap<&'static str, &str> = BTreeMap::new();
        for channel in &self.channels {
            check_id("channel", &channel.name, String::new())?;
            if channels.contains_key(channel.name.as_str()) {
                return Err(duplicate("channel", &channel.name));
            }
            let address = Address::parse(&channel.name, &channel.address)?;
            let mut described = (channel.describe)(&mut generator);
            // `describe` builds each payload's schema directly; the draft-07 rewrites the
            // generator applies to definitions apply to the payloads too.
            for event in &mut described {
                let payload = event.payload_mut();
                for transform in generator.transforms_mut() {
                    transform.transform(payload);
                }
            }
            let mut refs = BTreeMap::new();
            for event in &described {
                check_id(
                    "event type",
                    event.name(),
                    format!(" (in channel `{}`)", channel.name),
                )?;
                if let Some(first) = owner.insert(event.name(), &channel.name) {
                    return Err(AsyncApiError::DuplicateMessage {
                        event_type: event.name().to_owned(),
                        first: first.to_owned(),
                        second: channel.name.clone(),
                    });
                }
                refs.insert(
                    event.name(),
                    json!({ "$ref": format!("#/components/messages/{}", event.name()) }),
                );
                messages.insert(event.name(), message(channel.category, event));
            }
            carried.insert(
                &channel.name,
                described.iter().map(EventDescription::name).collect(),
            );
            channels.insert(
                channel.name.as_str(),
                channel_object(channel, &address, &refs),
            );
        }

        let mut operations = BTreeMap::new();
        for operation in &self.operations {
            check_id("operation", &operation.id, String::new())?;
            if operations.contains_key(operation.id.as_str()) {
                return Err(duplicate("operation", &operation.id));
            }
            let Some(available) = carried.get(operation.channel.as_str()) else {
                return Err(AsyncApiError::UnknownChannel {
                    operation: operation.id.clone(),
                    channel: operation.channel.clone(),
                });
            };
            let chosen: Vec<&str> = if operation.messages.is_empty() {
                available.clone()
            } else {
                operation.messages.iter().map(String::as_str).collect()
            };
            if let Some(missing) = chosen.iter().find(|name| !available.contains(name)) {
                return Err(AsyncApiError::UnknownMessage {
                    operation: operation.id.clone(),
                    channel: operation.channel.clone(),
                    message: (*missing).to_owned(),
                    carried: available.join(", "),
                });
            }
            operations.insert(operation.id.as_str(), operation_object(operation, &chosen));
        }

        let mut info = json!({ "title": self.title, "version": self.version });
        if let Some(description) = &self.description {
            info["description"] = json!(description);
        }
        let mut document = json!({
            "asyncapi": "3.0.0",
            "info": info,
            "defaultContentType": "application/json",
            "channels": channels,
            "operations": operations,
            "components": {
                "messages": messages,
                "schemas": generator.take_definitions(true),
            },
        });
        if !self.servers.is_empty() {
            let servers: BTreeMap<&str, Value> = self
                .servers
                .iter()
                .map(|server| {
                    let mut object = json!({ "host": server.host, "protocol": server.protocol });
                    if let Some(description) = &server.description {
                        object["description"] = json!(description);
                    }
                    (server.name.as_str(), object)
                })
                .collect();
            document["servers"] = json!(servers);
        }
        Ok(Document { json: document })
    }
}

/// What an application does on a channel: sends its messages, or receives them.
#[derive(Debug, Clone)]
pub struct Operation {
    id: String,
    action: &'static str,
    channel: String,
    messages: Vec<String>,
    summary: Option<String>,
}

impl Operation {
    /// The application sends the channel's messages (it owns the aggregate).
    #[must_use]
    pub fn send(id: impl Into<String>, channel: impl Into<String>) -> Self {
        Self::new(id.into(), "send", channel.into())
    }

    /// The application receives the channel's messages (it consumes another's events).
    #[must_use]
    pub fn receive(id: impl Into<String>, channel: impl Into<String>) -> Self {
        Self::new(id.into(), "receive", channel.into())
    }

    fn new(id: String, action: &'static str, channel: String) -> Self {
        Self {
            id,
            action,
            channel,
            messages: Vec::new(),
            summary: None,
        }
    }

    /// Only these messages (event type names) of the channel; all of them by default.
    #[must_use]
    pub fn messages<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.messages = names.into_iter().map(Into::into).collect();
        self
    }

    /// Says what the operation is for.
    #[must_use]
    pub fn summary(mut self, summary: impl Into<String>) -> Self {
        self.summary = Some(summary.into());
        self
    }
}

/// A built AsyncAPI 3.0.0 document, as JSON or YAML.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    json: Value,
}

impl Document {
    /// The document as a JSON value.
    #[must_use]
    pub fn as_json(&self) -> &Value {
        &self.json
    }

    /// The document as indented JSON text, with a final newline.
    #[must_use]
    pub fn to_json_pretty(&self) -> String {
        // Writing a map of strings to JSON values cannot fail.
        serde_json::to_string_pretty(&ReadingOrder(&self.json))
            .map(|text| text + "\n")
            .unwrap_or_default()
    }

    /// The document as YAML text.
    ///
    /// # Errors
    ///
    /// [`AsyncApiError::Yaml`] if the YAML writer fails, which a JSON value should never
    /// make it do.
    pub fn to_yaml(&self) -> Result<String, AsyncApiError> {
        serde_norway::to_string(&ReadingOrder(&self.json)).map_err(AsyncApiError::Yaml)
    }
}

/// AsyncAPI keys its channels, operations and messages by ids of this shape.
fn check_id(what: &'static str, name: &str, hint: String) -> Result<(), AsyncApiError> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if valid {
        Ok(())
    } else {
        Err(AsyncApiError::InvalidId {
            what,
            name: name.to_owned(),
            hint,
        })
    }
}

fn duplicate(what: &'static str, name: &str) -> AsyncApiError {
    AsyncApiError::Duplicate {
        what,
        name: name.to_owned(),
    }
}

fn channel_object(channel: &Channel, address: &Address, refs: &BTreeMap<&str, Value>) -> Value {
    let mut object = json!({ "address": address.as_str(), "messages": refs });
    if !address.parameters().is_empty() {
        let parameters: BTreeMap<&str, Value> = address
            .parameters()
            .iter()
            .map(|name| {
                let description = address::PARAMETERS
                    .iter()
                    .find(|(known, _)| known == name)
                    .map_or("", |(_, description)| description);
                (*name, json!({ "description": description }))
            })
            .collect();
        object["parameters"] = json!(parameters);
    }
    if let Some(title) = &channel.title {
        object["title"] = json!(title);
    }
    if let Some(description) = &channel.description {
        object["description"] = json!(description);
    }
    object
}

fn operation_object(operation: &Operation, messages: &[&str]) -> Value {
    let channel = &operation.channel;
    let refs: Vec<Value> = messages
        .iter()
        .map(|name| json!({ "$ref": format!("#/channels/{channel}/messages/{name}") }))
        .collect();
    let mut object = json!({
        "action": operation.action,
        "channel": { "$ref": format!("#/channels/{channel}") },
        "messages": refs,
    });
    if let Some(summary) = &operation.summary {
        object["summary"] = json!(summary);
    }
    object
}

/// One event type as a message: its headers, payload, docs, and the versions that may arrive.
fn message(category: &str, event: &EventDescription) -> Value {
    let mut versions: Vec<u32> = event.older_versions().to_vec();
    versions.push(event.version());
    let mut object = json!({
        "name": event.name(),
        "title": words(event.rust_name()),
        "contentType": "application/json",
        "headers": headers::schema(category, event.name(), event.aliases(), &versions),
        "payload": event.payload(),
        "correlationId": {
            "description": "Everything one business flow caused shares this id.",
            "location": format!("$message.header#/{}", headers::CORRELATION_ID),
        },
        "x-es-schema-version": event.version(),
    });
    let (summary, description) = split_docs(event.docs());
    if let Some(summary) = summary {
        object["summary"] = json!(summary);
    }
    if let Some(description) = description {
        object["description"] = json!(description);
    }
    if !event.older_versions().is_empty() {
        object["x-es-older-versions"] = json!(event.older_versions());
    }
    if !event.aliases().is_empty() {
        object["x-es-aliases"] = json!(event.aliases());
    }
    object
}

/// The first paragraph of a doc comment (one line), and the rest.
fn split_docs(docs: &str) -> (Option<String>, Option<String>) {
    let mut paragraphs = docs.splitn(2, "\n\n");
    let summary = paragraphs
        .next()
        .map(|first| first.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|first| !first.is_empty());
    let rest = paragraphs
        .next()
        .map(str::trim)
        .filter(|rest| !rest.is_empty())
        .map(str::to_owned);
    (summary, rest)
}

/// `PaymentReceived` → `Payment received`.
fn words(rust_name: &str) -> String {
    let mut text = String::with_capacity(rust_name.len() + 4);
    for (i, c) in rust_name.trim_start_matches("r#").chars().enumerate() {
        if i > 0 && c.is_ascii_uppercase() {
            text.push(' ');
            text.push(c.to_ascii_lowercase());
        } else {
            text.push(c);
        }
    }
    text
}

/// The document's top-level sections in the order the specification presents them (what it
/// is, where, then what it carries) rather than alphabetically; the sections' own keys stay
/// sorted, so the text is the same from run to run.
struct ReadingOrder<'a>(&'a Value);

impl ReadingOrder<'_> {
    const ORDER: [&'static str; 7] = [
        "asyncapi",
        "info",
        "servers",
        "defaultContentType",
        "channels",
        "operations",
        "components",
    ];
}

impl serde::Serialize for ReadingOrder<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Some(sections) = self.0.as_object() else {
            return self.0.serialize(serializer);
        };
        let known = Self::ORDER
            .iter()
            .filter_map(|key| sections.get(*key).map(|value| (*key, value)));
        let others = sections
            .iter()
            .filter(|(key, _)| !Self::ORDER.contains(&key.as_str()))
            .map(|(key, value)| (key.as_str(), value));
        serializer.collect_map(known.chain(others))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_split_into_summary_and_description() {
        assert_eq!(split_docs(""), (None, None));
        assert_eq!(
            split_docs("A payment\ncame in.\n\nIn parts.\n\nOr whole."),
            (
                Some("A payment came in.".into()),
                Some("In parts.\n\nOr whole.".into())
            )
        );
    }

    #[test]
    fn titles_are_words() {
        assert_eq!(words("PaymentReceived"), "Payment received");
        assert_eq!(words("Shipped"), "Shipped");
    }

    #[test]
    fn ids_are_checked() {
        assert!(check_id("channel", "EventSource.Orders-1_x", String::new()).is_ok());
        for bad in ["", "a b", "a/b", "é"] {
            assert!(check_id("channel", bad, String::new()).is_err(), "{bad:?}");
        }
    }
}
