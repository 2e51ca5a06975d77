//! `#[tag]` fields: what the derived `DomainEvent::tags` returns.

use std::fmt;

use es_core::{DomainEvent, Tag};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CourseId(String);

impl fmt::Display for CourseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, DomainEvent)]
enum CourseEvent {
    Defined {
        #[tag(prefix = "course")]
        id: CourseId,
        capacity: u32,
    },
    StudentSubscribed {
        #[tag(prefix = "course")]
        course: CourseId,
        #[tag]
        student: u64,
        #[tag]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cohort: Option<String>,
        // Payload renames shape the JSON only; the tag's key is the Rust name.
        #[tag]
        #[serde(rename = "roomName")]
        room: String,
        r#type: String,
    },
    Renamed(#[tag(prefix = "course")] CourseId),
    // Two fields under one key: both tags are kept.
    Merged {
        #[tag(prefix = "course")]
        from: CourseId,
        #[tag(prefix = "course")]
        into: CourseId,
    },
    Typed {
        #[tag]
        r#type: String,
    },
    Closed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[serde(rename_all = "camelCase")]
struct InvoiceIssued {
    #[tag(prefix = "invoice")]
    invoice_number: u64,
    #[tag]
    customer_id: std::option::Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
struct TokenUsed(#[tag(prefix = "token")] String, u8);

fn tags(list: &[&str]) -> Vec<Tag> {
    let tags: Vec<Tag> = list
        .iter()
        .filter_map(|text| Tag::new(*text).ok())
        .collect();
    assert_eq!(tags.len(), list.len(), "the expected tags are valid");
    tags
}

#[test]
fn a_tag_is_the_prefix_or_the_field_name_then_the_display_of_the_value() {
    let defined = CourseEvent::Defined {
        id: CourseId("c1".into()),
        capacity: 10,
    };
    assert_eq!(defined.tags().unwrap(), tags(&["course:c1"]));

    let subscribed = CourseEvent::StudentSubscribed {
        course: CourseId("c1".into()),
        student: 42,
        cohort: None,
        room: "A 1".into(),
        r#type: "x".into(),
    };
    assert_eq!(
        subscribed.tags().unwrap(),
        tags(&["course:c1", "student:42", "room:A 1"])
    );
}

#[test]
fn an_option_gives_a_tag_only_when_it_is_some() {
    let mut subscribed = CourseEvent::StudentSubscribed {
        course: CourseId("c1".into()),
        student: 42,
        cohort: Some("2026".into()),
        room: "r".into(),
        r#type: "x".into(),
    };
    assert_eq!(
        subscribed.tags().unwrap(),
        tags(&["course:c1", "student:42", "cohort:2026", "room:r"])
    );
    if let CourseEvent::StudentSubscribed { cohort, .. } = &mut subscribed {
        *cohort = None;
    }
    assert_eq!(
        subscribed.tags().unwrap(),
        tags(&["course:c1", "student:42", "room:r"])
    );
}

#[test]
fn tuple_fields_struct_events_and_raw_names_are_tagged() {
    assert_eq!(
        CourseEvent::Renamed(CourseId("c2".into())).tags().unwrap(),
        tags(&["course:c2"])
    );
    assert_eq!(
        CourseEvent::Typed {
            r#type: "lab".into()
        }
        .tags()
        .unwrap(),
        tags(&["type:lab"])
    );
    assert_eq!(
        TokenUsed("t-1".into(), 3).tags().unwrap(),
        tags(&["token:t-1"])
    );
    // `rename_all` on the struct renames the payload's keys, not the tags'.
    let issued = InvoiceIssued {
        invoice_number: 7,
        customer_id: Some(3),
    };
    assert_eq!(issued.encode().unwrap()["invoiceNumber"], 7);
    assert_eq!(
        issued.tags().unwrap(),
        tags(&["invoice:7", "customer_id:3"])
    );
    let issued = InvoiceIssued {
        invoice_number: 8,
        customer_id: None,
    };
    assert_eq!(issued.tags().unwrap(), tags(&["invoice:8"]));
}

#[test]
fn several_fields_may_share_a_key_and_untagged_events_have_no_tags() {
    let merged = CourseEvent::Merged {
        from: CourseId("a".into()),
        into: CourseId("b".into()),
    };
    assert_eq!(merged.tags().unwrap(), tags(&["course:a", "course:b"]));
    assert_eq!(CourseEvent::Closed.tags().unwrap(), Vec::<Tag>::new());
}

#[test]
fn a_value_that_makes_no_valid_tag_is_an_error_without_the_value() {
    let event = CourseEvent::Renamed(CourseId("secret\nvalue".into()));
    let error = event.tags().unwrap_err();
    let text = error.to_string();
    assert!(text.contains("`course`"), "{text}");
    assert!(!text.contains("secret"), "{text}");

    let too_long = CourseEvent::Renamed(CourseId("x".repeat(Tag::MAX_BYTES)));
    assert!(too_long.tags().is_err());
}
