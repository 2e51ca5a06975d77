//! Tags: the labels an event carries besides its stream, which [`Query`](crate::Query)
//! items select and conditional appends ([`EventStore::append_if`](crate::EventStore::append_if))
//! guard. See the `query` module for how they are read.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A label on an event: `key:value` (such as `course:c1`) or a plain string.
///
/// Events are tagged with the entities a rule is about, so that a decision can read
/// exactly the events of those entities, whatever streams they are in, and append on the
/// condition that none was added since ([`AppendCondition`](crate::AppendCondition)).
/// Tags are stored and indexed in the clear: never tag with personal data (an email
/// address, a name); tag with the ids of things.
///
/// A tag is 1 to [`Tag::MAX_BYTES`] bytes of UTF-8 without control characters. The key is
/// the text before the first `:`, if any.
///
/// A tag's value may still name a person, if someone tagged with one: `Debug` and
/// `Display` both show it whole, for tests and for storing. In logs and errors show
/// [`Tag::redacted`] (`course:…`), or a [`Query`](crate::Query)'s `Display`, which
/// redacts its tags.
///
/// ```
/// use es_core::Tag;
///
/// let tag = Tag::pair("course", "c1")?;
/// assert_eq!(tag.as_str(), "course:c1");
/// assert_eq!(tag.key(), Some("course"));
/// assert_eq!(tag.value(), "c1");
/// assert_eq!("course:c1".parse::<Tag>()?, tag);
///
/// let plain = Tag::new("vip")?;
/// assert_eq!((plain.key(), plain.value()), (None, "vip"));
/// assert!(Tag::new("").is_err());
/// # Ok::<(), es_core::TagError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Tag(Box<str>);

impl Tag {
    /// The longest tag, in bytes.
    pub const MAX_BYTES: usize = 255;

    /// A tag from its text.
    ///
    /// # Errors
    ///
    /// [`TagError`] if the text is empty, longer than [`Tag::MAX_BYTES`], or holds a
    /// control character.
    pub fn new(text: impl Into<String>) -> Result<Self, TagError> {
        let text = text.into();
        let problem = if text.is_empty() {
            TagProblem::Empty
        } else if text.len() > Self::MAX_BYTES {
            TagProblem::TooLong(text.len())
        } else if text.chars().any(char::is_control) {
            TagProblem::Control
        } else {
            return Ok(Self(text.into_boxed_str()));
        };
        Err(TagError {
            key: key_of(&text).map(printable_key),
            problem,
        })
    }

    /// The tag `key:value`.
    ///
    /// # Errors
    ///
    /// [`TagError`] if the key is empty or holds a `:`, or the whole breaks the rules of
    /// [`Tag::new`].
    pub fn pair(key: &str, value: impl fmt::Display) -> Result<Self, TagError> {
        if key.is_empty() || key.contains(':') {
            return Err(TagError {
                key: Some(printable_key(key)),
                problem: TagProblem::Key,
            });
        }
        Self::new(format!("{key}:{value}"))
    }

    /// The whole tag.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text before the first `:`, if the tag has one.
    pub fn key(&self) -> Option<&str> {
        key_of(&self.0)
    }

    /// The text after the first `:`, or the whole tag if it has none.
    pub fn value(&self) -> &str {
        match self.0.split_once(':') {
            Some((_, value)) => value,
            None => &self.0,
        }
    }

    /// The tag with its value left out (`course:…`), for errors and logs: a value names an
    /// entity, which may be a person.
    pub fn redacted(&self) -> String {
        match self.key() {
            Some(key) => format!("{key}:…"),
            None => "…".to_owned(),
        }
    }
}

fn key_of(text: &str) -> Option<&str> {
    text.split_once(':').map(|(key, _)| key)
}

/// A key as an error may show it: at most 64 characters, control characters escaped.
fn printable_key(key: &str) -> String {
    key.chars()
        .take(64)
        .flat_map(char::escape_default)
        .collect()
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Tag {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = TagError;

    fn from_str(text: &str) -> Result<Self, TagError> {
        Self::new(text)
    }
}

impl TryFrom<&str> for Tag {
    type Error = TagError;

    fn try_from(text: &str) -> Result<Self, TagError> {
        Self::new(text)
    }
}

impl TryFrom<String> for Tag {
    type Error = TagError;

    fn try_from(text: String) -> Result<Self, TagError> {
        Self::new(text)
    }
}

impl<'de> Deserialize<'de> for Tag {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::new(text).map_err(serde::de::Error::custom)
    }
}

/// A text is not a valid [`Tag`]. It names the tag's key (if it has one) but never the
/// value, which may identify a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tag{}: {problem}", key.as_deref().map(|k| format!(" with key `{k}`")).unwrap_or_default())]
pub struct TagError {
    key: Option<String>,
    problem: TagProblem,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum TagProblem {
    #[error("it is empty")]
    Empty,
    #[error("it takes {0} bytes, more than the {max} a tag may take", max = Tag::MAX_BYTES)]
    TooLong(usize),
    #[error("it holds a control character")]
    Control,
    #[error("a key must be non-empty and hold no `:`")]
    Key,
    #[error("the event carries {0} tags, more than the {max} one event may carry", max = crate::limits::MAX_TAGS)]
    TooMany(usize),
}

/// The error for an event that carries `count` tags, more than
/// [`MAX_TAGS`](crate::limits::MAX_TAGS).
pub(crate) fn too_many(count: usize) -> TagError {
    TagError {
        key: None,
        problem: TagProblem::TooMany(count),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_checked() {
        assert!(Tag::new("a").is_ok());
        assert!(Tag::new("x".repeat(Tag::MAX_BYTES)).is_ok());
        assert!(Tag::new("x".repeat(Tag::MAX_BYTES + 1)).is_err());
        assert!(Tag::new("a\u{0}b").is_err());
        assert!(Tag::new("a\nb").is_err());
        assert!(Tag::pair("", "v").is_err());
        assert!(Tag::pair("a:b", "v").is_err());
        assert_eq!(Tag::pair("k", "v:w").unwrap().value(), "v:w");
    }

    #[test]
    fn errors_name_the_key_but_not_the_value() {
        let error = Tag::new(format!("email:{}\n", "ada@example.com")).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("`email`"), "{text}");
        assert!(!text.contains("ada"), "{text}");
    }

    #[test]
    fn deserializing_checks_the_tag() {
        assert!(serde_json::from_str::<Tag>("\"course:c1\"").is_ok());
        assert!(serde_json::from_str::<Tag>("\"\"").is_err());
    }
}
