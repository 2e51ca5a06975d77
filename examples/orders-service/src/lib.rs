//! The orders example of es-rs as an HTTP service.
//!
//! An [axum](https://docs.rs/axum) server over the `orders` domain:
//!
//! - **commands**, one route each (`POST /orders/{id}/place`, `/pay`, `/prepare`,
//!   `/ship`), executed through a [`Repository`](es_core::Repository) with the request's
//!   correlation id ([`correlation`]) and an optional `idempotency-key`;
//! - **reads** of an order: its state, its history, its state as of a version or time;
//! - a **read model** of orders by status ([`read_model`]), in memory or in a PostgreSQL
//!   table written by a transactional projection, with read-your-writes
//!   ([`consistency`]): a command answers with its last event's position, and
//!   `GET /orders?after=` waits until the read model includes it;
//! - the **live log** as server-sent events (`GET /events`, resumable with
//!   `Last-Event-ID`);
//! - errors as `{"error": kind, "message": ...}` with the statuses in [`error`];
//! - an OpenAPI document at `/openapi.json` ([`openapi`]), request metrics through the
//!   `metrics` facade ([`observe`]) and, with the `prometheus` feature, `/metrics`;
//! - graceful shutdown ([`server`]).
//!
//! The store is chosen by [`backend::Backend`]: in memory, or PostgreSQL.

pub mod api;
pub mod backend;
pub mod consistency;
pub mod correlation;
pub mod error;
pub mod observe;
pub mod openapi;
pub mod read_model;
pub mod routes;
pub mod server;

pub use backend::Backend;
pub use server::{Config, Running, Service, StartError};
