//! One budget of server connections for the whole test process.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};

/// The environment variable that sets the budget, in connections.
pub const BUDGET_VAR: &str = "ES_TEST_PG_CONNECTIONS";

/// The budget when [`BUDGET_VAR`] is not set: well under PostgreSQL's default
/// `max_connections` of 100, which leaves room for a second test process, `psql` and the
/// server's own reserved connections.
pub const DEFAULT_BUDGET: u32 = 40;

/// How long [`ConnectionBudget::acquire`] waits for other tests to give connections back.
pub const ACQUIRE_DEADLINE: Duration = Duration::from_secs(120);

/// A number of connections shared by every test of a process.
///
/// Each pool a test opens takes its size from the budget first and gives it back when the
/// pool is gone, so that however many tests run at once (`cargo test` runs one per core),
/// together they never hold more connections than the budget. The process-wide budget is
/// [`ConnectionBudget::global`]; tests of the budget itself make their own with
/// [`ConnectionBudget::new`].
///
/// The budget is a [`tokio::sync::Semaphore`], which needs no runtime of its own: each
/// test runs its own runtime, and a permit given back on one wakes a waiter on another.
#[derive(Debug)]
pub struct ConnectionBudget {
    connections: Semaphore,
    total: u32,
}

/// Connections taken from a [`ConnectionBudget`], given back when dropped.
#[derive(Debug)]
#[must_use = "the connections go back to the budget when the permit is dropped"]
pub struct BudgetPermit<'a> {
    permit: SemaphorePermit<'a>,
}

impl BudgetPermit<'_> {
    /// How many connections this permit holds.
    pub fn connections(&self) -> u32 {
        u32::try_from(self.permit.num_permits()).unwrap_or(u32::MAX)
    }
}

/// Why [`ConnectionBudget::acquire`] gave no connections.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BudgetError {
    /// More connections were asked for than the whole budget: waiting would never end.
    #[error(
        "a test asked for {asked} PostgreSQL connections, more than the whole budget of \
         {budget}; use a smaller pool, or raise the budget with {BUDGET_VAR}"
    )]
    OverBudget {
        /// Connections asked for.
        asked: u32,
        /// The whole budget.
        budget: u32,
    },
    /// Other tests held the connections for longer than the deadline.
    #[error(
        "a test waited {waited:?} for {asked} of the {budget} PostgreSQL connections the \
         tests share, and other tests held them all that time (a test that opens a second \
         pool while holding a first can wait on others doing the same); raise the budget \
         with {BUDGET_VAR} or run fewer tests at once (RUST_TEST_THREADS)"
    )]
    TimedOut {
        /// Connections asked for.
        asked: u32,
        /// The whole budget.
        budget: u32,
        /// How long the test waited.
        waited: Duration,
    },
}

impl ConnectionBudget {
    /// A budget of `total` connections.
    pub const fn new(total: u32) -> Self {
        Self {
            connections: Semaphore::const_new(total as usize),
            total,
        }
    }

    /// The budget every test of this process shares: [`BUDGET_VAR`] connections, or
    /// [`DEFAULT_BUDGET`].
    ///
    /// # Panics
    ///
    /// If [`BUDGET_VAR`] is set to something other than a positive number.
    pub fn global() -> &'static Self {
        static GLOBAL: OnceLock<ConnectionBudget> = OnceLock::new();
        GLOBAL.get_or_init(|| {
            let total = match std::env::var(BUDGET_VAR) {
                Ok(value) => value
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|&n| n > 0)
                    .unwrap_or_else(|| {
                        panic!("{BUDGET_VAR}={value:?} is not a positive number of connections")
                    }),
                Err(_) => DEFAULT_BUDGET,
            };
            Self::new(total)
        })
    }

    /// The whole budget, in connections.
    pub fn total(&self) -> u32 {
        self.total
    }

    /// The connections nobody holds now.
    pub fn available(&self) -> u32 {
        u32::try_from(self.connections.available_permits()).unwrap_or(u32::MAX)
    }

    /// Takes `connections` from the budget, waiting up to `deadline` for other tests to
    /// give some back. Waiters are served in turn, so a large request is not starved by
    /// small ones.
    ///
    /// # Errors
    ///
    /// [`BudgetError::OverBudget`] at once when `connections` exceeds the whole budget;
    /// [`BudgetError::TimedOut`] when the deadline passes first.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime with its time driver enabled (as `#[tokio::test]` gives).
    pub async fn acquire(
        &self,
        connections: u32,
        deadline: Duration,
    ) -> Result<BudgetPermit<'_>, BudgetError> {
        if connections > self.total {
            return Err(BudgetError::OverBudget {
                asked: connections,
                budget: self.total,
            });
        }
        match tokio::time::timeout(deadline, self.connections.acquire_many(connections)).await {
            Ok(Ok(permit)) => Ok(BudgetPermit { permit }),
            // The semaphore is never closed.
            Ok(Err(_closed)) => unreachable!("the connection budget is never closed"),
            Err(_elapsed) => Err(BudgetError::TimedOut {
                asked: connections,
                budget: self.total,
                waited: deadline,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn a_request_beyond_what_is_left_waits_until_a_permit_is_dropped() {
        let budget: &'static ConnectionBudget = Box::leak(Box::new(ConnectionBudget::new(10)));
        let first = budget.acquire(7, SHORT).await.unwrap();
        assert_eq!((first.connections(), budget.available()), (7, 3));
        let waiting = tokio::spawn(async move {
            let permit = budget.acquire(5, Duration::from_secs(60)).await.unwrap();
            permit.connections()
        });
        tokio::time::sleep(SHORT).await;
        assert!(!waiting.is_finished(), "5 of the 3 left cannot be given");
        drop(first);
        assert_eq!(waiting.await.unwrap(), 5);
        assert_eq!(budget.available(), 10, "every connection is back");
    }

    #[tokio::test]
    async fn waiting_past_the_deadline_says_who_to_ask() {
        let budget = ConnectionBudget::new(4);
        let _held = budget.acquire(3, SHORT).await.unwrap();
        let error = budget.acquire(2, SHORT).await.unwrap_err();
        assert_eq!(
            error,
            BudgetError::TimedOut {
                asked: 2,
                budget: 4,
                waited: SHORT
            }
        );
        let message = error.to_string();
        assert!(message.contains(BUDGET_VAR), "{message}");
        assert!(message.contains("RUST_TEST_THREADS"), "{message}");
        assert_eq!(
            budget.available(),
            1,
            "a request that timed out holds nothing"
        );
    }

    #[tokio::test]
    async fn more_than_the_whole_budget_fails_at_once() {
        let budget = ConnectionBudget::new(4);
        let started = std::time::Instant::now();
        let error = budget
            .acquire(5, Duration::from_secs(60))
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1), "no waiting");
        assert_eq!(
            error,
            BudgetError::OverBudget {
                asked: 5,
                budget: 4
            }
        );
        let message = error.to_string();
        assert!(
            message.contains("5 PostgreSQL connections")
                && message.contains("budget of 4")
                && message.contains(BUDGET_VAR),
            "{message}"
        );
        assert_eq!(budget.available(), 4);
    }

    #[test]
    fn permits_go_back_without_a_runtime() {
        // Tests run each on a runtime of its own: a permit taken on one and dropped after
        // it ended still returns to the budget.
        let budget = ConnectionBudget::new(3);
        let permit = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(budget.acquire(3, SHORT))
            .unwrap();
        assert_eq!(budget.available(), 0);
        drop(permit);
        assert_eq!(budget.available(), 3);
    }
}
