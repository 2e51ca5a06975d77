//! The whole store conformance suite, unchanged, against a real PostgreSQL server; each
//! test in a schema of its own.

mod common;

es_testkit::conformance_tests!(common::fresh_store(), teardown = common::drop_schema);
