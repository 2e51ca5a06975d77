//! Validation against the official AsyncAPI 3.0.0 schema (vendored in `schema/`), and the
//! check of the examples' committed documents.

#![allow(dead_code, reason = "each test binary uses a different part")]
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

/// Asserts that `yaml` equals the committed copy at `committed` (a path), which
/// `UPDATE_ASYNCAPI=1 cargo test -p <package> --test asyncapi` rewrites after a deliberate
/// change to the events.
pub(crate) fn assert_committed(yaml: &str, committed: &str, package: &str) {
    if std::env::var_os("UPDATE_ASYNCAPI").is_some() {
        std::fs::write(committed, yaml).expect("write the committed copy");
    }
    let held = std::fs::read_to_string(committed).unwrap_or_default();
    assert!(
        held == yaml,
        "the events changed the AsyncAPI document; review the change and run\n\
         UPDATE_ASYNCAPI=1 cargo test -p {package} --test asyncapi\n\
         to commit it. First differing line: {:?}",
        held.lines().zip(yaml.lines()).find(|(a, b)| a != b)
    );
}
