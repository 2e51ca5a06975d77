//! One event as one NATS message, both ways: the headers and payload the relay publishes,
//! and [`decode`] for the services that consume them.
//!
//! The payload is the event's stored JSON, as stored (type, schema version and payload
//! unchanged): a consumer upcasts older versions with its own `DomainEvent` derive, exactly
//! as a reader of the store does. Everything else travels in headers named by
//! [`es_asyncapi::headers`], so the AsyncAPI document and the messages cannot disagree.
//!
//! Tags ([`Metadata::tags`]) travel in one [`TAGS_HEADER`] header, each tag
//! percent-encoded (see [`encode_tag`]) and separated by `,`, so that every tag survives a
//! NATS header intact.

use async_nats::HeaderMap;
use async_nats::header::HeaderValue;
use async_nats::header::NATS_MESSAGE_ID;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use es_asyncapi::headers;
use es_core::{
    DecodeError, DomainEvent, EventEnvelope, Metadata, Position, RawEvent, StreamId, Tag, Version,
};
use uuid::Uuid;

/// The headers and payload of `envelope`'s message (the relay adds what it expects
/// JetStream to hold before it).
pub(crate) fn encode(
    envelope: &EventEnvelope<RawEvent>,
) -> Result<(HeaderMap, Bytes), serde_json::Error> {
    let mut map = HeaderMap::new();
    let id = envelope.event_id.to_string();
    map.insert(NATS_MESSAGE_ID, id.as_str());
    map.insert("Content-Type", "application/json");
    map.insert(headers::SPEC_VERSION, "1.0");
    map.insert(headers::EVENT_ID, id.as_str());
    map.insert(headers::EVENT_TYPE, envelope.event.event_type.as_str());
    map.insert(headers::SOURCE, envelope.stream_id.category());
    map.insert(headers::STREAM_ID, envelope.stream_id.as_str());
    map.insert(
        headers::RECORDED_AT,
        envelope.recorded_at.to_rfc3339().as_str(),
    );
    map.insert(
        headers::SCHEMA_VERSION,
        envelope.event.schema_version.to_string().as_str(),
    );
    map.insert(
        headers::VERSION,
        envelope.version.get().to_string().as_str(),
    );
    map.insert(headers::POSITION, envelope.position.to_string().as_str());
    if let Some(id) = envelope.metadata.correlation_id {
        map.insert(headers::CORRELATION_ID, id.to_string().as_str());
    }
    if let Some(id) = envelope.metadata.causation_id {
        map.insert(headers::CAUSATION_ID, id.to_string().as_str());
    }
    if let Some(traceparent) = envelope.metadata.traceparent {
        // The canonical form, hex digits and dashes, holds no CR or LF, on which
        // async-nats's infallible conversion from a `&str` panics; the fallible one keeps
        // a panic out of the relay should that ever change (the header is then left out).
        if let Ok(value) = traceparent.to_string().parse::<HeaderValue>() {
            map.insert(headers::TRACEPARENT, value);
        }
    }
    if !envelope.metadata.tags.is_empty() {
        let tags: Vec<String> = envelope.metadata.tags.iter().map(encode_tag).collect();
        // Printable ASCII only (see `encode_tag`), so never a CR or LF: the conversion
        // cannot fail, and would only leave the tags out if it ever did.
        if let Ok(value) = tags.join(",").parse::<HeaderValue>() {
            map.insert(TAGS_HEADER, value);
        }
    }
    let payload = serde_json::to_vec(&envelope.event.payload)?;
    Ok((map, Bytes::from(payload)))
}

/// The header that carries an event's tags, encoded by [`encode_tag`] and separated by
/// `,`; absent when it has none.
///
/// One header rather than one per tag: async-nats reads a repeated header back as its last
/// value alone in some paths (a message fetched from a stream by sequence), and proxies
/// may fold repeated headers into one line anyway.
pub(crate) const TAGS_HEADER: &str = es_asyncapi::headers::TAGS;

/// A tag as a header value: printable ASCII except `%` and `,` as it is, every other byte
/// (space, non-ASCII UTF-8, `%`, `,`) as `%XX`.
///
/// Why not the tag as it is: NATS clients trim the whitespace around a header value
/// (async-nats trims Unicode whitespace, so even a trailing U+3000 would be lost), other
/// clients and proxies may fold repeated headers into one comma-separated value, and some
/// mishandle non-ASCII bytes. A tag holds no control characters, but may hold any of
/// these; encoded, it reads back byte for byte. `:` stays readable (`course:c1`): NATS
/// splits a header line at its first `:` only.
pub(crate) fn encode_tag(tag: &Tag) -> String {
    use std::fmt::Write as _;
    let mut value = String::with_capacity(tag.as_str().len());
    for &byte in tag.as_str().as_bytes() {
        if byte.is_ascii_graphic() && byte != b'%' && byte != b',' {
            value.push(char::from(byte));
        } else {
            // Writing to a `String` cannot fail.
            let _ = write!(value, "%{byte:02X}");
        }
    }
    value
}

/// The tags in a message's [`TAGS_HEADER`] (every value, should it be repeated). One that
/// is not an encoded valid tag is dropped: a bad tag must never make an event unreadable.
fn decode_tags(map: Option<&HeaderMap>) -> std::collections::BTreeSet<Tag> {
    map.into_iter()
        .flat_map(|map| map.get_all(TAGS_HEADER))
        .flat_map(|value| value.as_str().split(','))
        .filter_map(decode_tag)
        .collect()
}

/// One percent-encoded tag; `None` if the encoding is broken, the bytes are not UTF-8 or
/// the text is not a valid [`Tag`].
fn decode_tag(value: &str) -> Option<Tag> {
    // The header parser has trimmed the value; an encoded tag has no spaces to lose.
    let value = value.trim();
    let mut bytes = Vec::with_capacity(value.len());
    let mut rest = value.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let (&high, &low) = (tail.first()?, tail.get(1)?);
            bytes.push(hex_digit(high)? * 16 + hex_digit(low)?);
            rest = tail.get(2..)?;
        } else {
            bytes.push(byte);
            rest = tail;
        }
    }
    Tag::new(String::from_utf8(bytes).ok()?).ok()
}

/// The value of one hex digit (either case), if `byte` is one.
fn hex_digit(byte: u8) -> Option<u8> {
    char::from(byte)
        .to_digit(16)
        .and_then(|digit| u8::try_from(digit).ok())
}

/// Why a message could not be read back as an event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// A header every relayed event carries is missing: the message was not published by an
    /// es-rs relay, or by an incompatible one.
    #[error("message on `{subject}` has no `{header}` header; was it published by an es-rs relay?")]
    MissingHeader {
        /// The message's subject.
        subject: String,
        /// The missing header.
        header: &'static str,
    },
    /// A header holds something that is not what its name promises.
    #[error("message on `{subject}`: header `{header}` is not {expected}")]
    BadHeader {
        /// The message's subject.
        subject: String,
        /// The header.
        header: &'static str,
        /// What it should hold.
        expected: &'static str,
    },
    /// The payload is not UTF-8, so not JSON.
    #[error("event {version} of stream `{stream}`: the payload is not UTF-8 text")]
    NotUtf8 {
        /// The event's stream.
        stream: StreamId,
        /// Its version.
        version: Version,
    },
    /// The event did not decode (unknown type, unsupported version, or a payload that does
    /// not fit); the source names the stream's event type and version, never payload values.
    #[error("event {version} of stream `{stream}` did not decode")]
    Decode {
        /// The event's stream.
        stream: StreamId,
        /// Its version.
        version: Version,
        /// Why.
        #[source]
        source: DecodeError,
    },
}

/// What a relayed message's headers say about its event, before the payload is decoded.
#[derive(Debug, Clone)]
pub(crate) struct Described {
    pub(crate) event_id: Uuid,
    pub(crate) event_type: String,
    pub(crate) schema_version: u32,
    pub(crate) stream_id: StreamId,
    pub(crate) version: Version,
    pub(crate) position: Position,
    pub(crate) recorded_at: DateTime<Utc>,
    pub(crate) metadata: Metadata,
}

impl Described {
    /// Reads the headers of a message on `subject`.
    pub(crate) fn read(subject: &str, map: Option<&HeaderMap>) -> Result<Self, MessageError> {
        let get = |header: &'static str| {
            map.and_then(|map| map.get(header))
                .map(|value| value.as_str())
                .ok_or_else(|| MessageError::MissingHeader {
                    subject: subject.to_owned(),
                    header,
                })
        };
        let bad = |header: &'static str, expected: &'static str| MessageError::BadHeader {
            subject: subject.to_owned(),
            header,
            expected,
        };
        let uuid = |header: &'static str| -> Result<Option<Uuid>, MessageError> {
            match map.and_then(|map| map.get(header)) {
                None => Ok(None),
                Some(value) => value
                    .as_str()
                    .parse()
                    .map(Some)
                    .map_err(|_| bad(header, "a UUID")),
            }
        };
        let mut metadata = Metadata::new();
        metadata.correlation_id = uuid(headers::CORRELATION_ID)?;
        metadata.causation_id = uuid(headers::CAUSATION_ID)?;
        // A bad trace context is dropped: it must never make an event unreadable.
        metadata.traceparent = map
            .and_then(|map| map.get(headers::TRACEPARENT))
            .and_then(|value| es_core::telemetry::TraceContext::parse(value.as_str()));
        metadata.tags = decode_tags(map);
        Ok(Self {
            event_id: get(headers::EVENT_ID)?
                .parse()
                .map_err(|_| bad(headers::EVENT_ID, "a UUID"))?,
            event_type: get(headers::EVENT_TYPE)?.to_owned(),
            schema_version: get(headers::SCHEMA_VERSION)?
                .parse()
                .map_err(|_| bad(headers::SCHEMA_VERSION, "a schema version (1 or more)"))?,
            stream_id: get(headers::STREAM_ID)?
                .parse()
                .map_err(|_| bad(headers::STREAM_ID, "a stream id (`category-id`)"))?,
            version: get(headers::VERSION)?
                .parse::<u64>()
                .ok()
                .filter(|version| *version >= 1)
                .map(Version::new)
                .ok_or_else(|| bad(headers::VERSION, "a stream version (1 or more)"))?,
            position: get(headers::POSITION)?
                .parse()
                .map_err(|_| bad(headers::POSITION, "a log position (`major:minor`)"))?,
            recorded_at: DateTime::parse_from_rfc3339(get(headers::RECORDED_AT)?)
                .map_err(|_| bad(headers::RECORDED_AT, "an RFC 3339 time"))?
                .with_timezone(&Utc),
            metadata,
        })
    }

    /// The envelope of `event`.
    pub(crate) fn into_envelope<E>(self, event: E) -> EventEnvelope<E> {
        EventEnvelope {
            event_id: self.event_id,
            stream_id: self.stream_id,
            version: self.version,
            position: self.position,
            recorded_at: self.recorded_at,
            metadata: self.metadata,
            event,
        }
    }
}

/// Reads a relayed message back as the typed event it carries, upcast by `E`'s own
/// declarations like any read of the store. Its metadata holds what the headers carry:
/// the correlation and causation ids, the trace context and the tags (an invalid trace
/// context or tag is dropped, never an error).
///
/// ```no_run
/// # async fn example(consumer: async_nats::jetstream::consumer::PullConsumer) -> Result<(), async_nats::Error> {
/// use es_core::DomainEvent;
/// use futures_util::StreamExt as _;
///
/// #[derive(Debug, Clone, DomainEvent)]
/// enum OrderEvent {
///     #[event(name = "OrderShipped")]
///     Shipped { carrier: String },
/// }
///
/// let mut messages = consumer.messages().await?;
/// while let Some(message) = messages.next().await {
///     let message = message?;
///     let envelope = es_nats::decode::<OrderEvent>(&message)?;
///     println!("{} shipped by {:?}", envelope.stream_id, envelope.event);
///     message.ack().await?;
/// }
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// A [`MessageError`] naming the subject and header, or the stream and version of an event
/// that does not decode.
pub fn decode<E: DomainEvent>(
    message: &async_nats::Message,
) -> Result<EventEnvelope<E>, MessageError> {
    let described = Described::read(message.subject.as_str(), message.headers.as_ref())?;
    let Ok(payload) = std::str::from_utf8(&message.payload) else {
        return Err(MessageError::NotUtf8 {
            stream: described.stream_id,
            version: described.version,
        });
    };
    match E::decode_json(&described.event_type, described.schema_version, payload) {
        Ok(event) => Ok(described.into_envelope(event)),
        Err(source) => Err(MessageError::Decode {
            stream: described.stream_id,
            version: described.version,
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANONICAL: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn envelope(metadata: Metadata) -> EventEnvelope<RawEvent> {
        EventEnvelope {
            event_id: Uuid::now_v7(),
            stream_id: StreamId::new("parcel", "1").unwrap(),
            version: Version::new(1),
            position: Position::from_parts(1, 0),
            recorded_at: Utc::now(),
            metadata,
            event: RawEvent::new("Sent", 1, serde_json::json!({})),
        }
    }

    #[test]
    fn the_traceparent_header_is_the_canonical_form() {
        let metadata = Metadata::new().with_traceparent(format!("01{}-vendor=x", &CANONICAL[2..]));
        let (map, _) = encode(&envelope(metadata)).unwrap();
        assert_eq!(
            map.get(headers::TRACEPARENT).map(HeaderValue::as_str),
            Some(CANONICAL)
        );
    }

    #[test]
    fn tags_are_encoded_as_printable_ascii_and_read_back_exactly() {
        let texts = [
            "course:c1",
            " padded ",
            "a,b:c, d",
            "100%",
            "%41",
            "naïve:日本",
            "x:\u{3000}",
            "k:v:w",
        ];
        let tags: std::collections::BTreeSet<Tag> =
            texts.iter().map(|text| Tag::new(*text).unwrap()).collect();
        let (map, _) = encode(&envelope(Metadata::new().with_tags(tags.clone()))).unwrap();
        let header = map.get(TAGS_HEADER).map(HeaderValue::as_str).unwrap();
        let values: Vec<&str> = header.split(',').collect();
        assert_eq!(values.len(), texts.len(), "{header}");
        assert!(header.bytes().all(|b| b.is_ascii_graphic()), "{header}");
        assert!(values.contains(&"course:c1"), "`:` stays readable");
        assert!(values.contains(&"%20padded%20"));
        let described = Described::read("es.parcel", Some(&map)).unwrap();
        assert_eq!(described.metadata.tags, tags);
    }

    #[test]
    fn repeated_tag_headers_are_read_and_invalid_tags_are_dropped() {
        let (mut map, _) = encode(&envelope(Metadata::new())).unwrap();
        assert!(map.get(TAGS_HEADER).is_none(), "no tags, no header");
        map.append(TAGS_HEADER, "a:1,b%2C2");
        for bad in ["%ZZ", "%4", "%", "%FF", "%0A", "", "%+F", &"x".repeat(256)] {
            map.append(TAGS_HEADER, bad);
        }
        map.append(TAGS_HEADER, "c:3,,%2");
        let described = Described::read("es.parcel", Some(&map)).unwrap();
        let tags: Vec<&str> = described.metadata.tags.iter().map(Tag::as_str).collect();
        assert_eq!(tags, ["a:1", "b,2", "c:3"]);
    }

    #[test]
    fn a_traceparent_header_is_read_through_the_one_parser() {
        let (mut map, _) = encode(&envelope(Metadata::new())).unwrap();
        for (header, read) in [
            (format!("01{}-vendor=x", &CANONICAL[2..]), Some(CANONICAL)),
            (format!("01{}-{}", &CANONICAL[2..], "x".repeat(4096)), None),
            ("01-garbage".to_owned(), None),
        ] {
            map.insert(headers::TRACEPARENT, header.as_str());
            let described = Described::read("es.parcel", Some(&map)).unwrap();
            assert_eq!(
                described
                    .metadata
                    .traceparent
                    .map(|c| c.to_string())
                    .as_deref(),
                read,
                "{header:?}"
            );
        }
    }
}
