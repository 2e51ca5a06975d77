//! The whole conformance suite, unchanged, on a store that coalesces concurrent appends
//! into shared transactions (`coalesce_commits`): every promise of the store holds with
//! coalescing on, including the concurrent writers', the subscribers' and the engine's.

mod common;

es_testkit::conformance_tests!(
    common::fresh_store_with(|builder| builder.coalesce_commits(true)),
    teardown = common::drop_schema
);
