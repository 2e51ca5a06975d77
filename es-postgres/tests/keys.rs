//! The key store of personal data (`PgKeyStore`) on a real server: one key per subject
//! however many processes ask at once, stored only wrapped, forgotten for good and
//! race-free against a concurrent first use, and usable by the application role, which
//! cannot replace or delete a key otherwise.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step is a failed test"
)]

mod common;
#[path = "common/role.rs"]
mod role;
use role::Role;

use std::time::Duration;

use es_core::personal::{KeyError, KeyId, KeyStore as _, LocalKeyEncryption, Subject};
use es_postgres::{PgEventStore, PgKeyStore, PgStoreError};
use sqlx::AssertSqlSafe;
use uuid::Uuid;

/// The master key every test shares, and another.
fn master() -> LocalKeyEncryption {
    LocalKeyEncryption::from_bytes([7; 32])
}

fn other_master() -> LocalKeyEncryption {
    LocalKeyEncryption::from_bytes([8; 32])
}

fn subject() -> Subject {
    Subject::new(format!("customer-{}", Uuid::new_v4().simple())).unwrap()
}

/// A store on the same schema with a pool of its own, its sessions named so that a test
/// can find them: another process, in effect.
async fn another_process(store: &PgEventStore) -> (PgEventStore, String) {
    let name = format!(
        "es-test-keys-{}",
        &Uuid::new_v4().simple().to_string()[..12]
    );
    (common::second_store(store, &name, |b| b).await, name)
}

/// How many key rows the subject has.
async fn key_rows(store: &PgEventStore, subject: &Subject) -> i64 {
    sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT count(*) FROM \"{}\".subject_keys WHERE subject = $1",
        store.schema()
    )))
    .bind(subject.as_str())
    .fetch_one(store.pool())
    .await
    .unwrap()
}

/// Waits until a session named `application` waits for an advisory lock (the subject's).
async fn until_waiting_for_the_lock(store: &PgEventStore, application: &str) {
    let waiting = async {
        loop {
            let waits: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = $1 \
                 AND wait_event_type = 'Lock' AND wait_event = 'advisory')",
            )
            .bind(application)
            .fetch_one(store.pool())
            .await
            .unwrap();
            if waits {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("the other process waits for the subject's lock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_is_made_once_and_read_by_another_process() {
    let store = common::fresh_store().await;
    let (second, _) = another_process(&store).await;
    let keys = PgKeyStore::new(&store, master());
    let elsewhere = PgKeyStore::new(&second, master());
    let ada = subject();

    let (id, key) = keys.key_for(&ada).await.unwrap().expect("a new key");
    let (again, same) = keys.key_for(&ada).await.unwrap().unwrap();
    assert_eq!((again, &same), (id, &key), "the same key on a second use");
    let (there, theirs) = elsewhere.key_for(&ada).await.unwrap().unwrap();
    assert_eq!(
        (there, &theirs),
        (id, &key),
        "the same key in another process"
    );
    assert_eq!(elsewhere.key(id).await.unwrap(), Some(key.clone()));
    assert_eq!(key_rows(&store, &ada).await, 1);

    let (bob, bobs) = {
        let bob = subject();
        let key = keys.key_for(&bob).await.unwrap().unwrap();
        (bob, key)
    };
    assert_ne!(bobs.0, id, "another subject, another key");
    assert_ne!(bobs.1, key);
    let never = KeyId::new();
    assert!(
        matches!(keys.key(never).await, Err(KeyError::UnknownKey { key }) if key == never),
        "a key never made is not a forgotten one"
    );
    assert_eq!(keys.forgotten(&bob).await.unwrap(), None);
    common::drop_schema(second).await;
    common::drop_schema(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_stored_only_wrapped_by_the_master_key() {
    let store = common::fresh_store().await;
    let keys = PgKeyStore::new(&store, master());
    let ada = subject();
    let (id, key) = keys.key_for(&ada).await.unwrap().unwrap();

    let (stored_id, wrapped): (Uuid, Vec<u8>) = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT key_id, wrapped FROM \"{}\".subject_keys WHERE subject = $1",
        store.schema()
    )))
    .bind(ada.as_str())
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(KeyId::from(stored_id), id);
    assert_ne!(wrapped.as_slice(), key.expose().as_slice());
    assert!(
        !wrapped.windows(32).any(|w| w == key.expose().as_slice()),
        "the key's bytes are nowhere in what is stored"
    );

    let wrong = PgKeyStore::new(&store, other_master());
    match wrong.key_for(&ada).await {
        Err(KeyError::Unwrap { key }) => assert_eq!(key, id),
        other => panic!("expected an unwrap failure, got {other:?}"),
    }
    match wrong.key(id).await {
        Err(KeyError::Unwrap { key }) => assert_eq!(key, id),
        other => panic!("expected an unwrap failure, got {other:?}"),
    }
    // The right master key still reads it: the failure changed nothing.
    assert_eq!(keys.key(id).await.unwrap(), Some(key));
    common::drop_schema(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgetting_deletes_the_key_and_records_who_and_when() {
    let store = common::fresh_store().await;
    let (second, _) = another_process(&store).await;
    let keys = PgKeyStore::new(&store, master());
    let elsewhere = PgKeyStore::new(&second, master());
    let ada = subject();
    let (id, _) = keys.key_for(&ada).await.unwrap().unwrap();
    let before = chrono::Utc::now() - chrono::Duration::seconds(5);

    let forgetting = keys.forget(&ada, "ticket 1").await.unwrap();
    assert_eq!(forgetting.subject, ada);
    assert_eq!(forgetting.by, "ticket 1");
    assert!(forgetting.at > before && forgetting.at <= chrono::Utc::now());
    assert_eq!(key_rows(&store, &ada).await, 0, "the key row is gone");
    let (by, at): (String, chrono::DateTime<chrono::Utc>) = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT forgotten_by, forgotten_at FROM \"{}\".forgotten_subjects WHERE subject = $1",
        store.schema()
    )))
    .bind(ada.as_str())
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!((by.as_str(), at), ("ticket 1", forgetting.at));
    assert_eq!(
        keys.forgotten(&ada).await.unwrap(),
        Some(forgetting.clone())
    );

    let repeat = elsewhere.forget(&ada, "ticket 2").await.unwrap();
    assert_eq!(repeat, forgetting, "a repeat returns the first record");
    assert_eq!(elsewhere.forgotten(&ada).await.unwrap(), Some(forgetting));
    assert!(keys.key_for(&ada).await.unwrap().is_none());
    assert!(elsewhere.key_for(&ada).await.unwrap().is_none());
    assert_eq!(keys.key(id).await.unwrap(), None);
    assert_eq!(key_rows(&store, &ada).await, 0, "no key made again");

    // A subject never seen is forgotten all the same, and gets no key afterwards.
    let stranger = subject();
    let record = keys.forget(&stranger, "ticket 3").await.unwrap();
    assert_eq!(record.by, "ticket 3");
    assert!(keys.key_for(&stranger).await.unwrap().is_none());
    assert_eq!(key_rows(&store, &stranger).await, 0);
    common::drop_schema(second).await;
    common::drop_schema(store).await;
}

/// Concurrent first uses, from two processes, end with one key, which every one of them
/// gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_uses_make_one_key() {
    let store = common::fresh_store().await;
    let (second, _) = another_process(&store).await;
    let here = PgKeyStore::new(&store, master());
    let there = PgKeyStore::new(&second, master());
    for _ in 0..10 {
        let ada = subject();
        let mut tasks = Vec::new();
        for i in 0..8 {
            let keys = if i % 2 == 0 {
                here.clone()
            } else {
                there.clone()
            };
            let ada = ada.clone();
            tasks.push(tokio::spawn(async move { keys.key_for(&ada).await }));
        }
        let mut got = Vec::new();
        for task in tasks {
            got.push(task.await.unwrap().unwrap().expect("not forgotten"));
        }
        assert!(
            got.windows(2).all(|w| w[0] == w[1]),
            "every first use gets the one key"
        );
        assert_eq!(key_rows(&store, &ada).await, 1);
    }
    common::drop_schema(second).await;
    common::drop_schema(store).await;
}

/// A key stored by a transaction still open when the subject is forgotten: the forgetting
/// waits for it, then deletes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_stored_while_the_subject_is_forgotten_does_not_survive() {
    let store = common::fresh_store().await;
    let (second, name) = another_process(&store).await;
    let forgetter = PgKeyStore::new(&second, master());
    let ada = subject();

    let mut storing = store.pool().acquire().await.unwrap();
    sqlx::raw_sql("BEGIN").execute(&mut *storing).await.unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO \"{}\".subject_keys (subject, key_id, wrapped) VALUES ($1, $2, '\\x01')",
        store.schema()
    )))
    .bind(ada.as_str())
    .bind(Uuid::now_v7())
    .execute(&mut *storing)
    .await
    .unwrap();
    let forgetting = tokio::spawn({
        let ada = ada.clone();
        async move { forgetter.forget(&ada, "ticket 1").await }
    });
    until_waiting_for_the_lock(&store, &name).await;
    assert!(!forgetting.is_finished());
    sqlx::raw_sql("COMMIT")
        .execute(&mut *storing)
        .await
        .unwrap();
    forgetting.await.unwrap().unwrap();

    assert_eq!(
        key_rows(&store, &ada).await,
        0,
        "the key committed first is gone"
    );
    let keys = PgKeyStore::new(&store, master());
    assert!(keys.key_for(&ada).await.unwrap().is_none());
    common::drop_schema(second).await;
    common::drop_schema(store).await;
}

/// A first use while the subject's forgetting is still open: the insert waits for it, then
/// stores nothing, and the first use gets no key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_use_while_the_subject_is_forgotten_gets_no_key() {
    let store = common::fresh_store().await;
    let (second, name) = another_process(&store).await;
    let user = PgKeyStore::new(&second, master());
    let ada = subject();

    let mut forgetting = store.pool().acquire().await.unwrap();
    sqlx::raw_sql("BEGIN")
        .execute(&mut *forgetting)
        .await
        .unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "SELECT * FROM \"{}\".es_forget_subject($1, 'ticket 1')",
        store.schema()
    )))
    .bind(ada.as_str())
    .execute(&mut *forgetting)
    .await
    .unwrap();
    let first_use = tokio::spawn({
        let ada = ada.clone();
        async move { user.key_for(&ada).await }
    });
    until_waiting_for_the_lock(&store, &name).await;
    assert!(!first_use.is_finished());
    sqlx::raw_sql("COMMIT")
        .execute(&mut *forgetting)
        .await
        .unwrap();
    assert!(
        first_use.await.unwrap().unwrap().is_none(),
        "no key once the forgetting committed"
    );
    assert_eq!(key_rows(&store, &ada).await, 0);
    common::drop_schema(second).await;
    common::drop_schema(store).await;
}

/// First uses and forgettings racing, from two processes: whichever wins, no key is left
/// of a forgotten subject, and a key handed out before is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_first_uses_and_forgettings_leave_no_key() {
    let store = common::fresh_store().await;
    let (second, _) = another_process(&store).await;
    let here = PgKeyStore::new(&store, master());
    let there = PgKeyStore::new(&second, master());
    for round in 0..40 {
        let ada = subject();
        let use_it = tokio::spawn({
            let (keys, ada) = (there.clone(), ada.clone());
            async move {
                if round % 2 == 0 {
                    tokio::task::yield_now().await;
                }
                keys.key_for(&ada).await
            }
        });
        let forget = tokio::spawn({
            let (keys, ada) = (here.clone(), ada.clone());
            async move { keys.forget(&ada, "race").await }
        });
        let used = use_it.await.unwrap().unwrap();
        forget.await.unwrap().unwrap();
        assert_eq!(key_rows(&store, &ada).await, 0, "round {round}");
        assert!(there.key_for(&ada).await.unwrap().is_none());
        if let Some((id, _)) = used {
            assert_eq!(here.key(id).await.unwrap(), None, "round {round}");
        }
    }
    common::drop_schema(second).await;
    common::drop_schema(store).await;
}

/// On sessions that default to REPEATABLE READ, where a statement reads on a snapshot from
/// before the subject's lock, the key store still works: it opens its transactions at READ
/// COMMITTED. Storing a key by hand at that level is refused, as unsafe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_at_repeatable_read_still_forget_for_good() {
    let store = common::fresh_store().await;
    let options = (*store.pool().connect_options())
        .clone()
        .options([("default_transaction_isolation", "repeatable read")]);
    let pool = common::connect_with(options, 4).await;
    let repeatable = PgEventStore::builder(pool)
        .schema(store.schema().as_str())
        .unwrap()
        .build();
    let keys = PgKeyStore::new(&repeatable, master());
    let ada = subject();
    let (id, key) = keys.key_for(&ada).await.unwrap().unwrap();
    assert_eq!(keys.key(id).await.unwrap(), Some(key));
    keys.forget(&ada, "ticket 1").await.unwrap();
    assert!(keys.key_for(&ada).await.unwrap().is_none());

    let by_hand = sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO \"{}\".subject_keys (subject, key_id, wrapped) VALUES ('x', $1, '\\x01')",
        store.schema()
    )))
    .bind(Uuid::now_v7())
    .execute(repeatable.pool())
    .await;
    match by_hand {
        Err(sqlx::Error::Database(error)) => {
            assert_eq!(error.code().as_deref(), Some("ESRC1"), "{error}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    common::drop_schema(repeatable).await;
    common::drop_schema(store).await;
}

/// The application role uses the key store and forgets, and `verify` checks it may; it
/// cannot replace or delete a key, nor write or erase a record of forgetting, but through
/// `es_forget_subject`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_role_keeps_keys_and_forgets_but_cannot_replace_them() {
    let owner = common::fresh_store().await;
    let role = Role::create(&owner).await;
    owner.grant_application_role(&role.name).await.unwrap();
    let app = role.store(&owner);
    app.verify()
        .await
        .expect("verify passes for the granted role");
    let keys = PgKeyStore::new(&app, master());
    let ada = subject();
    let (id, key) = keys.key_for(&ada).await.unwrap().unwrap();
    assert_eq!(keys.key(id).await.unwrap(), Some(key));
    let bob = subject();
    keys.key_for(&bob).await.unwrap().unwrap();
    let forgetting = keys.forget(&ada, "ticket 1").await.unwrap();
    assert_eq!(keys.forgotten(&ada).await.unwrap(), Some(forgetting));
    assert!(keys.key_for(&ada).await.unwrap().is_none());

    let s = format!("\"{}\"", owner.schema());
    let bobs = bob.as_str();
    for (what, sql) in [
        (
            "replacing a key",
            format!("UPDATE {s}.subject_keys SET wrapped = '\\x00' WHERE subject = '{bobs}'"),
        ),
        (
            "deleting a key",
            format!("DELETE FROM {s}.subject_keys WHERE subject = '{bobs}'"),
        ),
        (
            "a backdated key",
            format!(
                "INSERT INTO {s}.subject_keys (subject, key_id, wrapped, created_at) \
                 VALUES ('carol', gen_random_uuid(), '\\x01', '2001-01-01T00:00:00Z')"
            ),
        ),
        (
            "recording a forgetting by hand",
            format!(
                "INSERT INTO {s}.forgotten_subjects (subject, forgotten_by) VALUES ('x', 'me')"
            ),
        ),
        (
            "erasing a record",
            format!("DELETE FROM {s}.forgotten_subjects"),
        ),
        (
            "rewriting a record",
            format!("UPDATE {s}.forgotten_subjects SET forgotten_by = 'someone else'"),
        ),
    ] {
        match sqlx::raw_sql(AssertSqlSafe(sql)).execute(app.pool()).await {
            Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("42501") => {}
            other => panic!("{what}: expected a refusal for lack of privilege, got {other:?}"),
        }
    }
    assert_eq!(key_rows(&owner, &bob).await, 1, "bob's key untouched");

    // Without the grants, `verify` names them.
    sqlx::raw_sql(AssertSqlSafe(format!(
        "REVOKE SELECT ON {s}.subject_keys FROM \"{0}\"; \
         REVOKE EXECUTE ON FUNCTION {s}.es_forget_subject(text, text) FROM \"{0}\"",
        role.name
    )))
    .execute(owner.pool())
    .await
    .unwrap();
    match app.verify().await {
        Err(PgStoreError::MissingPrivileges { missing, .. }) => {
            assert!(
                missing
                    .iter()
                    .any(|m| m.starts_with("SELECT on") && m.ends_with(".subject_keys")),
                "{missing:?}"
            );
            assert!(
                missing.iter().any(|m| m.contains("es_forget_subject")),
                "{missing:?}"
            );
        }
        other => panic!("expected missing privileges, got {other:?}"),
    }
    role.drop_with(owner).await;
}

/// A role granted before migration 0010 made the key store gets its grants from the
/// migration: it runs the key store after the upgrade, and `verify` passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_granted_before_the_key_store_uses_it_after_the_upgrade() {
    let owner = common::fresh_store().await;
    // Put the schema back as migration 0009 left it, grants function included.
    let schema = owner.schema().as_str();
    let old = include_str!("../migrations/0009_cheaper_checks.sql");
    let grant = &old[old
        .find("CREATE OR REPLACE FUNCTION {schema}.es_grant_application")
        .expect("0009 replaces the grants")..];
    let grant = grant
        .replace("{schema_name}", schema)
        .replace("{schema}", &format!("\"{schema}\""));
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP TABLE \"{schema}\".subject_keys, \"{schema}\".forgotten_subjects, \
             \"{schema}\".forgotten_keys; \
         DROP FUNCTION \"{schema}\".es_forget_subject(text, text), \
             \"{schema}\".es_subject_key_guard(); \
         DELETE FROM \"{schema}\".es_migrations WHERE version >= 10; {grant}"
    )))
    .execute(owner.pool())
    .await
    .unwrap();
    let role = Role::create(&owner).await;
    owner.grant_application_role(&role.name).await.unwrap();
    let app = role.store(&owner);
    assert!(
        matches!(app.verify().await, Err(PgStoreError::SchemaBehind { .. })),
        "the schema is behind before the upgrade"
    );

    owner.migrate().await.unwrap();
    app.verify()
        .await
        .expect("the migration granted the key store");
    let keys = PgKeyStore::new(&app, master());
    let ada = subject();
    keys.key_for(&ada).await.unwrap().unwrap();
    keys.forget(&ada, "ticket 1").await.unwrap();
    assert!(keys.key_for(&ada).await.unwrap().is_none());
    role.drop_with(owner).await;
}

/// Every call is bounded by the store's reply deadline: with the subject's lock held by an
/// open forgetting, a first use and a second forgetting fail in time, transient, as
/// backend errors carrying the sqlx error; once the forgetting commits, it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_held_up_by_the_subjects_lock_fail_within_the_reply_deadline() {
    let store = common::fresh_store().await;
    let hurried = common::second_store(&store, "es-test-keys-deadline", |b| {
        b.reply_timeout(Some(Duration::from_millis(300)))
    })
    .await;
    let keys = PgKeyStore::new(&hurried, master());
    let ada = subject();

    let mut forgetting = store.pool().acquire().await.unwrap();
    sqlx::raw_sql("BEGIN")
        .execute(&mut *forgetting)
        .await
        .unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "SELECT * FROM \"{}\".es_forget_subject($1, 'ticket 1')",
        store.schema()
    )))
    .bind(ada.as_str())
    .execute(&mut *forgetting)
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let first_use = keys.key_for(&ada).await;
    let again = keys.forget(&ada, "ticket 2").await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    for outcome in [first_use.map(|_| ()), again.map(|_| ())] {
        match outcome {
            Err(KeyError::Backend { source }) => {
                let sqlx = source
                    .downcast_ref::<sqlx::Error>()
                    .expect("the source is the sqlx error");
                assert!(es_postgres::is_transient(sqlx), "{sqlx}");
            }
            other => panic!("expected a backend error, got {other:?}"),
        }
    }
    sqlx::raw_sql("COMMIT")
        .execute(&mut *forgetting)
        .await
        .unwrap();
    let record = keys.forgotten(&ada).await.unwrap().expect("forgotten");
    assert_eq!(record.by, "ticket 1");
    assert!(keys.key_for(&ada).await.unwrap().is_none());
    drop(forgetting);
    common::drop_schema(hurried).await;
    common::drop_schema(store).await;
}

/// A sealed field as `es_core::personal` stores it, naming key `id` (its nonce and data
/// are placeholders: these tests look only at which key a field names).
fn sealed_under(id: KeyId) -> serde_json::Value {
    serde_json::json!({
        "es:personal": 1,
        "key": id.to_string(),
        "nonce": "AAAAAAAAAAAAAAAA",
        "data": "AAAAAAAAAAAAAAAAAAAAAA==",
    })
}

/// Keys destroyed before migration 11, which began recording them, still read as forgotten
/// after it (it records those the events name that the key table no longer holds, which
/// before it read as forgotten), while a key named only later, never held, is unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_destroyed_before_they_were_recorded_still_read_as_forgotten() {
    use es_core::{EventStore as _, ExpectedVersion, NewEvent, RawEvent, StreamId};

    let store = common::fresh_store().await;
    let keys = PgKeyStore::new(&store, master());
    let (ada, bob) = (subject(), subject());
    let (gone, _) = keys.key_for(&ada).await.unwrap().unwrap();
    let (kept, _) = keys.key_for(&bob).await.unwrap().unwrap();
    keys.forget(&ada, "ticket 1").await.unwrap();
    let never = KeyId::new();
    let stream = StreamId::new("customer", &Uuid::now_v7().simple().to_string()).unwrap();
    let events = [gone, kept]
        .into_iter()
        .map(|id| {
            NewEvent::new(RawEvent::new(
                "Registered",
                1,
                serde_json::json!({ "name": sealed_under(id), "tier": 1 }),
            ))
        })
        .collect();
    store
        .append(&stream, ExpectedVersion::NoStream, events)
        .await
        .unwrap();
    // The schema as 0010 left it: no record of destroyed keys.
    let schema = store.schema().as_str();
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP TABLE \"{schema}\".forgotten_keys; \
         DELETE FROM \"{schema}\".es_migrations WHERE version = 11"
    )))
    .execute(store.pool())
    .await
    .unwrap();

    store.migrate().await.unwrap();
    let later = NewEvent::new(RawEvent::new(
        "Registered",
        1,
        serde_json::json!({ "name": sealed_under(never), "tier": 1 }),
    ));
    store
        .append(&stream, ExpectedVersion::Any, vec![later])
        .await
        .unwrap();
    assert_eq!(keys.key(gone).await.unwrap(), None, "destroyed before 11");
    assert!(keys.key(kept).await.unwrap().is_some(), "still held");
    assert!(
        matches!(keys.key(never).await, Err(KeyError::UnknownKey { key }) if key == never),
        "a key never held stays unknown"
    );
    // And a forgetting after the migration records its key itself.
    keys.forget(&bob, "ticket 2").await.unwrap();
    assert_eq!(keys.key(kept).await.unwrap(), None);
    common::drop_schema(store).await;
}

/// A key row put back by hand for a forgotten subject reads as gone by id as by subject.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_put_back_for_a_forgotten_subject_reads_as_gone() {
    let store = common::fresh_store().await;
    let keys = PgKeyStore::new(&store, master());
    let ada = subject();
    let (id, _) = keys.key_for(&ada).await.unwrap().unwrap();
    let schema = store.schema().as_str();
    let wrapped: Vec<u8> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT wrapped FROM \"{schema}\".subject_keys WHERE key_id = $1"
    )))
    .bind(id.as_uuid())
    .fetch_one(store.pool())
    .await
    .unwrap();
    keys.forget(&ada, "ticket 1").await.unwrap();
    // Past the trigger, as an owner restoring a backup of the table might.
    sqlx::raw_sql(AssertSqlSafe(format!(
        "ALTER TABLE \"{schema}\".subject_keys DISABLE TRIGGER subject_keys_not_forgotten"
    )))
    .execute(store.pool())
    .await
    .unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO \"{schema}\".subject_keys (subject, key_id, wrapped) VALUES ($1, $2, $3)"
    )))
    .bind(ada.as_str())
    .bind(id.as_uuid())
    .bind(wrapped)
    .execute(store.pool())
    .await
    .unwrap();
    assert_eq!(keys.key(id).await.unwrap(), None);
    assert_eq!(keys.key_for(&ada).await.unwrap(), None);
    common::drop_schema(store).await;
}
