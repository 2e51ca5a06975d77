//! The validated name of the PostgreSQL schema the store lives in.

use std::fmt;

/// The PostgreSQL schema holding the store's tables.
///
/// The name is spliced into SQL (identifiers cannot be bind parameters), so only plain
/// identifiers pass: a lowercase ASCII letter or `_`, then up to 62 lowercase ASCII letters,
/// digits or `_` (PostgreSQL's 63-byte identifier limit). It is also always double-quoted
/// in SQL. Everything else in every query is a bind parameter.
///
/// ```
/// use es_postgres::PgSchemaName;
///
/// assert!(PgSchemaName::new("es").is_ok());
/// assert!(PgSchemaName::new("tenant_42_events").is_ok());
/// assert!(PgSchemaName::new("es; DROP TABLE x").is_err());
/// assert!(PgSchemaName::new("Es").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PgSchemaName(String);

/// The text is not a schema name the store accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a valid schema name: use 1 to 63 lowercase ASCII letters, digits or `_`, not starting with a digit"
)]
pub struct PgInvalidSchemaName(String);

impl PgSchemaName {
    /// The longest name PostgreSQL keeps whole.
    pub const MAX_LEN: usize = 63;

    /// Validates `name`.
    ///
    /// # Errors
    ///
    /// Returns [`PgInvalidSchemaName`] unless `name` is a plain lowercase identifier.
    pub fn new(name: &str) -> Result<Self, PgInvalidSchemaName> {
        let mut chars = name.chars();
        let valid = name.len() <= Self::MAX_LEN
            && chars
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(PgInvalidSchemaName(name.escape_debug().to_string()))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name, double-quoted for SQL.
    pub(crate) fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }
}

impl Default for PgSchemaName {
    /// `es`.
    fn default() -> Self {
        Self("es".to_owned())
    }
}

impl fmt::Display for PgSchemaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PgSchemaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgSchemaName({:?})", self.0)
    }
}

impl std::str::FromStr for PgSchemaName {
    type Err = PgInvalidSchemaName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_identifiers_only() {
        for good in ["es", "_es", "es_2", "a", &"x".repeat(63)] {
            assert!(PgSchemaName::new(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1es",
            "Es",
            "es-prod",
            "es prod",
            "es\"",
            "es;drop",
            "ès",
            &"x".repeat(64),
        ] {
            assert!(PgSchemaName::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn quotes_for_sql() {
        assert_eq!(PgSchemaName::new("es").unwrap().quoted(), "\"es\"");
    }
}
