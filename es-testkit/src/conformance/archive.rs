//! Stream lifecycle: an archived stream takes no more events and leaves the log, but keeps
//! its history.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use es_core::{
    Aggregate, AppendError, CommandContext, CommandError, EventFilter, ExpectedVersion, LoadError,
    NewEvent, Position, Repository, StreamId,
};
use futures_util::TryStreamExt as _;
use uuid::Uuid;

use super::subscription::{assert_quiet, take};
use super::{account, deposits, read_log, read_stream, versions};
use crate::fixture::{Account, AccountCommand, AccountEvent};
use es_core::Store;

/// Archiving refuses every later append, whatever its expected version, but the stream's
/// events stay readable; archiving twice is harmless and other streams are untouched.
pub async fn archived_stream_refuses_appends_and_keeps_its_history<S: Store>(store: S) {
    let stream = account("old");
    let other = account("current");
    let written = store
        .append(&stream, ExpectedVersion::NoStream, deposits(3))
        .await
        .unwrap();
    assert!(!store.is_archived(&stream).await.unwrap());

    store.archive_stream(&stream).await.unwrap();
    assert!(store.is_archived(&stream).await.unwrap());
    assert!(!store.is_archived(&other).await.unwrap());
    store.archive_stream(&stream).await.unwrap();
    assert!(store.is_archived(&stream).await.unwrap(), "still archived");

    for expected in [
        ExpectedVersion::Exact(written.version),
        ExpectedVersion::Any,
        ExpectedVersion::NoStream,
    ] {
        for batch in [deposits(1), deposits(3), Vec::new()] {
            let size = batch.len();
            match store.append(&stream, expected, batch).await {
                Err(AppendError::Archived { stream: named }) => assert_eq!(named, stream),
                other => panic!(
                    "appending {size} events with {expected:?} to an archived stream: {other:?}"
                ),
            }
        }
    }
    assert_eq!(
        store.stream_version(&stream).await.unwrap(),
        written.version
    );
    assert_eq!(read_stream(&store, &stream).await, written.events);

    // An append that was stored before the archive is still recognised as a repeat.
    let repeat: Vec<_> = written
        .events
        .iter()
        .map(|e| es_core::NewEvent::new(e.event.clone()).with_id(e.event_id))
        .collect();
    let again = store
        .append(&stream, ExpectedVersion::NoStream, repeat)
        .await
        .unwrap();
    assert!(again.duplicate);

    store
        .append(&other, ExpectedVersion::NoStream, deposits(1))
        .await
        .unwrap();
    // A stream archived before it has events cannot start either.
    let never = account("never");
    store.archive_stream(&never).await.unwrap();
    assert!(matches!(
        store
            .append(&never, ExpectedVersion::NoStream, deposits(1))
            .await,
        Err(AppendError::Archived { .. })
    ));
    assert_eq!(read_stream(&store, &never).await, Vec::new());
}

/// Reads of the global log, counts and subscriptions leave archived streams out unless the
/// filter asks for them; the events are still there for those that do.
pub async fn archived_stream_leaves_the_log_and_subscriptions<S: Store>(store: S) {
    let archived = account("gone");
    let kept = account("kept");
    let gone = store
        .append(&archived, ExpectedVersion::NoStream, deposits(2))
        .await
        .unwrap();
    let first = store
        .append(&kept, ExpectedVersion::NoStream, deposits(1))
        .await
        .unwrap();
    read_log::<S, AccountEvent>(&store, Position::START, EventFilter::all(), 3).await;
    store.archive_stream(&archived).await.unwrap();

    let everything = EventFilter::all().including_archived();
    let with_archived =
        read_log::<S, AccountEvent>(&store, Position::START, everything.clone(), 3).await;
    assert_eq!(
        with_archived,
        [gone.events.clone(), first.events.clone()].concat()
    );
    let default: Vec<_> = store
        .read_all::<AccountEvent>(Position::START, EventFilter::all())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(default, first.events, "the archived stream is left out");
    let by_category: Vec<_> = store
        .read_all::<AccountEvent>(Position::START, EventFilter::for_aggregate::<Account>())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(by_category, first.events);
    assert_eq!(
        store
            .count_after(Position::START, EventFilter::all())
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .count_after(Position::START, everything.clone())
            .await
            .unwrap(),
        3
    );

    let mut subscription =
        Box::pin(store.subscribe::<AccountEvent>(Position::START, EventFilter::all()));
    let mut auditor = Box::pin(store.subscribe::<AccountEvent>(Position::START, everything));
    assert_eq!(take(&mut subscription, 1).await, first.events);
    assert_eq!(
        take(&mut auditor, 3).await,
        [gone.events, first.events].concat()
    );
    let live = store
        .append(&kept, ExpectedVersion::Exact(first.version), deposits(1))
        .await
        .unwrap();
    assert_eq!(take(&mut subscription, 1).await, live.events);
    assert_eq!(take(&mut auditor, 1).await, live.events);
    assert_quiet(&mut subscription).await;
}

/// The repository refuses to load an archived aggregate or run commands on it, with the
/// typed error, whether the command would be accepted or rejected and whether its state
/// was cached; a command executed before the archive still repeats as a duplicate; the
/// history stays readable.
pub async fn repository_refuses_archived_aggregates<S: Store>(store: S) {
    let repository = Repository::<Account, _>::new(store.clone()).with_cache(16);
    let open = CommandContext::new().with_command_id(Uuid::now_v7());
    let opened = repository
        .execute_with(
            "closed-down",
            AccountCommand::Open {
                owner: "ada".into(),
            },
            open.clone(),
        )
        .await
        .unwrap();
    repository
        .execute("closed-down", AccountCommand::Deposit { amount: 5 })
        .await
        .unwrap();
    let stream = account("closed-down");
    store.archive_stream(&stream).await.unwrap();

    match repository.load("closed-down").await {
        Err(LoadError::Archived { stream: named }) => assert_eq!(named, stream),
        other => panic!("loading an archived aggregate: {other:?}"),
    }
    let uncached = Repository::<Account, _>::new(store.clone());
    for repository in [&repository, &uncached] {
        for command in [
            AccountCommand::Deposit { amount: 1 },
            // Rejected by the aggregate, but the archive is what the caller must hear.
            AccountCommand::Withdraw { amount: 1_000 },
            AccountCommand::Open {
                owner: "bob".into(),
            },
        ] {
            match repository.execute("closed-down", command.clone()).await {
                Err(CommandError::Archived { stream: named }) => assert_eq!(named, stream),
                other => panic!("{command:?} on an archived aggregate: {other:?}"),
            }
        }
    }
    let repeat = repository
        .execute_with(
            "closed-down",
            AccountCommand::Open {
                owner: "ada".into(),
            },
            open,
        )
        .await
        .unwrap();
    assert!(repeat.duplicate);
    assert_eq!(repeat.events, opened.events);

    let history: Vec<_> = repository
        .history("closed-down")
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(versions(&history), [1, 2]);
    let before = repository
        .load_as_of(
            "closed-down",
            es_core::AsOf::Version(es_core::Version::new(2)),
        )
        .await
        .unwrap();
    assert_eq!(before.state.balance, 5);
    let latest = repository
        .load_as_of("closed-down", es_core::AsOf::Latest)
        .await
        .unwrap();
    assert_eq!(
        (latest.version, latest.state.balance),
        (es_core::Version::new(2), 5)
    );
}

/// A gate that archives its own stream when told to, the moment it decides, and always
/// refuses: the archive falls between the command's read of its state and its decision.
#[derive(Debug, Default, es_core::AggregateType)]
#[aggregate(
    name = "gate",
    command = GateCommand,
    event = GateEvent,
    error = GateError,
    services = Arc<ArchiveOnDecide>
)]
struct Gate;

#[derive(Debug, Clone, PartialEq, es_core::DomainEvent)]
enum GateEvent {
    Installed,
}

#[derive(Debug, Clone)]
enum GateCommand {
    Pass,
}

#[derive(Debug, thiserror::Error)]
enum GateError {
    #[error("the gate is shut")]
    Shut,
}

/// What a [`Gate`] runs as it decides, once armed.
struct ArchiveOnDecide {
    armed: AtomicBool,
    archive: Box<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>,
}

impl std::fmt::Debug for ArchiveOnDecide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveOnDecide")
            .field("armed", &self.armed)
            .finish_non_exhaustive()
    }
}

impl Aggregate for Gate {
    async fn handle(
        &self,
        _: GateCommand,
        hook: &Arc<ArchiveOnDecide>,
    ) -> Result<Vec<GateEvent>, GateError> {
        if hook.armed.swap(false, Ordering::SeqCst) {
            (hook.archive)().await;
        }
        Err(GateError::Shut)
    }

    fn apply(&mut self, _: &GateEvent) {}
}

/// A rejection decided on a state read before the stream was archived is the caller's
/// answer: the archive came after the decision's read, as an archive after an append's
/// read comes after that append. A rejection first decided on a cached state is decided
/// again on the caught-up state, whose read saw the archive: that one is `Archived`. So is
/// every later command.
pub async fn an_archive_after_the_read_leaves_the_decision<S: Store>(store: S) {
    let hook = |id: &'static str| {
        let store = store.clone();
        Arc::new(ArchiveOnDecide {
            armed: AtomicBool::new(false),
            archive: Box::new(move || {
                let store = store.clone();
                Box::pin(async move {
                    let stream = StreamId::new("gate", id).unwrap();
                    store.archive_stream(&stream).await.unwrap();
                })
            }),
        })
    };
    for id in ["fresh", "cached"] {
        let stream = StreamId::new("gate", id).unwrap();
        store
            .append(
                &stream,
                ExpectedVersion::NoStream,
                vec![NewEvent::new(GateEvent::Installed)],
            )
            .await
            .unwrap();
        let services = hook(id);
        let repository = Repository::<Gate, _>::with_services(store.clone(), Arc::clone(&services));
        let repository = if id == "cached" {
            let cached = repository.with_cache(8);
            // Its state is cached by a first rejection.
            let first = cached.execute(id, GateCommand::Pass).await;
            assert!(
                matches!(first, Err(CommandError::Rejected { .. })),
                "{first:?}"
            );
            cached
        } else {
            repository
        };
        services.armed.store(true, Ordering::SeqCst);
        let decided = repository.execute(id, GateCommand::Pass).await;
        match (id, decided) {
            (
                "fresh",
                Err(CommandError::Rejected {
                    error: GateError::Shut,
                    ..
                }),
            ) => {}
            ("cached", Err(CommandError::Archived { stream: named })) => assert_eq!(named, stream),
            (id, other) => panic!("{id}: archived while deciding: {other:?}"),
        }
        assert!(store.is_archived(&stream).await.unwrap(), "{id}");
        match repository.execute(id, GateCommand::Pass).await {
            Err(CommandError::Archived { stream: named }) => assert_eq!(named, stream),
            other => panic!("{id}: after the archive: {other:?}"),
        }
    }
}

/// Four writers append to a stream while it is archived. The stream as read right after
/// `archive_stream` returns is final: no append lands after it, not even one that was
/// under way. Every append that succeeded is stored once at consecutive versions, and each
/// writer sees the archive.
pub async fn archive_while_writers_append_refuses_every_later_append<S: Store>(store: S) {
    const WRITERS: usize = 4;
    let stream = account("closing");
    store
        .append(&stream, ExpectedVersion::NoStream, deposits(1))
        .await
        .unwrap();
    // Counts the writers that are under way (three appends stored), so that the archive
    // lands among running writers however slow the machine is.
    let running = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        let stream = stream.clone();
        let running = std::sync::Arc::clone(&running);
        writers.push(tokio::spawn(async move {
            let mut stored = Vec::new();
            let mut appends = 0_u32;
            loop {
                appends += 1;
                assert!(appends < 1_000_000, "writer {writer} never saw the archive");
                // An in-memory append never waits: let the archiving task run.
                tokio::task::yield_now().await;
                let started = tokio::time::Instant::now();
                match store
                    .append(&stream, ExpectedVersion::Any, deposits(1))
                    .await
                {
                    Ok(committed) => {
                        stored.push((started, committed.events[0].event_id));
                        if stored.len() == 3 {
                            running.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                    Err(AppendError::Archived { .. }) => return stored,
                    Err(error) => panic!("writer {writer}: {error:?}"),
                }
            }
        }));
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while running.load(std::sync::atomic::Ordering::SeqCst) < WRITERS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the writers did not get going within a minute"
        );
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    store.archive_stream(&stream).await.unwrap();
    let archived = tokio::time::Instant::now();
    let at_archive = read_stream(&store, &stream).await;

    let mut stored_ids = vec![read_stream(&store, &stream).await[0].event_id];
    for writer in writers {
        let stored = writer.await.expect("writer task");
        assert!(
            stored.iter().all(|(started, _)| *started < archived),
            "an append that started after the archive succeeded"
        );
        assert!(stored.len() >= 3, "the writer ran before the archive");
        stored_ids.extend(stored.into_iter().map(|(_, id)| id));
    }
    let events = read_stream(&store, &stream).await;
    assert_eq!(
        events, at_archive,
        "the stream read when the archive returned is final"
    );
    assert_eq!(
        versions(&events),
        (1..=events.len() as u64).collect::<Vec<_>>()
    );
    let mut read_ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    read_ids.sort();
    stored_ids.sort();
    assert_eq!(read_ids, stored_ids, "every successful append stored once");
}

/// Pays a referral bonus into one fixed account for every account opened.
struct ReferralBonus {
    referrer: &'static str,
    tolerant: bool,
}

impl es_core::ProcessManager for ReferralBonus {
    type Event = AccountEvent;
    type Target = Account;
    type Error = std::convert::Infallible;

    fn name(&self) -> &str {
        "referral-bonus"
    }

    fn filter(&self) -> EventFilter {
        EventFilter::for_aggregate::<Account>().with_event_types(["Opened"])
    }

    fn tolerates_archived(&self) -> bool {
        self.tolerant
    }

    async fn react(
        &self,
        _envelope: &es_core::EventEnvelope<AccountEvent>,
        _: &es_core::Reads<'_>,
    ) -> Result<Vec<(String, AccountCommand)>, Self::Error> {
        Ok(vec![(
            self.referrer.to_owned(),
            AccountCommand::Deposit { amount: 10 },
        )])
    }
}

/// A process manager's command on an archived aggregate fails the reaction, unless the
/// manager tolerates archived targets: then the reaction counts as done.
pub async fn process_manager_commands_on_archived_aggregates<S: Store>(store: S) {
    let accounts = Repository::<Account, _>::new(store.clone());
    for owner in ["referrer", "newcomer"] {
        accounts
            .execute(
                owner,
                AccountCommand::Open {
                    owner: owner.into(),
                },
            )
            .await
            .unwrap();
    }
    store.archive_stream(&account("referrer")).await.unwrap();
    read_log::<S, AccountEvent>(&store, Position::START, EventFilter::all(), 1).await;

    let strict = es_core::ProcessManagerProjection::new(
        ReferralBonus {
            referrer: "referrer",
            tolerant: false,
        },
        accounts.clone(),
    );
    let mut runner = es_core::ProjectionRunner::new(store.clone(), strict)
        .with_lease(None)
        .with_error_policy(es_core::ErrorPolicy::stop());
    match runner.catch_up().await {
        Err(es_core::RunnerError::Handler { event_type, .. }) => assert_eq!(event_type, "Opened"),
        other => panic!("expected the archived target to stop the flow, got {other:?}"),
    }

    let tolerant = es_core::ProcessManagerProjection::new(
        ReferralBonus {
            referrer: "referrer",
            tolerant: true,
        },
        accounts.clone(),
    );
    let mut runner = es_core::ProjectionRunner::new(store.clone(), tolerant)
        .with_lease(None)
        .with_error_policy(es_core::ErrorPolicy::stop());
    assert_eq!(
        runner.catch_up().await.unwrap(),
        1,
        "the newcomer's opening"
    );
    let referrer = accounts
        .load_as_of("referrer", es_core::AsOf::Latest)
        .await
        .unwrap();
    assert_eq!(
        referrer.state.balance, 0,
        "nothing was paid into the archive"
    );
}
