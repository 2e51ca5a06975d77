//! [`PgKeyStore`]: the data keys of subjects whose personal data events hold
//! (`es_core::personal`, crypto-shredding), in the store's own schema, beside the events
//! they protect.
//!
//! One row per subject in `subject_keys`, its key stored only wrapped by the application's
//! master key ([`KeyEncryption`]): the database alone cannot read a single personal field.
//! Forgetting deletes the row and records who asked and when in `forgotten_subjects`, in
//! one transaction (`es_forget_subject`, migration 0010), after which the subject never
//! gets a key again. Why a key stored concurrently with the forgetting cannot survive it,
//! or a first use race make two keys, is said in `migrations/0010_subject_keys.sql`: the
//! insert and the forgetting take the subject's lock, at READ COMMITTED, which this module
//! sets on the transactions it opens whatever the session's default.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use es_core::personal::{
    DataKey, Forgetting, KeyEncryption, KeyError, KeyId, KeyStore, LocalKeyEncryption, Subject,
};
use sqlx::Row as _;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::checkout::within;
use crate::error::retry_serialization_failures;
use crate::inner::{Inner, statement};
use crate::schema::PgSchemaName;
use crate::store::PgEventStore;
use crate::tx::PgTx;

/// The [`KeyStore`] of a [`PgEventStore`]: subjects' data keys in its schema (tables
/// `subject_keys` and `forgotten_subjects`, made by [`PgEventStore::migrate`]), wrapped by
/// `W`.
///
/// - [`key_for`](KeyStore::key_for) makes a subject's key on first use, once: concurrent
///   first uses, in this process or others, all get the one key stored;
/// - a key is stored only wrapped ([`KeyEncryption::wrap`]); reading it with another
///   master key fails with [`KeyError::Unwrap`];
/// - [`forget`](KeyStore::forget) deletes the subject's key and records the forgetting in
///   one transaction, race-free against a concurrent first use (which then stores no key).
///   Deleted rows stay in the table's files until `VACUUM` reclaims them, and in backups
///   and archived WAL taken before: those still hold the key *wrapped*, so it is the
///   master key that must not be kept with them. The destroyed key's id is recorded
///   (`forgotten_keys`, migration 11, which also recorded the keys destroyed before it):
///   [`key`](KeyStore::key) reads `None` for it, and [`KeyError::UnknownKey`] for an id
///   this schema never held.
///
/// Every statement is bounded by the store's reply deadline, as its other calls are;
/// failures are [`KeyError::Backend`] with the sqlx error as the source (see
/// [`is_transient`](crate::is_transient) for whether to retry), never holding a key.
///
/// The application role ([`PgEventStore::grant_application_role`]) may read and store
/// keys and forget subjects, but not replace or delete a key otherwise.
///
/// Cheap to clone: clones share the store's pool and the master key. Keys are not cached
/// here; a caller that encrypts many events caches them itself.
///
/// ```no_run
/// use es_core::personal::{KeyStore as _, LocalKeyEncryption, Subject};
/// use es_postgres::{PgEventStore, PgKeyStore};
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PgEventStore::connect("postgres://postgres@127.0.0.1:5432/postgres").await?;
/// store.migrate().await?;
/// let keys = PgKeyStore::new(&store, LocalKeyEncryption::from_env("ES_MASTER_KEY")?);
///
/// let ada = Subject::new("customer-42")?;
/// let (id, _key) = keys.key_for(&ada).await?.expect("not forgotten yet");
/// keys.forget(&ada, "ticket 1234").await?;
/// assert!(keys.key_for(&ada).await?.is_none());
/// assert!(keys.key(id).await?.is_none());
/// # Ok(())
/// # }
/// ```
pub struct PgKeyStore<W: KeyEncryption = LocalKeyEncryption> {
    inner: Arc<Inner>,
    encryption: Arc<W>,
}

impl<W: KeyEncryption> PgKeyStore<W> {
    /// The key store in `store`'s schema, on its pool, with keys wrapped by `encryption`.
    ///
    /// The tables are made by [`PgEventStore::migrate`] (migration 10): migrate first.
    pub fn new(store: &PgEventStore, encryption: W) -> Self {
        Self {
            inner: Arc::clone(&store.inner),
            encryption: Arc::new(encryption),
        }
    }

    /// What wraps the keys.
    pub fn encryption(&self) -> &W {
        &self.encryption
    }

    /// The schema the keys are kept in.
    pub fn schema(&self) -> &PgSchemaName {
        &self.inner.schema
    }

    /// The subject's key as stored, or that it is forgotten (`sql/key_lookup.sql`).
    async fn lookup(&self, subject: &Subject) -> Result<Found, KeyError> {
        let row = statement!(self.inner, |c| {
            sqlx::query(self.inner.sql.key_lookup.clone())
                .bind(subject.as_str())
                .fetch_one(c)
        })
        .await
        .map_err(KeyError::backend)?;
        Found::from_row(&row).map_err(KeyError::backend)
    }

    /// Stores `wrapped` as the subject's key `id`, unless the subject has one or is
    /// forgotten: then what is stored instead. One transaction at READ COMMITTED, which the
    /// insert's trigger needs (migration 0010).
    async fn store(
        &self,
        subject: &Subject,
        id: KeyId,
        wrapped: &[u8],
    ) -> Result<Stored, KeyError> {
        let (inner, deadline) = (&*self.inner, self.inner.reply_timeout);
        retry_serialization_failures(|| async move {
            let mut tx = within(deadline, PgTx::begin_read_committed(&inner.pool)).await?;
            let work = async {
                let stored: Option<Uuid> = within(
                    deadline,
                    sqlx::query_scalar(inner.sql.key_insert.clone())
                        .bind(subject.as_str())
                        .bind(id.as_uuid())
                        .bind(wrapped)
                        .fetch_optional(&mut *tx),
                )
                .await?;
                if stored.is_some() {
                    return Ok(Stored::Ours);
                }
                // Not stored: the insert waited for the subject's lock, so whichever key
                // or record stopped it has committed, and this statement sees it.
                let row = within(
                    deadline,
                    sqlx::query(inner.sql.key_lookup.clone())
                        .bind(subject.as_str())
                        .fetch_one(&mut *tx),
                )
                .await?;
                Found::from_row(&row).map(Stored::Found)
            }
            .await;
            match work {
                Ok(stored) => {
                    within(deadline, tx.commit()).await?;
                    Ok(stored)
                }
                Err(error) => {
                    let _ = within(deadline, tx.rollback()).await;
                    Err(error)
                }
            }
        })
        .await
        .map_err(KeyError::backend)
    }

    /// The key `wrapped` holds, unwrapped.
    async fn open(&self, id: KeyId, wrapped: &[u8]) -> Result<DataKey, KeyError> {
        self.encryption.unwrap(id, wrapped).await
    }
}

impl<W: KeyEncryption> Clone for PgKeyStore<W> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            encryption: Arc::clone(&self.encryption),
        }
    }
}

impl<W: KeyEncryption> fmt::Debug for PgKeyStore<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgKeyStore")
            .field("schema", &self.inner.schema)
            .finish_non_exhaustive()
    }
}

impl<W: KeyEncryption> KeyStore for PgKeyStore<W> {
    async fn key_for(&self, subject: &Subject) -> Result<Option<(KeyId, DataKey)>, KeyError> {
        match self.lookup(subject).await? {
            Found::Key(id, wrapped) => return Ok(Some((id, self.open(id, &wrapped).await?))),
            Found::Forgotten => return Ok(None),
            Found::Nothing => {}
        }
        // Wrapped before the transaction: a key management service's round trip is not
        // spent holding the subject's lock.
        let (id, key) = (KeyId::new(), DataKey::generate());
        let wrapped = self.encryption.wrap(&key).await?;
        match self.store(subject, id, &wrapped).await? {
            Stored::Ours => Ok(Some((id, key))),
            Stored::Found(Found::Key(id, wrapped)) => {
                Ok(Some((id, self.open(id, &wrapped).await?)))
            }
            Stored::Found(Found::Forgotten) => Ok(None),
            // Only a key deleted by hand, without a record, between the insert and the
            // read: there is no key to give, and "forgotten" would be untrue.
            Stored::Found(Found::Nothing) => Err(KeyError::backend(
                "the subject's key was deleted while it was stored, yet the subject is not \
                 recorded forgotten (deleted outside es_forget_subject?); try again",
            )),
        }
    }

    async fn key(&self, id: KeyId) -> Result<Option<DataKey>, KeyError> {
        let (wrapped, forgotten): (Option<Vec<u8>>, bool) = statement!(self.inner, |c| {
            sqlx::query_as(self.inner.sql.key_by_id.clone())
                .bind(id.as_uuid())
                .fetch_one(c)
        })
        .await
        .map_err(KeyError::backend)?;
        match wrapped {
            Some(wrapped) => self.open(id, &wrapped).await.map(Some),
            None if forgotten => Ok(None),
            None => Err(KeyError::UnknownKey { key: id }),
        }
    }

    async fn forget(&self, subject: &Subject, by: &str) -> Result<Forgetting, KeyError> {
        let (inner, deadline) = (&*self.inner, self.inner.reply_timeout);
        // In a transaction of its own at READ COMMITTED, which es_forget_subject needs.
        let row = retry_serialization_failures(|| async move {
            let mut tx = within(deadline, PgTx::begin_read_committed(&inner.pool)).await?;
            let row = within(
                deadline,
                sqlx::query(inner.sql.key_forget.clone())
                    .bind(subject.as_str())
                    .bind(by)
                    .fetch_one(&mut *tx),
            )
            .await;
            match row {
                Ok(row) => {
                    within(deadline, tx.commit()).await?;
                    Ok(row)
                }
                Err(error) => {
                    let _ = within(deadline, tx.rollback()).await;
                    Err(error)
                }
            }
        })
        .await
        .map_err(KeyError::backend)?;
        forgetting(subject, &row).map_err(KeyError::backend)
    }

    async fn forgotten(&self, subject: &Subject) -> Result<Option<Forgetting>, KeyError> {
        let row = statement!(self.inner, |c| {
            sqlx::query(self.inner.sql.key_forgotten.clone())
                .bind(subject.as_str())
                .fetch_optional(c)
        })
        .await
        .map_err(KeyError::backend)?;
        row.map(|row| forgetting(subject, &row))
            .transpose()
            .map_err(KeyError::backend)
    }
}

/// What `sql/key_lookup.sql` found of a subject.
enum Found {
    /// Its key, wrapped.
    Key(KeyId, Vec<u8>),
    /// It is forgotten.
    Forgotten,
    /// Neither: it has no key yet.
    Nothing,
}

impl Found {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        let id: Option<Uuid> = row.try_get("key_id")?;
        let wrapped: Option<Vec<u8>> = row.try_get("wrapped")?;
        let forgotten: bool = row.try_get("forgotten")?;
        // A record wins over a key: forgetting deletes the key with it, so both at once
        // is a key put back by hand, and the subject asked to be forgotten.
        Ok(match (id, wrapped) {
            _ if forgotten => Self::Forgotten,
            (Some(id), Some(wrapped)) => Self::Key(KeyId::from(id), wrapped),
            _ => Self::Nothing,
        })
    }
}

/// What storing a new key came to.
enum Stored {
    /// The key was stored: it is the subject's.
    Ours,
    /// It was not; this is what the subject has instead.
    Found(Found),
}

/// The record of the subject's forgetting, from `sql/key_forget.sql` or
/// `sql/key_forgotten.sql`.
fn forgetting(subject: &Subject, row: &PgRow) -> Result<Forgetting, sqlx::Error> {
    let by: String = row.try_get("forgotten_by")?;
    let at: DateTime<Utc> = row.try_get("forgotten_at")?;
    Ok(Forgetting {
        subject: subject.clone(),
        by,
        at,
    })
}
