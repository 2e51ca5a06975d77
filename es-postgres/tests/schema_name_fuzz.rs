//! Property tests of `PgSchemaName`: any text is accepted or refused without panicking; what
//! is accepted is exactly a plain lowercase identifier PostgreSQL keeps whole, and survives
//! `Display` and parsing again unchanged. (No database needed.)
//!
//! Each property runs proptest's default 256 cases; for a deeper search set
//! `PROPTEST_CASES`, e.g. `PROPTEST_CASES=100000 cargo test -p es-postgres --test schema_name_fuzz`.

use es_postgres::PgSchemaName;
use proptest::prelude::*;

/// Anything at all, and names around the rules: identifier characters, upper case, quotes,
/// digits first, lengths on both sides of the 63-byte limit.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z_][a-z0-9_]{0,70}",
        "[a-zA-Z0-9_\"'; .\\-é]{0,10}",
    ]
}

proptest! {
    #[test]
    fn accepted_names_are_plain_identifiers_and_round_trip(name in text()) {
        match PgSchemaName::new(&name) {
            Ok(schema) => {
                prop_assert_eq!(schema.as_str(), name.as_str());
                prop_assert!((1..=PgSchemaName::MAX_LEN).contains(&name.len()));
                prop_assert!(!name.starts_with(|c: char| c.is_ascii_digit()));
                prop_assert!(name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
                prop_assert_eq!(schema.to_string().parse::<PgSchemaName>(), Ok(schema));
            }
            Err(_) => {
                let plain = (1..=PgSchemaName::MAX_LEN).contains(&name.len())
                    && !name.starts_with(|c: char| c.is_ascii_digit())
                    && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                prop_assert!(!plain, "{name:?} is a plain identifier");
            }
        }
    }
}
