//! Property tests of id parsing: `StreamId::new`, `StreamId::parse` and `Position`'s
//! `FromStr` take any text without panicking, and what they accept survives `Display`
//! (and serde) and parsing again unchanged.
//!
//! Each property runs proptest's default 256 cases, which keeps the suite fast; for a
//! deeper search set `PROPTEST_CASES`, e.g.
//! `PROPTEST_CASES=100000 cargo test -p es-core --test id_fuzz`.

use std::str::FromStr as _;

use es_core::{Position, StreamId};
use proptest::prelude::*;

/// Text of every kind: anything at all, text shaped like stream ids (with `-`, `_`,
/// digits, controls and non-ASCII letters), and ids around the length limit.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_\\-]{0,12}",
        "[A-Za-z][A-Za-z0-9_]{0,6}-[ -~é🔑\u{0}\n\u{7f}\u{2028}-]{0,12}",
        "[a-z]{1,4}-[a-z0-9]{245,255}",
    ]
}

/// Text shaped like positions, and anything at all.
fn position_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9+\\-: ]{0,24}",
        "[0-9]{1,21}:[0-9]{1,21}",
    ]
}

proptest! {
    #[test]
    fn stream_ids_from_parts_round_trip(category in text(), id in text()) {
        if let Ok(stream) = StreamId::new(&category, &id) {
            prop_assert_eq!(stream.category(), category.as_str());
            prop_assert_eq!(stream.id(), id.as_str());
            prop_assert!(stream.as_str().len() <= StreamId::MAX_LEN);
            let shown = stream.to_string();
            prop_assert_eq!(&shown, &format!("{category}-{id}"));
            prop_assert_eq!(StreamId::parse(&shown), Ok(stream.clone()));
            let json = serde_json::to_string(&stream).unwrap_or_default();
            prop_assert_eq!(serde_json::from_str::<StreamId>(&json).ok(), Some(stream));
        }
    }

    #[test]
    fn parsed_stream_ids_round_trip(text in text()) {
        if let Ok(stream) = StreamId::parse(&text) {
            prop_assert_eq!(stream.as_str(), text.as_str());
            let shown = stream.to_string();
            prop_assert_eq!(StreamId::from_str(&shown), Ok(stream.clone()));
            prop_assert_eq!(StreamId::new(stream.category(), stream.id()), Ok(stream));
        }
    }

    #[test]
    fn parsed_positions_round_trip(text in position_text()) {
        if let Ok(position) = text.parse::<Position>() {
            prop_assert_eq!(position.to_string().parse::<Position>(), Ok(position));
        }
    }

    #[test]
    fn every_position_round_trips(major in any::<u64>(), minor in any::<u64>()) {
        let position = Position::from_parts(major, minor);
        prop_assert_eq!(position.to_string().parse::<Position>(), Ok(position));
        let json = serde_json::to_string(&position).unwrap_or_default();
        prop_assert_eq!(serde_json::from_str::<Position>(&json).ok(), Some(position));
    }
}
