//! The W3C trace context an event carries ([`TraceContext`]), and the one parser every
//! path that reads a `traceparent` goes through: a caller's header, stored metadata, a
//! PostgreSQL row, a NATS header.

use std::fmt;

/// A valid W3C trace context: a trace id, the id of the span that recorded the event, and
/// the trace flags. It is written as a version `00` `traceparent`
/// (`00-<32 hex digits>-<16 hex digits>-<2 hex digits>`, lowercase) and nothing else: a
/// value read from outside is parsed ([`TraceContext::parse`]) and only what was parsed is
/// kept, so what the stores hold and what a relay puts in a header is always that short,
/// plain-ASCII form, whatever the input carried.
///
/// ```
/// use es_core::telemetry::TraceContext;
///
/// let context = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
/// assert_eq!(context.trace_id(), 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736);
/// assert_eq!(context.span_id(), 0x00f0_67aa_0ba9_02b7);
/// assert_eq!(context.flags(), 1);
/// assert_eq!(context.to_string(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
/// // A later version's extra fields are not kept.
/// let later = TraceContext::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever").unwrap();
/// assert_eq!(later, context);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    // Big-endian bytes rather than integers: no 16-byte alignment, so the context adds
    // little to every event's `Metadata`.
    trace_id: [u8; 16],
    span_id: [u8; 8],
    flags: u8,
}

/// How long a later version's `traceparent` may be, extra fields included: more is not a
/// trace context but something else (the W3C format allows more, and no version defines
/// any; a longer value is refused rather than read past).
const MAX_LEN: usize = 256;

impl TraceContext {
    /// A trace context from its parts; `None` if either id is zero, which the W3C format
    /// forbids.
    pub fn new(trace_id: u128, span_id: u64, flags: u8) -> Option<Self> {
        (trace_id != 0 && span_id != 0).then_some(Self {
            trace_id: trace_id.to_be_bytes(),
            span_id: span_id.to_be_bytes(),
            flags,
        })
    }

    /// Parses a W3C `traceparent`: `version-traceid-spanid-flags` in lowercase hex of 2,
    /// 32, 16 and 2 digits, the version not `ff`, neither id all zeros. A version above
    /// `00` may carry more fields after the flags, each a `-` then visible ASCII (up to
    /// 256 bytes in all): they are checked and then not kept (no version defines any). A
    /// control character (NUL, CR, LF), a non-ASCII byte or an over-long value makes the
    /// whole value invalid.
    pub fn parse(value: &str) -> Option<Self> {
        let bytes = value.as_bytes();
        // version(2) - trace id(32) - span id(16) - flags(2)
        const LEN: usize = 55;
        if bytes.len() < LEN || bytes.len() > MAX_LEN {
            return None;
        }
        let version = hex(value.get(0..2)?)?;
        if version == 0xff || (version == 0 && bytes.len() != LEN) {
            return None;
        }
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        if bytes.len() > LEN
            && (bytes[LEN] != b'-' || !bytes[LEN..].iter().all(u8::is_ascii_graphic))
        {
            return None;
        }
        let trace_id = hex(value.get(3..35)?)?;
        let span_id = u64::try_from(hex(value.get(36..52)?)?).ok()?;
        let flags = u8::try_from(hex(value.get(53..55)?)?).ok()?;
        Self::new(trace_id, span_id, flags)
    }

    /// The trace id (never zero).
    pub fn trace_id(&self) -> u128 {
        u128::from_be_bytes(self.trace_id)
    }

    /// The id of the span that recorded the event (never zero).
    pub fn span_id(&self) -> u64 {
        u64::from_be_bytes(self.span_id)
    }

    /// The trace flags (bit 0: sampled).
    pub fn flags(&self) -> u8 {
        self.flags
    }
}

/// The canonical `traceparent`: `00-{trace:032x}-{span:016x}-{flags:02x}`, 55 bytes of
/// lowercase hex digits and dashes.
impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id(),
            self.span_id(),
            self.flags
        )
    }
}

impl serde::Serialize for TraceContext {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Strict: a string that is not a valid `traceparent` is an error. (Event metadata reads
/// its trace context leniently instead, dropping an invalid one.)
impl<'de> serde::Deserialize<'de> for TraceContext {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Self::parse(&text).ok_or_else(|| serde::de::Error::custom("not a valid W3C traceparent"))
    }
}

/// Whether `value` is a valid W3C traceparent ([`TraceContext::parse`]).
///
/// ```
/// use es_core::telemetry::is_valid_traceparent;
///
/// assert!(is_valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
/// assert!(!is_valid_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"));
/// assert!(!is_valid_traceparent("not a traceparent"));
/// ```
pub fn is_valid_traceparent(value: &str) -> bool {
    TraceContext::parse(value).is_some()
}

/// Lowercase hex digits only (no sign, no uppercase, which the W3C format forbids).
fn hex(digits: &str) -> Option<u128> {
    if digits.is_empty()
        || !digits
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    u128::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const LATER: &str = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn accepts_a_w3c_traceparent() {
        assert_eq!(
            TraceContext::parse(GOOD),
            TraceContext::new(
                0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
                0x00f0_67aa_0ba9_02b7,
                1
            )
        );
        assert_eq!(
            TraceContext::parse(GOOD).map(|c| c.to_string()).as_deref(),
            Some(GOOD)
        );
    }

    #[test]
    fn a_later_versions_fields_are_checked_then_dropped() {
        for later in [
            LATER.to_owned(),
            format!("{LATER}-extra"),
            format!("{LATER}-a=b-c"),
        ] {
            let parsed = TraceContext::parse(&later);
            assert_eq!(
                parsed.map(|c| c.to_string()).as_deref(),
                Some(GOOD),
                "{later:?} is not read back canonical"
            );
        }
    }

    #[test]
    fn refuses_what_is_not_one() {
        let long = format!("{LATER}-{}", "a".repeat(MAX_LEN));
        for bad in [
            "",
            "00",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "0é-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-é",
            // A later version's fields hold no control character, space or non-ASCII.
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-\0",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-\r\nNats-Msg-Id: x",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-a b",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-é",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            &long,
        ] {
            assert!(!is_valid_traceparent(bad), "{bad:?} was accepted");
        }
    }

    #[test]
    fn serializes_as_its_canonical_string_and_deserializes_strictly() {
        let context = TraceContext::parse(GOOD).unwrap();
        assert_eq!(
            serde_json::to_value(context).unwrap(),
            serde_json::json!(GOOD)
        );
        let later: TraceContext = serde_json::from_value(serde_json::json!(LATER)).unwrap();
        assert_eq!(later, context);
        assert!(serde_json::from_value::<TraceContext>(serde_json::json!("nonsense")).is_err());
    }

    #[test]
    fn adds_little_to_metadata() {
        // About what the `Option<String>` it replaced took (24 bytes), not 48.
        assert!(std::mem::size_of::<Option<TraceContext>>() <= 32);
    }

    #[test]
    fn zero_ids_make_no_context() {
        assert_eq!(TraceContext::new(0, 1, 0), None);
        assert_eq!(TraceContext::new(1, 0, 0), None);
        assert!(TraceContext::new(1, 1, 0).is_some());
    }
}
