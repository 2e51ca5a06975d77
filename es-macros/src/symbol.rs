//! The helper attributes' names and keys, written once.

use std::fmt::{self, Display};

use syn::{Ident, Path};

/// An attribute name or key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Symbol(&'static str);

/// `#[event(...)]`, the `DomainEvent` derive's attribute.
pub(crate) const EVENT: Symbol = Symbol("event");
/// `#[aggregate(...)]`, the `AggregateType` derive's attribute.
pub(crate) const AGGREGATE: Symbol = Symbol("aggregate");
/// `#[serde(...)]`: copied onto the payload helpers from fields, refused where no payload
/// would honour it.
pub(crate) const SERDE: Symbol = Symbol("serde");
/// `#[tag]` and `#[tag(prefix = "...")]`: a field of an event that becomes one of its tags.
pub(crate) const TAG: Symbol = Symbol("tag");
/// The key of `#[tag(...)]`: the tag's key, instead of the field's name.
pub(crate) const PREFIX: Symbol = Symbol("prefix");

/// `#[personal(subject = ..., forgotten = ...)]`: a field of an event that holds personal
/// data of a subject, stored so that it can be forgotten.
pub(crate) const PERSONAL: Symbol = Symbol("personal");
/// The keys of `#[personal(...)]`: whose data it is, and what a reader sees once forgotten.
pub(crate) const SUBJECT: Symbol = Symbol("subject");
pub(crate) const FORGOTTEN: Symbol = Symbol("forgotten");

pub(crate) const CRATE: Symbol = Symbol("crate");
pub(crate) const NAME: Symbol = Symbol("name");
pub(crate) const VERSION: Symbol = Symbol("version");
pub(crate) const ALIAS: Symbol = Symbol("alias");
pub(crate) const UPCAST: Symbol = Symbol("upcast");
/// The keys of `upcast(...)`.
pub(crate) const FROM: Symbol = Symbol("from");
pub(crate) const WITH: Symbol = Symbol("with");
pub(crate) const TYPED: Symbol = Symbol("typed");

pub(crate) const COMMAND: Symbol = Symbol("command");
/// The `event = Type` key of `#[aggregate(...)]`.
pub(crate) const EVENT_TYPE: Symbol = Symbol("event");
pub(crate) const ERROR: Symbol = Symbol("error");
pub(crate) const SERVICES: Symbol = Symbol("services");
pub(crate) const SNAPSHOT_VERSION: Symbol = Symbol("snapshot_version");

impl Symbol {
    pub(crate) const fn as_str(self) -> &'static str {
        self.0
    }
}

impl Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl PartialEq<Symbol> for Ident {
    fn eq(&self, symbol: &Symbol) -> bool {
        self == symbol.0
    }
}

impl PartialEq<Symbol> for Path {
    fn eq(&self, symbol: &Symbol) -> bool {
        self.is_ident(symbol.0)
    }
}
