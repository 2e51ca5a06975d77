//! Queries over the global log by event type and [`Tag`], and the condition a conditional
//! append checks: the model of Dynamic Consistency Boundaries (dcb.events).
//!
//! A [`Query`] selects the events a decision depends on, across streams;
//! [`EventStore::read_query`](crate::EventStore::read_query) reads them, and
//! [`EventStore::append_if`](crate::EventStore::append_if) appends only if no event the
//! query selects was stored after the position the decision was made on
//! ([`AppendCondition`]).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use crate::event::DomainEvent;
use crate::stream::Position;
use crate::tag::Tag;

/// Which events a decision depends on: any of its [items](QueryItem).
///
/// An item selects the events whose type is one of its types (any type, if it names none)
/// and that carry all of its tags. [`Query::all`] selects every event; a query without
/// items selects none.
///
/// Its `Display` shows the types and the tags' keys, never their values (which may name a
/// person): log a query with it (`%query` in `tracing`). Its `Debug` shows the tags
/// whole, for tests.
///
/// ```
/// use es_core::{Query, QueryItem, Tag};
/// use std::collections::BTreeSet;
///
/// let course = Tag::pair("course", "c1")?;
/// let student = Tag::pair("student", "s1")?;
/// let query = Query::from(
///     QueryItem::new().with_types(["CourseDefined", "StudentSubscribed"]).with_tag(course.clone()),
/// )
/// .or(QueryItem::new().with_types(["StudentSubscribed"]).with_tag(student.clone()));
///
/// let tags = BTreeSet::from([course.clone(), student]);
/// assert!(query.matches("StudentSubscribed", &tags));
/// assert!(query.matches("CourseDefined", &BTreeSet::from([course])));
/// assert!(!query.matches("CourseDefined", &BTreeSet::new()));
/// assert!(Query::all().matches("Anything", &BTreeSet::new()));
/// assert!(!Query::none().matches("Anything", &BTreeSet::new()));
/// # Ok::<(), es_core::TagError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Query {
    items: Vec<QueryItem>,
}

/// One alternative of a [`Query`]: event types (any of them; every type if none) and tags
/// (all of them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct QueryItem {
    types: BTreeSet<Arc<str>>,
    tags: BTreeSet<Tag>,
}

impl QueryItem {
    /// An item that selects every event, until types or tags narrow it.
    pub fn new() -> Self {
        Self::default()
    }

    /// An item that selects the event types `E` decodes (every type if `E` reads any).
    pub fn of<E: DomainEvent>() -> Self {
        Self::new().with_types(E::EVENT_TYPES.iter().copied())
    }

    /// Adds event types: the item selects events of any of its types.
    #[must_use]
    pub fn with_types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.types
            .extend(types.into_iter().map(|t| Arc::from(t.as_ref())));
        self
    }

    /// Adds a tag: the item selects only events that carry all of its tags.
    #[must_use]
    pub fn with_tag(mut self, tag: Tag) -> Self {
        self.tags.insert(tag);
        self
    }

    /// Adds tags.
    #[must_use]
    pub fn with_tags(mut self, tags: impl IntoIterator<Item = Tag>) -> Self {
        self.tags.extend(tags);
        self
    }

    /// Its event types, in order; empty when it selects every type.
    pub fn types(&self) -> impl ExactSizeIterator<Item = &str> {
        self.types.iter().map(|t| &**t)
    }

    /// Its tags, in order.
    pub fn tags(&self) -> &BTreeSet<Tag> {
        &self.tags
    }

    /// Whether an event of `event_type` carrying `tags` is selected.
    pub fn matches(&self, event_type: &str, tags: &BTreeSet<Tag>) -> bool {
        (self.types.is_empty() || self.types.contains(event_type)) && self.tags.is_subset(tags)
    }
}

impl Query {
    /// A query that selects every event.
    pub fn all() -> Self {
        Self {
            items: vec![QueryItem::new()],
        }
    }

    /// A query that selects no event: a condition on it never fails.
    pub fn none() -> Self {
        Self::default()
    }

    /// This query or `item`: events either selects.
    #[must_use]
    pub fn or(mut self, item: impl Into<Query>) -> Self {
        for item in item.into().items {
            if !self.items.contains(&item) {
                self.items.push(item);
            }
        }
        self
    }

    /// Its items.
    pub fn items(&self) -> &[QueryItem] {
        &self.items
    }

    /// Whether it selects no event.
    pub fn is_none(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether an event of `event_type` carrying `tags` is selected.
    pub fn matches(&self, event_type: &str, tags: &BTreeSet<Tag>) -> bool {
        self.items.iter().any(|item| item.matches(event_type, tags))
    }
}

impl From<QueryItem> for Query {
    fn from(item: QueryItem) -> Self {
        Self { items: vec![item] }
    }
}

impl FromIterator<QueryItem> for Query {
    fn from_iter<I: IntoIterator<Item = QueryItem>>(items: I) -> Self {
        items.into_iter().fold(Self::none(), Self::or)
    }
}

/// Shows the types and the tags' keys, never their values (which may name a person):
/// `(types CourseDefined|StudentSubscribed, tags course:…) or (tags student:…)`.
impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.items.is_empty() {
            return f.write_str("(nothing)");
        }
        for (i, item) in self.items.iter().enumerate() {
            if i > 0 {
                f.write_str(" or ")?;
            }
            write!(f, "{item}")?;
        }
        Ok(())
    }
}

impl fmt::Display for QueryItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(")?;
        if self.types.is_empty() && self.tags.is_empty() {
            f.write_str("every event")?;
        }
        if !self.types.is_empty() {
            f.write_str("types ")?;
            for (i, t) in self.types.iter().enumerate() {
                if i > 0 {
                    f.write_str("|")?;
                }
                // Types are the application's own names; escape anything odd all the same.
                write!(f, "{}", t.escape_debug())?;
            }
        }
        if !self.tags.is_empty() {
            if !self.types.is_empty() {
                f.write_str(", ")?;
            }
            f.write_str("tags ")?;
            for (i, tag) in self.tags.iter().enumerate() {
                if i > 0 {
                    f.write_str(" ")?;
                }
                f.write_str(&tag.redacted())?;
            }
        }
        f.write_str(")")
    }
}

/// The condition of a conditional append: fail if any event that
/// `fail_if_events_match` selects was stored after `after` (at all, if `after` is `None`).
///
/// A decision reads the events its rule depends on with
/// [`EventStore::read_query`](crate::EventStore::read_query), decides, and appends with
/// this condition, `after` being the position of the last event it read: the append
/// then succeeds only if nothing it depends on changed meanwhile. Make `after` a position
/// `read_query` delivered: like [`read_all`](crate::EventStore::read_all), it delivers
/// only positions before which nothing can commit any more, so an event committed late by
/// an older transaction still counts as after it. A position an append returned is not
/// such a point.
///
/// Its `Debug` shows the query's tags whole, for tests; it has no `Display`: log its
/// query's `Display` (`condition.fail_if_events_match`), which leaves the tags' values
/// out.
///
/// ```
/// use es_core::{AppendCondition, QueryItem, Tag};
///
/// let user = Tag::pair("user", "u-17")?;
/// // Register only if no account was ever opened for the user.
/// let condition = AppendCondition::new(QueryItem::new().with_tag(user));
/// assert_eq!(condition.after, None);
/// # Ok::<(), es_core::TagError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendCondition {
    /// The events whose appearance makes the append fail.
    pub fail_if_events_match: Query,
    /// The position the decision was made on: only events after it count.
    pub after: Option<Position>,
}

impl AppendCondition {
    /// Fail if any event `query` selects is stored at all.
    pub fn new(query: impl Into<Query>) -> Self {
        Self {
            fail_if_events_match: query.into(),
            after: None,
        }
    }

    /// Count only events after `position` (none if `None`).
    #[must_use]
    pub fn after(mut self, position: Option<Position>) -> Self {
        self.after = position;
        self
    }

    /// Whether an event at `position` of `event_type` carrying `tags` makes it fail.
    pub fn fails_on(&self, position: Position, event_type: &str, tags: &BTreeSet<Tag>) -> bool {
        self.after.is_none_or(|after| position > after)
            && self.fail_if_events_match.matches(event_type, tags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(text: &str) -> Tag {
        Tag::new(text).unwrap()
    }

    #[test]
    fn an_item_needs_every_tag_and_one_type() {
        let item = QueryItem::new()
            .with_types(["A", "B"])
            .with_tags([tag("x:1"), tag("y:2")]);
        let both = BTreeSet::from([tag("x:1"), tag("y:2"), tag("z")]);
        assert!(item.matches("A", &both));
        assert!(item.matches("B", &both));
        assert!(!item.matches("C", &both));
        assert!(!item.matches("A", &BTreeSet::from([tag("x:1")])));
        assert!(QueryItem::new().with_tag(tag("x:1")).matches("C", &both));
    }

    #[test]
    fn display_leaves_tag_values_out() {
        let query = Query::from(
            QueryItem::new()
                .with_types(["A"])
                .with_tag(tag("email:ada@x")),
        )
        .or(QueryItem::new());
        let text = query.to_string();
        assert_eq!(text, "(types A, tags email:…) or (every event)");
        assert!(!text.contains("ada"));
    }

    #[test]
    fn conditions_count_only_later_events() {
        let at = |n| Position::from_parts(1, n);
        let condition = AppendCondition::new(Query::all()).after(Some(at(5)));
        assert!(!condition.fails_on(at(5), "A", &BTreeSet::new()));
        assert!(condition.fails_on(at(6), "A", &BTreeSet::new()));
        assert!(AppendCondition::new(Query::all()).fails_on(at(1), "A", &BTreeSet::new()));
        assert!(!AppendCondition::new(Query::none()).fails_on(at(9), "A", &BTreeSet::new()));
    }
}
