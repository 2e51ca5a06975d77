//! A fresh schema per test on the server `DATABASE_URL` names: `es_testkit::postgres`, the
//! one helper every test of the workspace shares (with its connection budget), under the
//! names these tests use. The fault tests' private clusters are in `cluster.rs`.

#![allow(unused_imports, reason = "each test binary uses a different part")]

pub(crate) use es_testkit::postgres::{
    connect, connect_to, connect_with, database_url, drop_schema, fresh_store, fresh_store_with,
    hold_connections, second_store,
};
