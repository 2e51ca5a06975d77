//! Projections for tests: one that keeps its own checkpoint (exactly once), one that lets
//! the runner keep it (at least once), and a process manager. Each can be told to fail on
//! chosen events or to stall, so that tests can break them on purpose.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use es_core::{
    EventEnvelope, EventFilter, Position, ProcessManager, Projection, StreamId, Version,
};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::fixture::{Account, AccountCommand, AccountEvent};

/// Why a test projection failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    /// It was told to fail on this deposit.
    #[error("told to fail on a deposit of {0}")]
    Told(u64),
    /// Its storage failed for a moment on this deposit
    /// ([`Projection::is_transient`]): the runner starts over.
    #[error("storage lost its connection on a deposit of {0}")]
    Interrupted(u64),
    /// Its checkpoint cannot be read, and will not be on a second try.
    #[error("the stored checkpoint is unreadable")]
    CheckpointUnreadable,
    /// Another instance committed since this one loaded: its batch is a duplicate.
    #[error(
        "the stored checkpoint moved from {expected:?} to {found:?}: another instance committed"
    )]
    Fenced {
        /// What this instance last saw.
        expected: Option<Position>,
        /// What is stored.
        found: Option<Position>,
    },
}

/// What a view has applied, durably.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    /// How many times each event was applied: 1 everywhere means exactly once.
    pub applied: HashMap<Uuid, u32>,
    /// Balance by account id.
    pub balances: BTreeMap<String, i64>,
    /// The (stream, version) of every applied event, in the order applied.
    pub order: Vec<(StreamId, Version)>,
    /// The committed checkpoints by runner key (for views that keep their own): one for
    /// an unpartitioned runner, one per partition otherwise.
    pub checkpoints: BTreeMap<String, Position>,
}

impl Ledger {
    fn apply(&mut self, envelope: &EventEnvelope<AccountEvent>) {
        *self.applied.entry(envelope.event_id).or_default() += 1;
        let balance = self
            .balances
            .entry(envelope.stream_id.id().to_owned())
            .or_default();
        match envelope.event {
            AccountEvent::Deposited { amount } => *balance += amount as i64,
            AccountEvent::Withdrawn { amount } => *balance -= amount as i64,
            AccountEvent::Opened { .. } | AccountEvent::Closed => {}
        }
        self.order
            .push((envelope.stream_id.clone(), envelope.version));
    }

    /// Whether every event in `ids` was applied exactly once, and nothing else.
    pub fn applied_exactly(&self, ids: &HashSet<Uuid>) -> bool {
        self.applied.len() == ids.len() && ids.iter().all(|id| self.applied.get(id) == Some(&1))
    }
}

/// Shared, durable storage for test views: it survives the runner (and the view) that
/// wrote it, as a database would.
#[derive(Debug, Clone, Default)]
pub struct LedgerStorage(Arc<Mutex<Ledger>>);

impl LedgerStorage {
    /// The stored ledger.
    pub fn get(&self) -> Ledger {
        self.lock().clone()
    }

    /// Moves the checkpoint stored under `key`, as another instance committing would.
    pub fn move_checkpoint(&self, key: &str, position: Position) {
        self.lock().checkpoints.insert(key.to_owned(), position);
    }

    // Plain data: a panic while it was locked leaves it readable.
    fn lock(&self) -> MutexGuard<'_, Ledger> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Knobs to break a test view on purpose.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    fail_on: Arc<Mutex<HashSet<u64>>>,
    slow_on: Arc<Mutex<HashMap<u64, std::time::Duration>>>,
    stall_at: Arc<Mutex<Option<usize>>>,
    stalled: Arc<Notify>,
    interrupt_on: Arc<Mutex<HashSet<u64>>>,
    unreadable_checkpoint: Arc<Mutex<bool>>,
}

impl Faults {
    /// No faults.
    pub fn none() -> Self {
        Self::default()
    }

    /// Fail on every deposit of `amount` until [`Faults::heal`].
    pub fn fail_on(&self, amount: u64) {
        self.fail_on
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(amount);
    }

    /// Take `pause` over every deposit of `amount` (a slow call to another service, say).
    pub fn slow_on(&self, amount: u64, pause: std::time::Duration) {
        self.slow_on
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(amount, pause);
    }

    /// Fail once, transiently ([`ViewError::Interrupted`]), on the next deposit of
    /// `amount`.
    pub fn interrupt_once_on(&self, amount: u64) {
        self.interrupt_on
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(amount);
    }

    /// Fail every load of a checkpoint the view keeps, not transiently
    /// ([`ViewError::CheckpointUnreadable`]).
    pub fn make_checkpoint_unreadable(&self) {
        *self
            .unreadable_checkpoint
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
    }

    fn check_load(&self) -> Result<(), ViewError> {
        if *self
            .unreadable_checkpoint
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
        {
            return Err(ViewError::CheckpointUnreadable);
        }
        Ok(())
    }

    /// Stop failing.
    pub fn heal(&self) {
        self.fail_on
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Hang for good when handling the `n`th event (counting from 1) of a view run.
    pub fn stall_at(&self, n: usize) {
        *self.stall_at.lock().unwrap_or_else(PoisonError::into_inner) = Some(n);
    }

    /// Completes once a view has hung.
    pub async fn stalled(&self) {
        self.stalled.notified().await;
    }

    async fn check(&self, seen: usize, event: &AccountEvent) -> Result<(), ViewError> {
        let stall = *self.stall_at.lock().unwrap_or_else(PoisonError::into_inner);
        if stall == Some(seen) {
            self.stalled.notify_one();
            std::future::pending::<()>().await;
        }
        let slow = match event {
            AccountEvent::Deposited { amount } => self
                .slow_on
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(amount)
                .copied(),
            _ => None,
        };
        if let Some(pause) = slow {
            tokio::time::sleep(pause).await;
        }
        if let AccountEvent::Deposited { amount } = event
            && self
                .interrupt_on
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(amount)
        {
            return Err(ViewError::Interrupted(*amount));
        }
        if let AccountEvent::Deposited { amount } = event
            && self
                .fail_on
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(amount)
        {
            return Err(ViewError::Told(*amount));
        }
        Ok(())
    }
}

/// A balance view that keeps its own checkpoint: it stages the events of a batch and, in
/// [`Projection::commit`], applies them and moves its checkpoint in one step, refusing if
/// another instance committed meanwhile. Exactly once, whatever stops it when.
#[derive(Debug)]
pub struct LedgerView {
    name: String,
    storage: LedgerStorage,
    faults: Faults,
    staged: Vec<EventEnvelope<AccountEvent>>,
    loaded: Option<Position>,
    seen: usize,
}

impl LedgerView {
    /// A view named `name` on `storage`.
    pub fn new(name: &str, storage: LedgerStorage, faults: Faults) -> Self {
        Self {
            name: name.to_owned(),
            storage,
            faults,
            staged: Vec::new(),
            loaded: None,
            seen: 0,
        }
    }
}

impl Projection for LedgerView {
    type Event = AccountEvent;
    type Error = ViewError;

    fn name(&self) -> &str {
        &self.name
    }

    fn filter(&self) -> EventFilter {
        EventFilter::for_aggregate::<Account>()
    }

    async fn handle(&mut self, envelope: &EventEnvelope<AccountEvent>) -> Result<(), ViewError> {
        self.seen += 1;
        self.faults.check(self.seen, &envelope.event).await?;
        self.staged.push(envelope.clone());
        Ok(())
    }

    async fn reset(&mut self) -> Result<(), ViewError> {
        *self.storage.lock() = Ledger::default();
        self.staged.clear();
        self.loaded = None;
        Ok(())
    }

    fn is_transient(&self, error: &ViewError) -> bool {
        matches!(error, ViewError::Interrupted(_))
    }

    fn keeps_own_checkpoint(&self) -> bool {
        true
    }

    async fn load_checkpoint(&mut self, key: &str) -> Result<Option<Position>, ViewError> {
        self.faults.check_load()?;
        self.loaded = self.storage.lock().checkpoints.get(key).copied();
        Ok(self.loaded)
    }

    async fn commit(&mut self, key: &str, position: Position) -> Result<(), ViewError> {
        let mut ledger = self.storage.lock();
        let found = ledger.checkpoints.get(key).copied();
        if found != self.loaded {
            drop(ledger);
            self.staged.clear();
            return Err(ViewError::Fenced {
                expected: self.loaded,
                found,
            });
        }
        for envelope in self.staged.drain(..) {
            ledger.apply(&envelope);
        }
        ledger.checkpoints.insert(key.to_owned(), position);
        self.loaded = Some(position);
        Ok(())
    }

    async fn rollback(&mut self) -> Result<(), ViewError> {
        self.staged.clear();
        Ok(())
    }
}

/// A balance view that lets the runner keep its checkpoint: it applies each event at
/// once, so after a crash it sees the events since the last checkpoint again (at least
/// once).
#[derive(Debug)]
pub struct CountingView {
    name: String,
    storage: LedgerStorage,
    faults: Faults,
    seen: usize,
}

impl CountingView {
    /// A view named `name` on `storage`.
    pub fn new(name: &str, storage: LedgerStorage, faults: Faults) -> Self {
        Self {
            name: name.to_owned(),
            storage,
            faults,
            seen: 0,
        }
    }
}

impl Projection for CountingView {
    type Event = AccountEvent;
    type Error = ViewError;

    fn name(&self) -> &str {
        &self.name
    }

    fn filter(&self) -> EventFilter {
        EventFilter::for_aggregate::<Account>()
    }

    async fn handle(&mut self, envelope: &EventEnvelope<AccountEvent>) -> Result<(), ViewError> {
        self.seen += 1;
        self.faults.check(self.seen, &envelope.event).await?;
        self.storage.lock().apply(envelope);
        Ok(())
    }

    fn is_transient(&self, error: &ViewError) -> bool {
        matches!(error, ViewError::Interrupted(_))
    }

    async fn reset(&mut self) -> Result<(), ViewError> {
        *self.storage.lock() = Ledger::default();
        Ok(())
    }
}

/// The welcome bonus a new account gets.
pub const WELCOME_BONUS: u64 = 1_000;

/// Deposits a welcome bonus into every account opened.
#[derive(Debug, Clone, Copy, Default)]
pub struct WelcomeBonus;

impl ProcessManager for WelcomeBonus {
    type Event = AccountEvent;
    type Target = Account;
    type Error = std::convert::Infallible;

    fn name(&self) -> &str {
        "welcome-bonus"
    }

    fn filter(&self) -> EventFilter {
        EventFilter::for_aggregate::<Account>().with_event_types(["Opened"])
    }

    async fn react(
        &self,
        envelope: &EventEnvelope<AccountEvent>,
        _: &es_core::Reads<'_>,
    ) -> Result<Vec<(String, AccountCommand)>, Self::Error> {
        Ok(match envelope.event {
            AccountEvent::Opened { .. } => vec![(
                envelope.stream_id.id().to_owned(),
                AccountCommand::Deposit {
                    amount: WELCOME_BONUS,
                },
            )],
            _ => Vec::new(),
        })
    }
}

/// The account into which [`MatchFirstDeposit`] matches first deposits.
pub const MATCHING_POT: &str = "pot";

/// Matches the first deposit into every account with a deposit of the same amount into
/// [`MATCHING_POT`]. Whether a deposit was the first is read from the account's state as of
/// the deposit ([`es_core::Reads`]), so later deposits do not change the answer, and
/// handling the deposit again (a rebuild) decides the same.
#[derive(Debug, Clone, Copy, Default)]
pub struct MatchFirstDeposit;

impl ProcessManager for MatchFirstDeposit {
    type Event = AccountEvent;
    type Target = Account;
    type Error = es_core::LoadError;

    fn name(&self) -> &str {
        "match-first-deposit"
    }

    fn filter(&self) -> EventFilter {
        EventFilter::for_aggregate::<Account>().with_event_types(["Deposited"])
    }

    async fn react(
        &self,
        envelope: &EventEnvelope<AccountEvent>,
        reads: &es_core::Reads<'_>,
    ) -> Result<Vec<(String, AccountCommand)>, Self::Error> {
        let AccountEvent::Deposited { amount } = envelope.event else {
            return Ok(Vec::new());
        };
        let id = envelope.stream_id.id();
        if id == MATCHING_POT {
            return Ok(Vec::new());
        }
        let account = reads.state::<Account>(id).await?;
        assert_eq!(
            account.version, envelope.version,
            "the state read includes the event itself and nothing after it"
        );
        Ok(if account.state.movements == 1 {
            vec![(MATCHING_POT.to_owned(), AccountCommand::Deposit { amount })]
        } else {
            Vec::new()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use es_core::testing::{ProcessManagerFixture, ProjectionFixture};

    #[test]
    fn match_first_deposit_reads_the_state_it_is_given() {
        let deposit = AccountEvent::Deposited { amount: 7 };
        ProcessManagerFixture::new(MatchFirstDeposit)
            .given_state::<Account>(
                "ada",
                [AccountEvent::Opened {
                    owner: "ada".into(),
                }],
            )
            .given_at("account-ada", 2, deposit.clone())
            .then_expect_commands([(MATCHING_POT, AccountCommand::Deposit { amount: 7 })]);
        ProcessManagerFixture::new(MatchFirstDeposit)
            .given_state::<Account>(
                "ada",
                [
                    AccountEvent::Opened {
                        owner: "ada".into(),
                    },
                    AccountEvent::Deposited { amount: 1 },
                ],
            )
            .given_at("account-ada", 3, deposit)
            .then_expect_no_commands();
    }

    #[test]
    fn welcome_bonus_reacts_to_openings_only() {
        ProcessManagerFixture::new(WelcomeBonus)
            .given(
                "account-ada",
                AccountEvent::Opened {
                    owner: "ada".into(),
                },
            )
            .then_expect_commands([(
                "ada",
                AccountCommand::Deposit {
                    amount: WELCOME_BONUS,
                },
            )]);
        ProcessManagerFixture::new(WelcomeBonus)
            .given("account-ada", AccountEvent::Deposited { amount: 5 })
            .then_expect_no_commands();
    }

    fn recorded(stream: &str, version: u64, position: Position) -> EventEnvelope<AccountEvent> {
        EventEnvelope {
            event_id: Uuid::now_v7(),
            stream_id: StreamId::parse(stream).unwrap(),
            version: Version::new(version),
            position,
            recorded_at: chrono::Utc::now(),
            metadata: es_core::Metadata::new(),
            event: AccountEvent::Opened {
                owner: "ada".into(),
            },
        }
    }

    #[test]
    fn projection_fixture_commits_at_the_position_of_given_envelopes() {
        let storage = LedgerStorage::default();
        let at = Position::from_parts(5, 40);
        ProjectionFixture::new(LedgerView::new("view", storage.clone(), Faults::none()))
            .given_envelopes([recorded("account-ada", 3, at)]);
        assert_eq!(storage.get().checkpoints.get("view"), Some(&at));
    }

    #[test]
    fn projection_fixture_continues_after_given_envelopes() {
        let storage = LedgerStorage::default();
        let at = Position::from_parts(5, 40);
        ProjectionFixture::new(LedgerView::new("view", storage.clone(), Faults::none()))
            .given_envelopes([recorded("account-ada", 3, at)])
            .given("account-ada", [AccountEvent::Deposited { amount: 1 }]);
        let ledger = storage.get();
        let ada = StreamId::parse("account-ada").unwrap();
        assert_eq!(
            ledger.order,
            [(ada.clone(), Version::new(3)), (ada, Version::new(4))]
        );
        assert!(ledger.checkpoints["view"] > at, "{:?}", ledger.checkpoints);
    }

    #[test]
    fn projection_fixture_delivers_only_what_the_filter_selects() {
        let storage = LedgerStorage::default();
        ProjectionFixture::new(LedgerView::new("view", storage.clone(), Faults::none()))
            .given("account-ada", [AccountEvent::Deposited { amount: 1 }])
            .given("invoice-9", [AccountEvent::Deposited { amount: 1 }])
            .given_envelopes([recorded("invoice-9", 2, Position::from_parts(9, 9))]);
        let ledger = storage.get();
        assert_eq!(
            ledger.order,
            [(StreamId::parse("account-ada").unwrap(), Version::new(1))]
        );
        assert_eq!(
            ledger.checkpoints.get("view"),
            Some(&Position::from_parts(1, 1)),
            "nothing delivered, nothing committed"
        );
    }
}

/// Withdraws a fee from every account opened, which the fresh account cannot pay: its
/// command is always rejected. With `tolerant`, the flow accepts that.
#[derive(Debug, Clone, Copy)]
pub struct OpeningFee {
    /// Whether a rejection counts as done.
    pub tolerant: bool,
}

impl ProcessManager for OpeningFee {
    type Event = AccountEvent;
    type Target = Account;
    type Error = std::convert::Infallible;

    fn name(&self) -> &str {
        "opening-fee"
    }

    fn filter(&self) -> EventFilter {
        EventFilter::for_aggregate::<Account>().with_event_types(["Opened"])
    }

    fn tolerates(&self, rejection: &crate::fixture::AccountError) -> bool {
        self.tolerant
            && matches!(
                rejection,
                crate::fixture::AccountError::InsufficientFunds { .. }
            )
    }

    async fn react(
        &self,
        envelope: &EventEnvelope<AccountEvent>,
        _: &es_core::Reads<'_>,
    ) -> Result<Vec<(String, AccountCommand)>, Self::Error> {
        Ok(vec![(
            envelope.stream_id.id().to_owned(),
            AccountCommand::Withdraw { amount: 5 },
        )])
    }
}
