//! What every store keeps: the limits an event must fit, checked before anything is written.
//!
//! A store that accepts an event it cannot give back has made a *poison event*: every load
//! of its aggregate and every subscriber that reaches it fails, for good. So each store
//! runs [`encode_batch`] on every append, before any I/O, and refuses what it would not read
//! back identically, with the same typed error on every store:
//!
//! | What                                   | Limit                                   |
//! |----------------------------------------|-----------------------------------------|
//! | nesting of arrays and objects          | [`MAX_DEPTH`] levels, in the payload and in each metadata entry |
//! | characters                             | no NUL (U+0000) in any string or key, nor in the actor |
//! | floats PostgreSQL keeps as integers    | none: an integral float of magnitude from 1e16 up to what fits a 64-bit integer reads back as an integer |
//! | one event, as JSON                     | [`MAX_EVENT_BYTES`], payload and metadata together |
//! | one append, as JSON                    | [`MAX_BATCH_BYTES`]                     |
//! | event type names                       | 1 to [`MAX_EVENT_TYPE_BYTES`] bytes, no control characters |
//! | schema versions                        | up to [`MAX_SCHEMA_VERSION`]            |
//! | tags                                   | up to [`MAX_TAGS`] per event, each a valid [`Tag`](crate::Tag) |
//! | stream versions                        | up to [`Version::MAX`](crate::Version::MAX) |
//! | the event itself                       | it decodes from its own encoding        |
//!
//! Why these: serde_json refuses to parse JSON nested deeper than 128 levels, so a deeper
//! payload would be stored and never read again (the depth here leaves room for the
//! wrappers readers add); PostgreSQL's `jsonb` and `text` reject NUL; `jsonb` stores
//! numbers as decimals and prints `1e17` back as `100000000000000000`, which JSON readers
//! take for an integer; PostgreSQL's values and protocol messages are bounded (a `jsonb`
//! value at 256 MiB, a message at 1 GiB), and an event store is no place for blobs. A
//! float's size is counted as PostgreSQL prints it (`1e300` takes 301 bytes), since that
//! is what readers receive.
//!
//! One deliberate difference remains: `-0.0` reads back from PostgreSQL as `0.0`, which is
//! equal to it (`-0.0 == 0.0`); the in-memory store keeps the sign.

use std::fmt;

use serde_json::Value;

use crate::error::AppendError;
use crate::event::{DecodeError, DomainEvent, Metadata, NewEvent};
use crate::stream::StreamId;

/// The deepest nesting of arrays and objects an event's payload, or a metadata entry, may
/// have (the payload's own object is level 1).
pub const MAX_DEPTH: usize = 64;

/// The most bytes one event may take as JSON: its payload and its metadata (actor and
/// free-form entries) together.
pub const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// The most bytes one append may take as JSON, all its events together.
pub const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;

/// The longest event type name, in bytes.
pub const MAX_EVENT_TYPE_BYTES: usize = 255;

/// The highest schema version an event may have (PostgreSQL's `integer`).
#[allow(
    clippy::cast_sign_loss,
    reason = "i32::MAX is positive; `try_from` is not const"
)]
pub const MAX_SCHEMA_VERSION: u32 = i32::MAX as u32;

/// The most [tags](crate::Tag) one event may carry: its own and those set in its metadata
/// together, each distinct tag counted once.
pub const MAX_TAGS: usize = 64;

/// The part of an event a limit was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Part {
    /// The payload.
    Payload,
    /// The metadata's actor.
    Actor,
    /// The metadata's free-form entries.
    Metadata,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Payload => "payload",
            Self::Actor => "actor",
            Self::Metadata => "metadata",
        })
    }
}

/// Why an event cannot be stored: it breaks one of the [limits](self) every store keeps.
///
/// Messages say what is wrong and what to do, and never quote the event's values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// A string, a key or the actor holds a NUL character.
    #[error(
        "its {part} holds a NUL character (U+0000), which no store can keep; remove it or encode the text (base64, say)"
    )]
    Nul {
        /// Where.
        part: Part,
    },
    /// Arrays and objects nest deeper than [`MAX_DEPTH`].
    #[error(
        "its {part} nests arrays and objects more than {max} levels deep, deeper than every store reads back; flatten it"
    )]
    TooDeep {
        /// Where.
        part: Part,
        /// The limit.
        max: usize,
    },
    /// A float that PostgreSQL would give back as an integer.
    #[error(
        "its {part} holds an integral floating-point number of 1e16 or more in magnitude that fits a 64-bit integer; PostgreSQL keeps it as that integer, so it would read back as one: store it as an integer or as text"
    )]
    FloatReadsAsInteger {
        /// Where.
        part: Part,
    },
    /// The event takes more than [`MAX_EVENT_BYTES`] as JSON.
    #[error(
        "it takes {bytes} bytes as JSON, more than the {max} an event may take; keep large data elsewhere and put a reference in the event"
    )]
    TooLarge {
        /// Its size (payload and metadata).
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The event type name is empty, too long or holds a control character.
    #[error("its type name {problem}; use 1 to {max} bytes of printable text")]
    EventType {
        /// What is wrong with it.
        problem: &'static str,
        /// The length limit.
        max: usize,
    },
    /// The schema version is beyond [`MAX_SCHEMA_VERSION`].
    #[error("its schema version {version} is beyond the {max} stores keep")]
    SchemaVersion {
        /// The event's schema version.
        version: u32,
        /// The limit.
        max: u32,
    },
    /// The event does not decode from its own encoding: no reader could read it back.
    #[error(
        "it does not decode from its own encoding, so no reader could read it back (a NaN or infinite float encodes as null; a field skipped when empty needs a default)"
    )]
    Unreadable {
        /// What decoding it said.
        #[source]
        source: DecodeError,
    },
}

/// Checks `events` for an append to `stream` and encodes them: the payloads, in order.
/// It also merges the tags each event declares ([`DomainEvent::tags`]) into its
/// metadata's [`tags`](Metadata::tags), beside those the caller set, and checks them.
///
/// This is what every store runs before it writes anything, and must run: so that all
/// refuse the same events with the same errors, and so that every event is stored with
/// its declared tags (a store that skipped it would store events that no query by those
/// tags selects). Both stores of es-rs call it on every append. Tags are worked out here,
/// once, and stored: events stored before their type declared a tag do not carry it,
/// and re-tagging them means rewriting the stored rows (no tool yet).
///
/// It refuses an id twice in the batch, an event that cannot be encoded,
/// one that breaks a [limit](self), or a batch over [`MAX_BATCH_BYTES`]. Each event is also
/// decoded from its own encoding (except for types that read any event, such as
/// [`RawEvent`](crate::RawEvent)), so that an event whose serde attributes or values
/// cannot round-trip never reaches the log.
///
/// ```
/// use es_core::limits::encode_batch;
/// use es_core::{AppendError, NewEvent, RawEvent, StreamId};
/// use serde_json::json;
///
/// let stream = StreamId::new("note", "1")?;
/// let fine = NewEvent::new(RawEvent::new("Noted", 1, json!({ "text": "hi" })));
/// assert_eq!(encode_batch(&stream, &mut [fine])?, vec![json!({ "text": "hi" })]);
///
/// let nul = NewEvent::new(RawEvent::new("Noted", 1, json!({ "text": "a\u{0}b" })));
/// assert!(matches!(encode_batch(&stream, &mut [nul]), Err(AppendError::Unstorable { index: 0, .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// [`AppendError::InvalidTag`] (a declared tag is invalid, or the event carries more than
/// [`MAX_TAGS`]), [`AppendError::DuplicateInBatch`], [`AppendError::Encode`],
/// [`AppendError::Unstorable`] (naming the event by its index and type) or
/// [`AppendError::BatchTooLarge`].
pub fn encode_batch<E: DomainEvent>(
    stream: &StreamId,
    events: &mut [NewEvent<E>],
) -> Result<Vec<Value>, AppendError> {
    add_declared_tags(stream, events)?;
    let events = &*events;
    // Most batches are one or a few events: compare those directly rather than hash.
    let mut seen =
        (events.len() > 16).then(|| std::collections::HashSet::with_capacity(events.len()));
    let mut payloads = Vec::with_capacity(events.len());
    let mut total = 0_usize;
    for (index, new) in events.iter().enumerate() {
        let repeated = match &mut seen {
            Some(seen) => !seen.insert(new.event_id),
            None => events[..index].iter().any(|e| e.event_id == new.event_id),
        };
        if repeated {
            // The stores' unique indexes would reject it too, but as a clash with a stored
            // event, which is not what happened.
            return Err(AppendError::DuplicateInBatch {
                event_id: new.event_id,
                stream: stream.clone(),
            });
        }
        let event_type = new.event.event_type();
        let payload = new.event.encode().map_err(|source| AppendError::Encode {
            stream: stream.clone(),
            event_type: event_type.to_owned(),
            source,
        })?;
        let unstorable = |reason| AppendError::Unstorable {
            stream: stream.clone(),
            index,
            event_type: printable(event_type),
            reason,
        };
        let bytes = match check_event(
            event_type,
            new.event.schema_version(),
            &payload,
            &new.metadata,
        ) {
            Ok(bytes) => bytes,
            Err(reason) => {
                dismantle(payload);
                return Err(unstorable(reason));
            }
        };
        // Types that read any event (`RawEvent`) decode everything; nothing to learn.
        if !E::EVENT_TYPES.is_empty()
            && let Err(source) = E::decode_value(event_type, new.event.schema_version(), &payload)
        {
            return Err(unstorable(LimitError::Unreadable { source }));
        }
        total = total.saturating_add(bytes);
        payloads.push(payload);
    }
    if total > MAX_BATCH_BYTES {
        return Err(AppendError::BatchTooLarge {
            stream: stream.clone(),
            events: events.len(),
            bytes: total,
            max: MAX_BATCH_BYTES,
        });
    }
    Ok(payloads)
}

/// Checks one encoded event against the [limits](self) and returns its size as JSON
/// (payload and metadata).
///
/// [`encode_batch`] runs this on each event; it is public for stores that encode events
/// themselves.
///
/// # Errors
///
/// The first limit the event breaks.
pub fn check_event(
    event_type: &str,
    schema_version: u32,
    payload: &Value,
    metadata: &Metadata,
) -> Result<usize, LimitError> {
    check_event_type(event_type)?;
    if schema_version > MAX_SCHEMA_VERSION {
        return Err(LimitError::SchemaVersion {
            version: schema_version,
            max: MAX_SCHEMA_VERSION,
        });
    }
    let mut bytes = measure(Part::Payload, payload, 1)?;
    if let Some(actor) = &metadata.actor {
        bytes += text_bytes(Part::Actor, actor)?;
    }
    for (key, value) in &metadata.user {
        // The entries form one object, level 1; each value starts at level 2.
        bytes += text_bytes(Part::Metadata, key)? + 2 + measure(Part::Metadata, value, 2)?;
    }
    for tag in &metadata.tags {
        // Quoted and separated in JSON.
        bytes += tag.as_str().len() + 3;
    }
    if bytes > MAX_EVENT_BYTES {
        return Err(LimitError::TooLarge {
            bytes,
            max: MAX_EVENT_BYTES,
        });
    }
    Ok(bytes)
}

/// Adds to each event's [`Metadata::tags`] the tags it declares ([`DomainEvent::tags`]),
/// so that what a store records and returns shows them all, and checks their number.
fn add_declared_tags<E: DomainEvent>(
    stream: &StreamId,
    events: &mut [NewEvent<E>],
) -> Result<(), AppendError> {
    for (index, new) in events.iter_mut().enumerate() {
        let invalid = |source| AppendError::InvalidTag {
            stream: stream.clone(),
            index,
            event_type: printable(new.event.event_type()),
            source,
        };
        let declared = new.event.tags().map_err(invalid)?;
        new.metadata.tags.extend(declared);
        if new.metadata.tags.len() > MAX_TAGS {
            return Err(invalid(crate::tag::too_many(new.metadata.tags.len())));
        }
    }
    Ok(())
}

fn check_event_type(event_type: &str) -> Result<(), LimitError> {
    let problem = if event_type.is_empty() {
        "is empty"
    } else if event_type.len() > MAX_EVENT_TYPE_BYTES {
        "is too long"
    } else if event_type.chars().any(char::is_control) {
        "holds a control character"
    } else {
        return Ok(());
    };
    Err(LimitError::EventType {
        problem,
        max: MAX_EVENT_TYPE_BYTES,
    })
}

/// The size of `root` as JSON, checking it on the way, without recursion: a value nested a
/// hundred thousand levels must be refused, not overflow the stack.
fn measure(part: Part, root: &Value, first_level: usize) -> Result<usize, LimitError> {
    let mut bytes = 0_usize;
    // The root is taken first, without a push: a flat payload (scalars in one object)
    // then never allocates, since only arrays and objects wait here.
    let mut pending: Vec<(&Value, usize)> = Vec::new();
    let mut next = Some((root, first_level));
    while let Some((value, level)) = next.take().or_else(|| pending.pop()) {
        bytes += match value {
            Value::Null | Value::Bool(true) => 4,
            Value::Bool(false) => 5,
            Value::Number(number) => number_bytes(part, number)?,
            Value::String(text) => text_bytes(part, text)?,
            Value::Array(items) => {
                if level > MAX_DEPTH {
                    return Err(LimitError::TooDeep {
                        part,
                        max: MAX_DEPTH,
                    });
                }
                let mut scalars = 0;
                for item in items {
                    match scalar_bytes(part, item) {
                        Some(item_bytes) => scalars += item_bytes?,
                        None => pending.push((item, level + 1)),
                    }
                }
                // Brackets and commas.
                2 + scalars + items.len().saturating_sub(1)
            }
            Value::Object(entries) => {
                if level > MAX_DEPTH {
                    return Err(LimitError::TooDeep {
                        part,
                        max: MAX_DEPTH,
                    });
                }
                let mut keys = 0;
                for (key, item) in entries {
                    keys += text_bytes(part, key)? + 1;
                    match scalar_bytes(part, item) {
                        Some(item_bytes) => keys += item_bytes?,
                        None => pending.push((item, level + 1)),
                    }
                }
                // Braces, colons (counted with the keys) and commas.
                2 + keys + entries.len().saturating_sub(1)
            }
        };
    }
    Ok(bytes)
}

/// The size of a scalar `value` (not an array or object, which `None` leaves to
/// [`measure`]'s loop).
fn scalar_bytes(part: Part, value: &Value) -> Option<Result<usize, LimitError>> {
    match value {
        Value::Null | Value::Bool(true) => Some(Ok(4)),
        Value::Bool(false) => Some(Ok(5)),
        Value::Number(number) => Some(number_bytes(part, number)),
        Value::String(text) => Some(text_bytes(part, text)),
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// The size of `text` as a JSON string, quotes and escapes included; refuses a NUL.
fn text_bytes(part: Part, text: &str) -> Result<usize, LimitError> {
    let mut bytes = text.len() + 2;
    for byte in text.bytes() {
        match byte {
            0 => return Err(LimitError::Nul { part }),
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => bytes += 1,
            0x01..=0x1f => bytes += 5,
            _ => {}
        }
    }
    Ok(bytes)
}

/// How many decimal digits `n` takes.
fn decimal_digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |log| log as usize + 1)
}

/// The size of `number` as PostgreSQL prints it back (plain decimal digits, no exponent);
/// refuses floats it would print as integers.
fn number_bytes(part: Part, number: &serde_json::Number) -> Result<usize, LimitError> {
    // An integer: its digits and sign, which `jsonb` keeps exactly. Counted, not
    // formatted: most payloads are mostly integers, and formatting each was a tenth of
    // an in-memory append.
    if let Some(integer) = number.as_u64() {
        return Ok(decimal_digits(integer));
    }
    if let Some(integer) = number.as_i64() {
        return Ok(1 + decimal_digits(integer.unsigned_abs()));
    }
    // Only a true float takes the float path: with serde_json's `arbitrary_precision`
    // (which any crate of a build can turn on), an integer beyond 64 bits also has an
    // `f64` value, and must be measured as the digits it is.
    let Some(float) = number.as_f64().filter(|_| number.is_f64()) else {
        // An integer beyond 64 bits (`arbitrary_precision`): measured as it prints.
        let mut counter = ByteCount(0);
        let _ = fmt::Write::write_fmt(&mut counter, format_args!("{number}"));
        return Ok(counter.0);
    };
    // Rust prints floats in plain decimal, with the shortest digits that read back, as
    // PostgreSQL prints the decimal that serde_json wrote.
    let mut counter = ByteCount(0);
    let _ = fmt::Write::write_fmt(&mut counter, format_args!("{float}"));
    // From 1e16 serde_json writes floats with an exponent, which `jsonb` expands into an
    // integer; if that integer fits 64 bits, readers take it for one.
    if float.abs() >= 1e16 && float.abs() < 2e19 {
        let printed = float.to_string();
        let integer = if float > 0.0 {
            printed.parse::<u64>().is_ok()
        } else {
            printed.parse::<i64>().is_ok()
        };
        if integer {
            return Err(LimitError::FloatReadsAsInteger { part });
        }
    }
    // Integral floats are written with a trailing `.0` below 1e16.
    Ok(counter.0
        + if float.fract() == 0.0 && float.abs() < 1e16 {
            2
        } else {
            0
        })
}

/// Counts the bytes written to it.
struct ByteCount(usize);

impl fmt::Write for ByteCount {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

/// Drops `value` without recursion: a refused value may be nested too deep for the
/// recursive drop that `Value` has.
fn dismantle(value: Value) {
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        match value {
            Value::Array(items) => pending.extend(items),
            Value::Object(entries) => pending.extend(entries.into_iter().map(|(_, v)| v)),
            _ => {}
        }
    }
}

/// `event_type` as an error may print it: control characters escaped.
fn printable(event_type: &str) -> String {
    if event_type.chars().any(char::is_control) {
        event_type.escape_debug().to_string()
    } else {
        event_type.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deep(levels: usize) -> Value {
        let mut value = json!(1);
        for _ in 0..levels {
            value = Value::Array(vec![value]);
        }
        value
    }

    #[test]
    fn measures_json_as_serde_writes_it() {
        for value in [
            json!({ "a": [1, -2, true, false, null], "b\"c": "x\ny\u{1}" }),
            json!([]),
            json!({}),
            json!("ünïcödé"),
            json!([0.5, 123.25, -7.125]),
            json!([0, 9, 10, 99, 100, -1, -9, -10, u64::MAX, i64::MIN, i64::MAX]),
            json!({ "n": [[1, [-20, {"x": 300}]], "s"], "m": { "k": 4_294_967_296_u64 } }),
        ] {
            let written = serde_json::to_string(&value).unwrap().len();
            assert_eq!(
                measure(Part::Payload, &value, 1).unwrap(),
                written,
                "{value}"
            );
        }
    }

    #[test]
    fn counts_floats_as_postgres_prints_them() {
        // `1e300` comes back as 301 digits, `1.0` as it was written.
        assert_eq!(measure(Part::Payload, &json!(1e300), 1).unwrap(), 301);
        assert_eq!(measure(Part::Payload, &json!(1.0), 1).unwrap(), 3);
        assert_eq!(measure(Part::Payload, &json!(1e-7), 1).unwrap(), 9);
    }

    #[test]
    fn refuses_floats_that_read_back_as_integers() {
        for float in [
            1e16,
            1.5e17,
            18_446_744_073_709_549_568.0,
            -1e16,
            -9.223_372_036_854_775e18,
        ] {
            assert!(
                matches!(
                    measure(Part::Payload, &json!(float), 1),
                    Err(LimitError::FloatReadsAsInteger { .. })
                ),
                "{float:e}"
            );
        }
        for float in [
            9_999_999_999_999_998.0,
            2e19,
            1e20,
            -1e19,
            f64::MAX,
            f64::MIN_POSITIVE,
            0.1,
        ] {
            assert!(
                measure(Part::Payload, &json!(float), 1).is_ok(),
                "{float:e}"
            );
        }
    }

    #[test]
    fn depth_is_bounded_without_recursion() {
        assert!(measure(Part::Payload, &deep(MAX_DEPTH), 1).is_ok());
        assert!(matches!(
            measure(Part::Payload, &deep(MAX_DEPTH + 1), 1),
            Err(LimitError::TooDeep { max: MAX_DEPTH, .. })
        ));
        // Far deeper than any recursive walk survives on a test thread's stack.
        let very_deep = deep(200_000);
        assert!(measure(Part::Payload, &very_deep, 1).is_err());
        dismantle(very_deep);
    }

    #[test]
    fn event_types_are_printable_and_bounded() {
        assert!(check_event_type("OrderShipped").is_ok());
        assert!(check_event_type(&"x".repeat(MAX_EVENT_TYPE_BYTES)).is_ok());
        for bad in [
            "",
            "Order\u{0}",
            "Order\nShipped",
            &"x".repeat(MAX_EVENT_TYPE_BYTES + 1),
        ] {
            assert!(check_event_type(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn nul_is_refused_wherever_it_is() {
        let metadata = Metadata::new();
        assert!(matches!(
            check_event("E", 1, &json!({ "a\u{0}": 1 }), &metadata),
            Err(LimitError::Nul {
                part: Part::Payload
            })
        ));
        assert!(matches!(
            check_event("E", 1, &json!({}), &Metadata::new().with_actor("a\u{0}")),
            Err(LimitError::Nul { part: Part::Actor })
        ));
        assert!(matches!(
            check_event(
                "E",
                1,
                &json!({}),
                &Metadata::new().with_user("k", json!(["\u{0}"]))
            ),
            Err(LimitError::Nul {
                part: Part::Metadata
            })
        ));
    }

    #[test]
    fn repeated_ids_are_found_in_small_and_large_batches() {
        use crate::event::{NewEvent, RawEvent};
        let stream = StreamId::new("note", "1").unwrap();
        for size in [2, 16, 17, 40] {
            let mut events: Vec<_> = (0..size)
                .map(|_| NewEvent::new(RawEvent::new("Noted", 1, json!({}))))
                .collect();
            assert!(encode_batch(&stream, &mut events).is_ok(), "{size}");
            let repeated = events[0].event_id;
            events[size - 1].event_id = repeated;
            assert!(
                matches!(
                    encode_batch(&stream, &mut events),
                    Err(AppendError::DuplicateInBatch { event_id, .. }) if event_id == repeated
                ),
                "{size}"
            );
        }
    }

    #[test]
    fn size_counts_payload_and_metadata() {
        let big = "x".repeat(MAX_EVENT_BYTES / 2);
        let metadata = Metadata::new().with_user("note", big.clone());
        assert!(check_event("E", 1, &json!({ "text": big }), &Metadata::new()).is_ok());
        assert!(matches!(
            check_event("E", 1, &json!({ "text": big }), &metadata),
            Err(LimitError::TooLarge {
                max: MAX_EVENT_BYTES,
                ..
            })
        ));
    }
}
