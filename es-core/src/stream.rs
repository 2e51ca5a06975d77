//! Stream identity and ordering: [`StreamId`], [`Version`], [`ExpectedVersion`] and
//! [`Position`].

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The identity of one stream: one aggregate instance's ordered events.
///
/// A stream id is a *category* (the aggregate type, such as `order`) and an *id* within it,
/// written `category-id`, for example `order-42`. The category is what projections filter on,
/// so it is held to a strict shape; the id may be any printable text.
///
/// Validation rules, and why:
/// - the category starts with an ASCII letter and continues with ASCII letters, digits or `_`;
///   it never contains `-`, so the first `-` always separates category from id, and it is safe
///   to show in logs, metrics and SQL identifiers derived from it;
/// - the id is not empty and holds no control characters (they break logs and terminals);
/// - the whole id is at most [`StreamId::MAX_LEN`] bytes, so every store can index it.
///
/// Cloning is cheap: the text is shared.
///
/// ```
/// use es_core::StreamId;
///
/// let id = StreamId::new("order", "42")?;
/// assert_eq!(id.as_str(), "order-42");
/// assert_eq!(id.category(), "order");
/// assert_eq!(id.id(), "42");
/// assert_eq!("order-42".parse::<StreamId>()?, id);
///
/// // Ids may contain `-`; only the first one separates the category.
/// let id: StreamId = "order-2f1c-77".parse()?;
/// assert_eq!(id.id(), "2f1c-77");
///
/// assert!(StreamId::new("order", "").is_err());
/// assert!(StreamId::new("bad-category", "1").is_err());
/// # Ok::<(), es_core::StreamIdError>(())
/// ```
#[derive(Clone)]
pub struct StreamId {
    text: Arc<str>,
    /// Byte index of the `-` between category and id.
    separator: usize,
}

/// Why a text is not a valid [`StreamId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamIdError {
    /// The category part is empty.
    #[error("stream id `{stream}` has an empty category")]
    EmptyCategory {
        /// The rejected text.
        stream: String,
    },
    /// The category holds a character other than ASCII letters, digits and `_`, or does
    /// not start with a letter.
    #[error(
        "stream category `{category}` is invalid: it must start with an ASCII letter and hold only ASCII letters, digits and `_`"
    )]
    InvalidCategory {
        /// The rejected category.
        category: String,
    },
    /// There is no `-` between category and id.
    #[error("stream id `{stream}` has no `-` between category and id")]
    MissingSeparator {
        /// The rejected text.
        stream: String,
    },
    /// The id part is empty.
    #[error("stream id in category `{category}` is empty")]
    EmptyId {
        /// The category of the rejected stream id.
        category: String,
    },
    /// The id holds a control character.
    #[error("stream id `{stream}` contains a control character")]
    ControlCharacter {
        /// The rejected text, with control characters escaped.
        stream: String,
    },
    /// The whole stream id is longer than [`StreamId::MAX_LEN`] bytes.
    #[error("stream id is {len} bytes long, more than the {max} allowed")]
    TooLong {
        /// Length of the rejected text in bytes.
        len: usize,
        /// The limit, [`StreamId::MAX_LEN`].
        max: usize,
    },
}

impl StreamId {
    /// The longest stream id, in bytes, that every store accepts.
    pub const MAX_LEN: usize = 255;

    /// Builds the stream id `category-id`.
    ///
    /// # Errors
    ///
    /// Returns a [`StreamIdError`] if the category or id breaks the rules above.
    pub fn new(category: &str, id: &str) -> Result<Self, StreamIdError> {
        validate_category(category)?;
        let len = category.len() + 1 + id.len();
        if len > Self::MAX_LEN {
            return Err(StreamIdError::TooLong {
                len,
                max: Self::MAX_LEN,
            });
        }
        validate_id(category, id)?;
        let mut text = String::with_capacity(len);
        text.push_str(category);
        text.push('-');
        text.push_str(id);
        Ok(Self {
            text: Arc::from(text),
            separator: category.len(),
        })
    }

    /// Parses `category-id`, splitting at the first `-`.
    ///
    /// # Errors
    ///
    /// Returns a [`StreamIdError`] if the text is not a valid stream id.
    pub fn parse(text: &str) -> Result<Self, StreamIdError> {
        if text.len() > Self::MAX_LEN {
            return Err(StreamIdError::TooLong {
                len: text.len(),
                max: Self::MAX_LEN,
            });
        }
        let Some(separator) = text.find('-') else {
            if text.is_empty() {
                return Err(StreamIdError::EmptyCategory {
                    stream: String::new(),
                });
            }
            return Err(StreamIdError::MissingSeparator {
                stream: text.escape_debug().to_string(),
            });
        };
        if separator == 0 {
            return Err(StreamIdError::EmptyCategory {
                stream: text.escape_debug().to_string(),
            });
        }
        let (category, id) = (&text[..separator], &text[separator + 1..]);
        validate_category(category)?;
        validate_id(category, id)?;
        Ok(Self {
            text: Arc::from(text),
            separator,
        })
    }

    /// The category, such as `order` in `order-42`.
    pub fn category(&self) -> &str {
        &self.text[..self.separator]
    }

    /// The id within the category, such as `42` in `order-42`.
    pub fn id(&self) -> &str {
        &self.text[self.separator + 1..]
    }

    /// The whole stream id, `category-id`.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

fn validate_category(category: &str) -> Result<(), StreamIdError> {
    let mut chars = category.chars();
    match chars.next() {
        None => Err(StreamIdError::EmptyCategory {
            stream: String::new(),
        }),
        Some(first)
            if first.is_ascii_alphabetic()
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') =>
        {
            Ok(())
        }
        Some(_) => Err(StreamIdError::InvalidCategory {
            category: category.escape_debug().to_string(),
        }),
    }
}

fn validate_id(category: &str, id: &str) -> Result<(), StreamIdError> {
    if id.is_empty() {
        return Err(StreamIdError::EmptyId {
            category: category.to_owned(),
        });
    }
    if id.chars().any(char::is_control) {
        return Err(StreamIdError::ControlCharacter {
            stream: format!("{category}-{}", id.escape_debug()),
        });
    }
    Ok(())
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamId({:?})", &*self.text)
    }
}

impl PartialEq for StreamId {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for StreamId {}

impl PartialOrd for StreamId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for StreamId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.text.cmp(&other.text)
    }
}

impl std::hash::Hash for StreamId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Must hash exactly like `str` for the `Borrow<str>` impl to be sound for maps.
        self.text.hash(state);
    }
}

impl Borrow<str> for StreamId {
    fn borrow(&self) -> &str {
        &self.text
    }
}

impl AsRef<str> for StreamId {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl FromStr for StreamId {
    type Err = StreamIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<&str> for StreamId {
    type Error = StreamIdError;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl Serialize for StreamId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for StreamId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The version of a stream: how many events it holds, and the number of each event in it.
///
/// Event versions start at 1 and have no gaps. [`Version::INITIAL`] (0) is the version of a
/// stream with no events.
///
/// ```
/// use es_core::Version;
///
/// let v = Version::INITIAL;
/// assert_eq!(v.next(), Version::new(1));
/// assert_eq!(Version::new(7).get(), 7);
/// ```
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Version(u64);

impl Version {
    /// The version of a stream that holds no events.
    pub const INITIAL: Self = Self(0);

    /// The highest version any store keeps (PostgreSQL's `bigint`): a stream holds at most
    /// this many events, and an expected version beyond it matches no stream.
    #[allow(
        clippy::cast_sign_loss,
        reason = "i64::MAX is positive; `try_from` is not const"
    )]
    pub const MAX: Self = Self(i64::MAX as u64);

    /// A version from its number.
    pub const fn new(version: u64) -> Self {
        Self(version)
    }

    /// The version number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The version after this one.
    #[must_use]
    pub const fn next(self) -> Self {
        // A stream never reaches u64::MAX events; saturating keeps this total.
        Self(self.0.saturating_add(1))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<u64> for Version {
    fn from(version: u64) -> Self {
        Self(version)
    }
}

/// What a writer believes a stream's version to be when it appends: the optimistic
/// concurrency check of [`EventStore::append`](crate::EventStore::append).
///
/// ```
/// use es_core::{ExpectedVersion, Version};
///
/// assert!(ExpectedVersion::Any.matches(Version::new(3)));
/// assert!(ExpectedVersion::NoStream.matches(Version::INITIAL));
/// assert!(!ExpectedVersion::NoStream.matches(Version::new(1)));
/// assert!(ExpectedVersion::Exact(Version::new(3)).matches(Version::new(3)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version is.
    Any,
    /// The stream must not exist yet (hold no events).
    NoStream,
    /// The stream's current version must be exactly this. `Exact(Version::INITIAL)` is the
    /// same as [`ExpectedVersion::NoStream`].
    Exact(Version),
}

impl ExpectedVersion {
    /// Whether a stream currently at `current` satisfies this expectation.
    pub fn matches(self, current: Version) -> bool {
        match self {
            Self::Any => true,
            Self::NoStream => current == Version::INITIAL,
            Self::Exact(expected) => current == expected,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any version"),
            Self::NoStream => f.write_str("no stream"),
            Self::Exact(version) => write!(f, "version {version}"),
        }
    }
}

impl From<Version> for ExpectedVersion {
    fn from(version: Version) -> Self {
        Self::Exact(version)
    }
}

/// A place in a store's global log, totally ordered.
///
/// Every recorded event carries the position it has in the global log; readers of the log
/// and subscriptions resume *after* a position, and projections save the last position they
/// handled as their checkpoint. Resume after positions that a read of the log delivered:
/// those are safe, while the position an append returns may still see events of older,
/// still-open transactions sorted before it (see [`EventStore`](crate::EventStore)).
///
/// A position is opaque: it has two parts whose meaning belongs to the store that made it
/// (the in-memory store numbers batches and events; the PostgreSQL store uses the writing
/// transaction and the row's sequence number, so that its order is the order in which
/// events became visible). Compare positions, store them, hand them back to the same store;
/// do not compute with them. [`Position::START`] lies before every event.
///
/// The text form, `major:minor`, round-trips through [`FromStr`] and serde.
///
/// ```
/// use es_core::Position;
///
/// let p = Position::from_parts(3, 41);
/// assert!(Position::START < p);
/// assert_eq!(p.to_string().parse::<Position>()?, p);
/// # Ok::<(), es_core::ParsePositionError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    major: u64,
    minor: u64,
}

impl Position {
    /// The position before the first event of every log.
    pub const START: Self = Self { major: 0, minor: 0 };

    /// A position from its parts, as a store defines them.
    pub const fn from_parts(major: u64, minor: u64) -> Self {
        Self { major, minor }
    }

    /// The two parts of this position, as the store that made it defines them.
    pub const fn parts(self) -> (u64, u64) {
        (self.major, self.minor)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// The text is not a [`Position`] (`major:minor`, two unsigned integers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a log position (expected `major:minor`)")]
pub struct ParsePositionError {
    text: String,
}

impl FromStr for Position {
    type Err = ParsePositionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let error = || ParsePositionError {
            text: s.escape_debug().to_string(),
        };
        let (major, minor) = s.split_once(':').ok_or_else(error)?;
        Ok(Self {
            major: major.parse().map_err(|_| error())?,
            minor: minor.parse().map_err(|_| error())?,
        })
    }
}

impl Serialize for Position {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Position {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_splits_at_first_dash() {
        let id = StreamId::parse("order-a-b").unwrap();
        assert_eq!((id.category(), id.id()), ("order", "a-b"));
        assert_eq!(id, StreamId::new("order", "a-b").unwrap());
    }

    #[test]
    fn rejects_bad_stream_ids() {
        assert!(matches!(
            StreamId::parse(""),
            Err(StreamIdError::EmptyCategory { .. })
        ));
        assert!(matches!(
            StreamId::parse("-1"),
            Err(StreamIdError::EmptyCategory { .. })
        ));
        assert!(matches!(
            StreamId::parse("order"),
            Err(StreamIdError::MissingSeparator { .. })
        ));
        assert!(matches!(
            StreamId::parse("order-"),
            Err(StreamIdError::EmptyId { .. })
        ));
        assert!(matches!(
            StreamId::parse("1order-1"),
            Err(StreamIdError::InvalidCategory { .. })
        ));
        assert!(matches!(
            StreamId::new("or der", "1"),
            Err(StreamIdError::InvalidCategory { .. })
        ));
        assert!(matches!(
            StreamId::new("order", "a\nb"),
            Err(StreamIdError::ControlCharacter { .. })
        ));
        let long = "x".repeat(StreamId::MAX_LEN);
        assert!(matches!(
            StreamId::new("order", &long),
            Err(StreamIdError::TooLong { .. })
        ));
        assert!(matches!(
            StreamId::parse(&format!("order-{long}")),
            Err(StreamIdError::TooLong { .. })
        ));
    }

    #[test]
    fn longest_valid_id_is_accepted() {
        let id = "x".repeat(StreamId::MAX_LEN - "order-".len());
        let stream = StreamId::new("order", &id).unwrap();
        assert_eq!(stream.as_str().len(), StreamId::MAX_LEN);
    }

    #[test]
    fn stream_id_serde_validates() {
        let id: StreamId = serde_json::from_str("\"order-1\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"order-1\"");
        assert!(serde_json::from_str::<StreamId>("\"nope\"").is_err());
    }

    #[test]
    fn positions_order_by_major_then_minor() {
        let a = Position::from_parts(1, 9);
        let b = Position::from_parts(2, 1);
        assert!(Position::START < a && a < b);
        assert_eq!("2:1".parse::<Position>().unwrap(), b);
        assert!("2".parse::<Position>().is_err());
        assert!("x:1".parse::<Position>().is_err());
        let json = serde_json::to_string(&b).unwrap();
        assert_eq!(serde_json::from_str::<Position>(&json).unwrap(), b);
    }

    #[test]
    fn expected_version_rules() {
        let v3 = Version::new(3);
        assert!(ExpectedVersion::Any.matches(Version::INITIAL));
        assert!(!ExpectedVersion::NoStream.matches(v3));
        assert!(ExpectedVersion::Exact(Version::INITIAL).matches(Version::INITIAL));
        assert!(!ExpectedVersion::Exact(v3).matches(Version::new(2)));
    }
}
