//! One budget of server connections for the whole test process.

use std::cell::RefCell;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, SemaphorePermit};

/// The environment variable that sets the budget, in connections.
pub const BUDGET_VAR: &str = "ES_TEST_PG_CONNECTIONS";

/// The budget when [`BUDGET_VAR`] is not set: well under PostgreSQL's default
/// `max_connections` of 100, which leaves room for a second test process, `psql` and the
/// server's own reserved connections.
pub const DEFAULT_BUDGET: u32 = 40;

/// How long [`ConnectionBudget::acquire`] waits for other tests to give connections back.
pub const ACQUIRE_DEADLINE: Duration = Duration::from_secs(120);

/// The connections one test takes from the budget at its first pool
/// ([`ConnectionBudget::acquire_for_test`]), for all the pools it opens: enough for the
/// largest test's peak (a [`fresh_store`](super::fresh_store)'s 13, a
/// [`second_store`](super::second_store)'s 5 and a one-connection pool's 2), and half the
/// default budget, so that two tests hold a share at once under it.
pub const TEST_SHARE: u32 = 20;

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

/// Connections one test drew for one pool (or direct connections) through
/// [`ConnectionBudget::acquire_for_test`], given back when dropped: to the test's share, and
/// the share to the budget with the last of them.
#[derive(Debug)]
#[must_use = "the connections go back when the permit is dropped"]
pub struct TestPermit {
    drawn: Drawn,
}

#[derive(Debug)]
enum Drawn {
    /// From the share of the thread that drew them, which it keeps alive.
    Share {
        permit: OwnedSemaphorePermit,
        _share: Arc<TestShare>,
    },
    /// From the budget itself: more than a share, or past what the share has left.
    Budget(BudgetPermit<'static>),
}

impl TestPermit {
    /// How many connections this permit holds.
    pub fn connections(&self) -> u32 {
        match &self.drawn {
            Drawn::Share { permit, .. } => u32::try_from(permit.num_permits()).unwrap_or(u32::MAX),
            Drawn::Budget(permit) => permit.connections(),
        }
    }

    /// Whether the connections came from the test's share (not straight from the budget).
    pub fn is_from_share(&self) -> bool {
        matches!(self.drawn, Drawn::Share { .. })
    }
}

/// One test's share of a budget: taken whole at its first pool, given back with its last.
#[derive(Debug)]
struct TestShare {
    budget: &'static ConnectionBudget,
    left: Arc<Semaphore>,
    _taken: BudgetPermit<'static>,
}

thread_local! {
    /// The share of the test running on this thread, while any of its pools is alive.
    static SHARE: RefCell<Weak<TestShare>> = const { RefCell::new(Weak::new()) };
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

    /// Takes `connections` for a pool of the test running on this thread. The test's first
    /// pool takes its whole share ([`TEST_SHARE`], at most the budget) from the budget,
    /// waiting up to `deadline`; its later pools on the same thread draw from that share
    /// without waiting, and the share goes back to the budget with the test's last pool.
    ///
    /// So a test waits only while it holds nothing: tests that held one pool each while
    /// waiting for a second (pool by pool, three tests of 13 could hold 39 of 40 and wait on
    /// each other until the deadline) cannot wait on one another. A request larger than a
    /// share and pools opened on another thread (a spawned task's worker) take from the
    /// budget itself, as [`acquire`](Self::acquire); one past what the share has left takes
    /// from whichever gives first, the share (as the test's own pools are dropped) or the
    /// budget, within `deadline`.
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire).
    ///
    /// # Panics
    ///
    /// As [`acquire`](Self::acquire).
    pub async fn acquire_for_test(
        &'static self,
        connections: u32,
        deadline: Duration,
    ) -> Result<TestPermit, BudgetError> {
        if connections > self.total {
            return Err(BudgetError::OverBudget {
                asked: connections,
                budget: self.total,
            });
        }
        let size = TEST_SHARE.min(self.total);
        let from_budget = |permit| TestPermit {
            drawn: Drawn::Budget(permit),
        };
        if connections > size {
            return self.acquire(connections, deadline).await.map(from_budget);
        }
        let share = SHARE
            .with(|share| share.borrow().upgrade())
            .filter(|share| std::ptr::eq(share.budget, self));
        let share = match share {
            Some(share) => share,
            None => {
                let taken = self.acquire(size, deadline).await?;
                let share = Arc::new(TestShare {
                    budget: self,
                    left: Arc::new(Semaphore::new(size as usize)),
                    _taken: taken,
                });
                SHARE.with(|slot| *slot.borrow_mut() = Arc::downgrade(&share));
                share
            }
        };
        let drawn = |permit, share| TestPermit {
            drawn: Drawn::Share {
                permit,
                _share: share,
            },
        };
        // A pool the test just dropped gives its connections back to the share a moment
        // later, when its tasks have run.
        let soon = Duration::from_secs(1).min(deadline);
        if let Ok(permit) = tokio::time::timeout(
            soon,
            Arc::clone(&share.left).acquire_many_owned(connections),
        )
        .await
        {
            let permit = permit.unwrap_or_else(|_| unreachable!("a share is never closed"));
            return Ok(drawn(permit, share));
        }
        // Past what the share has left: whichever comes first, the test's own pools giving
        // connections back to the share (a pool just dropped, whose tasks still hold it),
        // or the budget, within the deadline. Only a test that really needs more than a
        // share waits on other tests while holding it.
        eprintln!(
            "a test asked for {connections} PostgreSQL connections more than its share of \
             {size} has left: it waits for its own pools to give some back or for the budget, \
             and two tests doing so at once can wait on each other; keep a test's pools within \
             {size} connections (a pool of n takes n + 1)"
        );
        let from_share = Arc::clone(&share.left).acquire_many_owned(connections);
        tokio::select! {
            permit = from_share => {
                let permit = permit.unwrap_or_else(|_| unreachable!("a share is never closed"));
                Ok(drawn(permit, share))
            }
            permit = self.acquire(connections, deadline) => permit.map(from_budget),
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

    #[tokio::test]
    async fn a_tests_later_pools_draw_from_its_share_without_waiting() {
        let budget: &'static ConnectionBudget = Box::leak(Box::new(ConnectionBudget::new(30)));
        let first = budget.acquire_for_test(13, SHORT).await.unwrap();
        assert!(first.is_from_share());
        assert_eq!(
            budget.available(),
            30 - TEST_SHARE,
            "the whole share is taken"
        );
        // Another test takes what is left of the budget: the nested pools still do not wait.
        let other = budget.acquire(30 - TEST_SHARE, SHORT).await.unwrap();
        let second = budget.acquire_for_test(5, SHORT).await.unwrap();
        let third = budget.acquire_for_test(2, SHORT).await.unwrap();
        assert!(second.is_from_share() && third.is_from_share());
        assert_eq!(budget.available(), 0);
        // Past the share, the budget itself: here it has nothing left.
        assert!(matches!(
            budget.acquire_for_test(1, SHORT).await,
            Err(BudgetError::TimedOut { .. })
        ));
        drop(other);
        let past = budget.acquire_for_test(1, SHORT).await.unwrap();
        assert!(!past.is_from_share());
        // Or the share, once the test's own pool gives connections back to it.
        let other = budget.acquire(budget.available(), SHORT).await.unwrap();
        let waiting = budget.acquire_for_test(13, Duration::from_secs(60));
        let (reused, ()) = tokio::join!(waiting, async {
            tokio::time::sleep(SHORT).await;
            drop(first);
        });
        let reused = reused.unwrap();
        assert!(reused.is_from_share());
        drop((other, reused, second, past));
        assert_eq!(
            budget.available(),
            30 - TEST_SHARE,
            "the share outlives one pool"
        );
        drop(third);
        assert_eq!(budget.available(), 30, "the last pool gives the share back");
        // More than the whole budget still fails at once.
        assert!(matches!(
            budget.acquire_for_test(31, Duration::from_secs(60)).await,
            Err(BudgetError::OverBudget {
                asked: 31,
                budget: 30
            })
        ));
    }

    #[test]
    fn tests_holding_a_pool_while_opening_another_cannot_deadlock() {
        // Pool by pool, three tests holding 13 of 40 each would wait on one another for
        // their next 5 until the deadline. By shares, a test waits only holding nothing.
        let budget: &'static ConnectionBudget = Box::leak(Box::new(ConnectionBudget::new(40)));
        let tests: Vec<_> = (0..3)
            .map(|_| {
                std::thread::spawn(move || {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_time()
                        .build()
                        .unwrap()
                        .block_on(async {
                            let deadline = Duration::from_secs(20);
                            let store = budget.acquire_for_test(13, deadline).await.unwrap();
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            let second = budget.acquire_for_test(5, SHORT).await.unwrap();
                            let killer = budget.acquire_for_test(2, SHORT).await.unwrap();
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            drop((store, second, killer));
                        });
                })
            })
            .collect();
        for test in tests {
            test.join().expect("every test got its connections");
        }
        assert_eq!(budget.available(), 40);
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
