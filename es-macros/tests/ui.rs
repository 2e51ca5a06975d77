//! Compile-fail tests: every diagnostic the derives emit, locked in `.stderr` files.
//!
//! One mistake per file, grouped by derive. After a toolchain bump or a deliberate change to
//! a message, regenerate with `TRYBUILD=overwrite cargo test -p es-macros --test ui` and
//! review the `.stderr` diff like any code change. The expected output is written for the
//! toolchain CI pins; another compiler version may word its own notes differently.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/domain_event/*.rs");
    t.compile_fail("tests/ui/aggregate/*.rs");
    t.compile_fail("tests/ui/event_schema/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
