//! Transactions that survive cancellation: [`PgTx`].
//!
//! sqlx 0.9.0's `Pool::begin` is not cancel safe (upstream issue 4393): a future dropped
//! while its `BEGIN` is in flight hands the pooled connection back *inside* the open
//! transaction, without the rollback sqlx queues in every other case. Later statements on
//! that connection run in the stale transaction: an append "succeeds" and is rolled back
//! when the connection closes, and after its first error every statement fails with
//! `25P02`. Any `.await` is a point where a caller may drop the future (a timeout, an
//! aborted task, a `select!`), so this cannot be left to callers.
//!
//! [`PgTx`] is the store's one way into a transaction. It owns its pooled connection (a
//! [`Checkout`]) and knows whether the transaction ended cleanly: only after a `COMMIT` or
//! `ROLLBACK` that the server answered does the connection go back to the pool. It begins and ends through
//! sqlx's transaction manager, so sqlx knows the connection is inside a transaction: a
//! projection that opens one of its own on it (`begin()`, to try something and roll it
//! back) gets a savepoint, not a second `BEGIN` whose rollback would undo the store's work. Dropped at any other
//! point (mid-`BEGIN`, mid-statement, mid-`COMMIT`, or simply without an ending), it marks
//! the connection to be closed instead, and the server rolls back whatever the closed
//! session had open. That costs a reconnect after a cancellation, which is rare, and
//! nothing on the normal path; checking every released connection instead (a round
//! trip per release) would cost every statement.

use std::ops::{Deref, DerefMut};

use sqlx::SqlSafeStr as _;
use sqlx::postgres::PgConnection;
use sqlx::postgres::PgTransactionManager;
use sqlx_core::transaction::TransactionManager as _;

use crate::checkout::{Checkout, Source};

/// A transaction on a connection of the pool, ended by [`commit`](PgTx::commit) or
/// [`rollback`](PgTx::rollback); dropped otherwise, its connection is closed, never pooled.
#[derive(Debug)]
pub(crate) struct PgTx {
    connection: Checkout,
}

impl PgTx {
    /// Begins a transaction on a connection from `pool`.
    pub(crate) async fn begin(pool: &(impl Source + ?Sized)) -> Result<Self, sqlx::Error> {
        // From here on a drop closes the connection: if `BEGIN` is in flight when the
        // caller goes away, nobody can tell whether the server opened the transaction.
        let mut connection = Checkout::take(pool).await?;
        PgTransactionManager::begin(&mut connection, None).await?;
        Ok(Self { connection })
    }

    /// Begins a transaction at READ COMMITTED, whatever the session's default (a role's
    /// `default_transaction_isolation`, say): for work whose statements must each see what
    /// committed before it (a conditional append's check).
    pub(crate) async fn begin_read_committed(
        pool: &(impl Source + ?Sized),
    ) -> Result<Self, sqlx::Error> {
        let mut connection = Checkout::take(pool).await?;
        let begin = "BEGIN ISOLATION LEVEL READ COMMITTED".into_sql_str();
        PgTransactionManager::begin(&mut connection, Some(begin)).await?;
        Ok(Self { connection })
    }

    /// Commits; the connection goes back to the pool once the server confirmed it.
    ///
    /// An error leaves the outcome unknown (the commit may have happened); the connection
    /// is closed.
    pub(crate) async fn commit(mut self) -> Result<(), sqlx::Error> {
        self.outermost()?;
        PgTransactionManager::commit(&mut self.connection).await?;
        self.connection.finish();
        Ok(())
    }

    /// Rolls back; the connection goes back to the pool once the server confirmed it (if
    /// the connection is broken, closing it rolls back all the same).
    pub(crate) async fn rollback(mut self) -> Result<(), sqlx::Error> {
        self.outermost()?;
        PgTransactionManager::rollback(&mut self.connection).await?;
        self.connection.finish();
        Ok(())
    }

    /// Refuses to end anything but the store's own transaction: a projection that left a
    /// transaction of its own open inside it (forgot to end a savepoint it began) would
    /// otherwise have that one ended instead, and the connection pooled inside ours. The
    /// connection is then closed, which rolls everything back: nothing was stored.
    fn outermost(&self) -> Result<(), sqlx::Error> {
        if PgTransactionManager::get_transaction_depth(&self.connection) == 1 {
            return Ok(());
        }
        Err(sqlx::Error::Configuration(
            "a transaction opened inside the store's transaction was left open; nothing was stored"
                .into(),
        ))
    }
}

impl Deref for PgTx {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.connection
    }
}

impl DerefMut for PgTx {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.connection
    }
}
