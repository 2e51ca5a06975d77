//! Validation against the official AsyncAPI 3.0.0 schema (vendored in `schema/`).

#![allow(
    clippy::expect_used,
    reason = "test support: a broken vendored schema fails the test"
)]

use serde_json::Value;

/// Every way `document` breaks the official schema, as `path: message` lines; empty if valid.
pub(crate) fn violations(document: &Value) -> Vec<String> {
    // Relative to this file, so that the examples' tests, which include it, find it too.
    let text = include_str!("../../schema/asyncapi-3.0.0.json");
    let schema: Value = serde_json::from_str(text).expect("the vendored schema is JSON");
    let validator = jsonschema::draft7::new(&schema).expect("the vendored schema compiles");
    validator
        .iter_errors(document)
        .map(|error| format!("{}: {error}", error.instance_path()))
        .collect()
}
