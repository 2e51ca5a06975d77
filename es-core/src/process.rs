//! Process managers: business flows that react to events by issuing commands.
//!
//! A [`ProcessManager`] decides which commands an event calls for;
//! [`ProcessManagerProjection`] turns it into a [`Projection`] that executes those commands
//! through a [`Repository`], so that a [`ProjectionRunner`](crate::ProjectionRunner) runs it
//! from a checkpoint, with its error policy, leases and status. Each command's id is
//! derived from the event that caused it ([`CommandContext::reacting_to`]), so handling the
//! same event twice (after a crash, a rebuild) issues each command once, and its events
//! carry the event's correlation id and the event as their causation.
//!
//! What makes a repeat harmless is the events the first execution stored. A command that
//! was rejected, or that changed nothing, stores none: handled again (by a rebuild, say),
//! it is decided again, on the aggregate as it is by then, and may now go through.

use std::fmt;
use std::future::Future;

use tracing::Instrument as _;

use crate::aggregate::{Aggregate, AggregateType};
use crate::command::CommandContext;
use crate::error::{BoxError, CommandError, ReadError};
use crate::event::{DomainEvent, EventEnvelope};
use crate::projection::Projection;
use crate::reads::Reads;
use crate::repository::Repository;
use crate::store::{EventFilter, EventStore, SnapshotStore};

/// A command for the aggregate with id `target`.
pub type CommandFor<A> = (String, <A as AggregateType>::Command);

/// Reacts to events of one kind by issuing commands to aggregates of one type.
///
/// ```
/// use es_core::{Aggregate, DomainEvent, EventEnvelope, ProcessManager, Reads};
/// # #[derive(Debug, Clone, PartialEq, DomainEvent)]
/// # enum OrderEvent { Placed { customer: String } }
/// # #[derive(Debug, Clone, PartialEq, DomainEvent)]
/// # enum CustomerEvent { Welcomed }
/// # #[derive(Debug, Clone, PartialEq)]
/// # enum CustomerCommand { Welcome }
/// # #[derive(Debug, thiserror::Error)] #[error("never")] struct Never;
/// # #[derive(Debug, Default, es_core::AggregateType)]
/// # #[aggregate(name = "customer", command = CustomerCommand, event = CustomerEvent, error = Never)]
/// # struct Customer { welcomed: bool }
/// # impl Aggregate for Customer {
/// #     async fn handle(&self, _: CustomerCommand, _: &()) -> Result<Vec<CustomerEvent>, Never> { Ok(vec![CustomerEvent::Welcomed]) }
/// #     fn apply(&mut self, _: &CustomerEvent) { self.welcomed = true; }
/// # }
///
/// /// Welcomes every customer on their first order.
/// struct Welcome;
///
/// impl ProcessManager for Welcome {
///     type Event = OrderEvent;
///     type Target = Customer;
///     type Error = std::convert::Infallible;
///
///     fn name(&self) -> &str {
///         "welcome"
///     }
///
///     async fn react(&self, envelope: &EventEnvelope<OrderEvent>, _: &Reads<'_>) -> Result<Vec<(String, CustomerCommand)>, Self::Error> {
///         let OrderEvent::Placed { customer } = &envelope.event;
///         Ok(vec![(customer.clone(), CustomerCommand::Welcome)])
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
/// use es_core::{EventStore, ExpectedVersion, NewEvent, ProcessManagerProjection, ProjectionRunner, Repository, StreamId};
///
/// let store = es_memory::MemoryEventStore::new();
/// let order = StreamId::new("order", "1")?;
/// store.append(&order, ExpectedVersion::NoStream, vec![NewEvent::new(OrderEvent::Placed { customer: "ada".into() })]).await?;
///
/// let customers = Repository::<Customer, _>::new(store.clone());
/// let flow = ProcessManagerProjection::new(Welcome, customers.clone());
/// ProjectionRunner::new(store, flow).catch_up().await?;
/// assert!(customers.load("ada").await?.state.welcomed);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait ProcessManager: Send + Sync {
    /// The events it reacts to.
    type Event: DomainEvent;

    /// The aggregate its commands go to.
    type Target: Aggregate;

    /// Why it cannot decide how to react.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Its stable name: the checkpoint key, and part of every command id it derives.
    fn name(&self) -> &str;

    /// The events it reads (by default the event types `Self::Event` decodes).
    fn filter(&self) -> EventFilter {
        EventFilter::for_event::<Self::Event>()
    }

    /// Whether a rejection of one of its commands is an acceptable outcome (the flow's step
    /// is moot, say a survey for an application deleted since): the reaction then counts
    /// as done. By default every rejection fails the reaction, which the runner's error
    /// policy then handles.
    fn tolerates(&self, rejection: &<Self::Target as AggregateType>::Error) -> bool {
        let _ = rejection;
        false
    }

    /// Whether a command on an aggregate whose stream is archived
    /// ([`CommandError::Archived`](crate::CommandError::Archived)) counts as done: the
    /// aggregate's life is over, and with it the flow's business there. By default it
    /// fails the reaction, like any other error.
    fn tolerates_archived(&self) -> bool {
        false
    }

    /// The commands `envelope` calls for, each with the id of the aggregate it goes to
    /// (often none).
    ///
    /// A reaction that depends on state reads it through `reads`: aggregates as they were
    /// when the event was recorded, so that handling the event again calls for the same
    /// commands ([`Reads`]). Loading the latest state from a repository instead would make
    /// the reaction depend on when it runs.
    fn react(
        &self,
        envelope: &EventEnvelope<Self::Event>,
        reads: &Reads<'_>,
    ) -> impl Future<Output = Result<Vec<CommandFor<Self::Target>>, Self::Error>> + Send;
}

/// Why a process manager's reaction to an event failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// The manager could not decide how to react.
    #[error("process manager `{manager}` could not react")]
    React {
        /// The manager.
        manager: String,
        /// Its error.
        #[source]
        source: BoxError,
    },
    /// A command it issued failed (it was rejected, or the store failed).
    #[error("command {index} of process manager `{manager}` for `{target}` failed")]
    Command {
        /// The manager.
        manager: String,
        /// The aggregate id the command went to.
        target: String,
        /// Which of the event's commands it was.
        index: usize,
        /// The failure.
        #[source]
        source: BoxError,
    },
}

/// A [`ProcessManager`] run as a [`Projection`]: each event's commands are executed
/// through a repository, idempotently.
///
/// A command the target aggregate rejects is a failure of the reaction, handled by the
/// runner's [`ErrorPolicy`](crate::ErrorPolicy) (retry, stop or park): a flow never skips a
/// step silently.
pub struct ProcessManagerProjection<M: ProcessManager, S> {
    manager: M,
    repository: Repository<M::Target, S>,
}

impl<M: ProcessManager + fmt::Debug, S: fmt::Debug> fmt::Debug for ProcessManagerProjection<M, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessManagerProjection")
            .field("manager", &self.manager)
            .field("repository", &self.repository)
            .finish()
    }
}

impl<M, S> ProcessManagerProjection<M, S>
where
    M: ProcessManager,
    S: EventStore + SnapshotStore,
{
    /// Runs `manager`'s commands through `repository`.
    pub fn new(manager: M, repository: Repository<M::Target, S>) -> Self {
        Self {
            manager,
            repository,
        }
    }

    /// The manager.
    pub fn manager(&self) -> &M {
        &self.manager
    }
}

impl<M, S> Projection for ProcessManagerProjection<M, S>
where
    M: ProcessManager,
    S: EventStore + SnapshotStore,
{
    type Event = M::Event;
    type Error = ProcessError;

    fn name(&self) -> &str {
        self.manager.name()
    }

    fn filter(&self) -> EventFilter {
        self.manager.filter()
    }

    /// A command that failed because its store failed for a moment (and stayed so through
    /// the repository's retries), or a reaction whose [`Reads`] did, is no fault of the
    /// event.
    fn is_transient(&self, error: &ProcessError) -> bool {
        let (ProcessError::Command { source, .. } | ProcessError::React { source, .. }) = error;
        transient_within(&**source)
    }

    async fn handle(&mut self, envelope: &EventEnvelope<M::Event>) -> Result<(), ProcessError> {
        let name = self.manager.name();
        // Under the runner's span of the event, which continues the event's trace: the
        // commands' spans are its children, and their events carry it onward.
        let span = tracing::span!(
            crate::telemetry::PER_EVENT_LEVEL,
            crate::telemetry::REACTION_SPAN,
            manager = name,
            commands = tracing::field::Empty
        );
        let reads = Reads::new(self.repository.store(), envelope.position);
        let orders = self
            .manager
            .react(envelope, &reads)
            .instrument(span.clone())
            .await
            .map_err(|e| ProcessError::React {
                manager: name.to_owned(),
                source: Box::new(e),
            })?;
        span.record("commands", orders.len());
        for (index, (target, command)) in orders.into_iter().enumerate() {
            let context = CommandContext::reacting_to(envelope, name, index);
            match self
                .repository
                .execute_with(&target, command, context)
                .instrument(span.clone())
                .await
            {
                Ok(_) => {}
                Err(error) if error.rejection().is_some_and(|r| self.manager.tolerates(r)) => {
                    tracing::debug!(manager = name, %target, %error, "rejection tolerated");
                }
                Err(CommandError::Archived { .. }) if self.manager.tolerates_archived() => {
                    tracing::debug!(manager = name, %target, "archived target tolerated");
                }
                Err(error) => {
                    return Err(ProcessError::Command {
                        manager: name.to_owned(),
                        target,
                        index,
                        source: boxed(error),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Whether a store failure that may pass is behind `error`: a [`StoreError`](crate::StoreError) in its chain,
/// or a [`ReadError`] (which shows its store error transparently, so that the chain skips
/// it).
fn transient_within(error: &(dyn std::error::Error + 'static)) -> bool {
    if let Some(store) = crate::error::store_failure_within(error) {
        return store.is_transient();
    }
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(read) = error.downcast_ref::<ReadError>() {
            return read.is_transient();
        }
        current = error.source();
    }
    false
}

fn boxed<E: std::error::Error + Send + Sync + 'static>(error: CommandError<E>) -> BoxError {
    Box::new(error)
}
