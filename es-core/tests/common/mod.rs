//! What the telemetry tests share: an aggregate whose handler can make its first append
//! lose a race, a projection that counts, and a process manager that answers a deposit
//! with a note on a ledger.

#![allow(
    dead_code,
    reason = "each test binary uses its own part of this module"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use es_core::{
    Aggregate, AggregateType, CommandFor, DomainEvent, EventEnvelope, EventStore as _,
    ExpectedVersion, NewEvent, ProcessManager, Projection, StreamId,
};
use es_memory::MemoryEventStore;

#[derive(Debug, Clone, PartialEq, DomainEvent)]
pub(crate) enum AccountEvent {
    Deposited { amount: u64 },
}

#[derive(Debug, Clone)]
pub(crate) enum AccountCommand {
    Deposit {
        amount: u64,
    },
    /// Decides nothing: the command changes nothing.
    Nothing,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum AccountError {
    #[error("nothing to deposit")]
    Nothing,
}

/// What the account's handler may do first: append to its own stream behind its back, so
/// that the command's first append conflicts.
#[derive(Debug, Default)]
pub(crate) struct Race {
    pub(crate) store: Option<MemoryEventStore>,
    pub(crate) armed: AtomicBool,
    /// Lose every race, not only the first.
    pub(crate) always: AtomicBool,
}

#[derive(Debug, Default, AggregateType)]
#[aggregate(
    name = "account",
    command = AccountCommand,
    event = AccountEvent,
    error = AccountError,
    services = Arc<Race>
)]
pub(crate) struct Account {
    pub(crate) balance: u64,
}

impl Aggregate for Account {
    async fn handle(
        &self,
        command: AccountCommand,
        race: &Arc<Race>,
    ) -> Result<Vec<AccountEvent>, AccountError> {
        let amount = match command {
            AccountCommand::Deposit { amount } => amount,
            AccountCommand::Nothing => return Ok(Vec::new()),
        };
        if amount == 0 {
            return Err(AccountError::Nothing);
        }
        if let Some(store) = &race.store
            && (race.armed.swap(false, Ordering::SeqCst) || race.always.load(Ordering::SeqCst))
        {
            let stream = StreamId::new("account", "1").unwrap();
            store
                .append(
                    &stream,
                    ExpectedVersion::Any,
                    vec![NewEvent::new(AccountEvent::Deposited { amount: 1 })],
                )
                .await
                .unwrap();
        }
        Ok(vec![AccountEvent::Deposited { amount }])
    }

    fn apply(&mut self, event: &AccountEvent) {
        let AccountEvent::Deposited { amount } = event;
        self.balance += amount;
    }
}

/// Counts the deposits it sees and keeps the traceparents they carried.
#[derive(Debug, Default)]
pub(crate) struct Deposits {
    pub(crate) seen: Vec<Option<String>>,
}

impl Projection for Deposits {
    type Event = AccountEvent;
    type Error = std::convert::Infallible;

    fn name(&self) -> &str {
        "deposits"
    }

    async fn handle(&mut self, envelope: &EventEnvelope<AccountEvent>) -> Result<(), Self::Error> {
        self.seen.push(
            envelope
                .metadata
                .traceparent
                .map(|context| context.to_string()),
        );
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, DomainEvent)]
pub(crate) enum LedgerEvent {
    Noted { amount: u64 },
}

#[derive(Debug, Clone)]
pub(crate) enum LedgerCommand {
    Note { amount: u64 },
}

#[derive(Debug, Default, AggregateType)]
#[aggregate(
    name = "ledger",
    command = LedgerCommand,
    event = LedgerEvent,
    error = std::convert::Infallible
)]
pub(crate) struct Ledger;

impl Aggregate for Ledger {
    async fn handle(
        &self,
        command: LedgerCommand,
        _: &(),
    ) -> Result<Vec<LedgerEvent>, std::convert::Infallible> {
        let LedgerCommand::Note { amount } = command;
        Ok(vec![LedgerEvent::Noted { amount }])
    }

    fn apply(&mut self, _: &LedgerEvent) {}
}

/// Notes every deposit on the ledger `main`.
#[derive(Debug)]
pub(crate) struct Bookkeeping;

impl ProcessManager for Bookkeeping {
    type Event = AccountEvent;
    type Target = Ledger;
    type Error = std::convert::Infallible;

    fn name(&self) -> &str {
        "bookkeeping"
    }

    async fn react(
        &self,
        envelope: &EventEnvelope<AccountEvent>,
        _: &es_core::Reads<'_>,
    ) -> Result<Vec<CommandFor<Ledger>>, Self::Error> {
        let AccountEvent::Deposited { amount } = envelope.event;
        Ok(vec![("main".to_owned(), LedgerCommand::Note { amount })])
    }
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
