//! The runner's [`Lease`]: which of several instances of one projection handles events.
//!
//! Only the holder handles events; it renews the lease a third of the way through its term,
//! so that a slow store call or a pause does not let it run out. A lease another instance
//! took while this one was away is lost for good, even if it could be taken back now: the
//! other may have handled the same events meanwhile.

use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::error::StoreError;
use crate::store::LeaseStore;

/// Instants a `Duration::MAX` away cannot be computed; a century is never enough.
const LONGEST: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// One runner's claim on its projection's lease.
#[derive(Debug)]
pub(super) struct Lease {
    /// The time to live, or `None` for a runner without a lease (it alone runs).
    ttl: Option<Duration>,
    /// Who this runner is, to the store.
    owner: Uuid,
    /// When the lease is due for renewal.
    renew_at: Instant,
}

impl Lease {
    /// A lease of `ttl` (a century at most), not yet taken.
    pub(super) fn new(ttl: Option<Duration>) -> Self {
        Self {
            ttl: ttl.map(|ttl| ttl.min(LONGEST)),
            owner: Uuid::now_v7(),
            renew_at: Instant::now(),
        }
    }

    /// The time to live, if the runner runs under a lease.
    pub(super) fn ttl(&self) -> Option<Duration> {
        self.ttl
    }

    /// When the lease is next due for renewal, if there is one.
    pub(super) fn renew_at(&self) -> Option<Instant> {
        self.ttl.map(|_| self.renew_at)
    }

    /// Takes the lease, or renews it if this runner holds it; `true` if it holds it now
    /// (always, without a lease).
    pub(super) async fn acquire<S: LeaseStore>(
        &mut self,
        store: &S,
        key: &str,
    ) -> Result<bool, StoreError> {
        let Some(ttl) = self.ttl else {
            return Ok(true);
        };
        let asked_at = Instant::now();
        let held = store.acquire_lease(key, self.owner, ttl).await?;
        Ok(self.note(held, asked_at, ttl))
    }

    /// Whether this runner has held its lease without a break, renewing it when due.
    /// `false` once another instance took it (or it was released). A lease that merely
    /// ran out while this runner was slow, with nobody taking it, still counts as held.
    pub(super) async fn keep<S: LeaseStore>(
        &mut self,
        store: &S,
        key: &str,
    ) -> Result<bool, StoreError> {
        let Some(ttl) = self.ttl else {
            return Ok(true);
        };
        let asked_at = Instant::now();
        if asked_at < self.renew_at {
            return Ok(true);
        }
        let held = store.renew_lease(key, self.owner, ttl).await?;
        Ok(self.note(held, asked_at, ttl))
    }

    /// Waits `pause`, renewing the lease whenever due meanwhile; `false` if it was lost.
    pub(super) async fn pause_holding<S: LeaseStore>(
        &mut self,
        store: &S,
        key: &str,
        pause: Duration,
    ) -> Result<bool, StoreError> {
        let until = Instant::now() + pause;
        loop {
            if !self.keep(store, key).await? {
                return Ok(false);
            }
            let now = Instant::now();
            if now >= until {
                return Ok(true);
            }
            let mut slice = until - now;
            if let Some(renew_at) = self.renew_at() {
                slice = slice.min(
                    renew_at
                        .saturating_duration_since(now)
                        .max(Duration::from_millis(1)),
                );
            }
            futures_timer::Delay::new(slice).await;
        }
    }

    /// Gives the lease up, so that another instance need not wait for it to run out. A
    /// failure is only logged: the lease runs out on its own.
    pub(super) async fn release<S: LeaseStore>(&self, store: &S, key: &str) {
        if self.ttl.is_some()
            && let Err(error) = store.release_lease(key, self.owner).await
        {
            tracing::warn!(projection = %key, error = &error as &dyn std::error::Error, "cannot release lease");
        }
    }

    /// Notes a lease taken or renewed by a call made at `asked_at` (not at its reply: the
    /// store counts the term from when it got the call); passes `held` on.
    fn note(&mut self, held: bool, asked_at: Instant, ttl: Duration) -> bool {
        if held {
            self.renew_at = asked_at + ttl / 3;
        }
        held
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A lease table of one row, counting the calls that reach it.
    #[derive(Clone, Default)]
    struct Table {
        state: Arc<Mutex<TableState>>,
    }

    #[derive(Default)]
    struct TableState {
        holder: Option<Uuid>,
        acquires: u32,
        renewals: u32,
        releases: u32,
    }

    impl Table {
        fn take_over(&self) {
            self.state.lock().unwrap().holder = Some(Uuid::now_v7());
        }

        fn calls(&self) -> (u32, u32, u32) {
            let state = self.state.lock().unwrap();
            (state.acquires, state.renewals, state.releases)
        }
    }

    impl LeaseStore for Table {
        async fn acquire_lease(
            &self,
            _: &str,
            owner: Uuid,
            _: Duration,
        ) -> Result<bool, StoreError> {
            let mut state = self.state.lock().unwrap();
            state.acquires += 1;
            match state.holder {
                Some(holder) if holder != owner => Ok(false),
                _ => {
                    state.holder = Some(owner);
                    Ok(true)
                }
            }
        }

        async fn renew_lease(&self, _: &str, owner: Uuid, _: Duration) -> Result<bool, StoreError> {
            let mut state = self.state.lock().unwrap();
            state.renewals += 1;
            Ok(state.holder == Some(owner))
        }

        async fn release_lease(&self, _: &str, owner: Uuid) -> Result<(), StoreError> {
            let mut state = self.state.lock().unwrap();
            state.releases += 1;
            if state.holder == Some(owner) {
                state.holder = None;
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_runner_without_a_lease_always_holds_it_and_asks_nobody() {
        let table = Table::default();
        let mut lease = Lease::new(None);
        assert!(lease.acquire(&table, "view").await.unwrap());
        assert!(lease.keep(&table, "view").await.unwrap());
        lease.release(&table, "view").await;
        assert_eq!(table.calls(), (0, 0, 0));
        assert_eq!(lease.renew_at(), None);
    }

    #[tokio::test]
    async fn the_lease_is_renewed_only_when_a_third_of_its_term_has_passed() {
        let table = Table::default();
        // A term long enough that no stall of a loaded machine between the acquire and
        // the first keep makes a renewal due.
        let mut lease = Lease::new(Some(Duration::from_secs(3)));
        assert!(lease.acquire(&table, "view").await.unwrap());
        // Not due yet: no call.
        assert!(lease.keep(&table, "view").await.unwrap());
        assert_eq!(table.calls(), (1, 0, 0));
        futures_timer::Delay::new(Duration::from_millis(1_100)).await;
        assert!(lease.keep(&table, "view").await.unwrap());
        assert_eq!(table.calls(), (1, 1, 0));
    }

    #[tokio::test]
    async fn a_lease_taken_over_is_lost_for_good() {
        let table = Table::default();
        let mut lease = Lease::new(Some(Duration::from_millis(30)));
        assert!(lease.acquire(&table, "view").await.unwrap());
        table.take_over();
        futures_timer::Delay::new(Duration::from_millis(15)).await;
        assert!(!lease.keep(&table, "view").await.unwrap());
        assert!(!lease.acquire(&table, "view").await.unwrap());
    }

    #[tokio::test]
    async fn a_pause_renews_the_lease_and_ends_early_when_it_is_lost() {
        let table = Table::default();
        let mut lease = Lease::new(Some(Duration::from_millis(30)));
        assert!(lease.acquire(&table, "view").await.unwrap());
        // A pause of several terms renews several times, and keeps the lease.
        assert!(
            lease
                .pause_holding(&table, "view", Duration::from_millis(300))
                .await
                .unwrap()
        );
        let (_, renewals, _) = table.calls();
        assert!(
            renewals >= 3,
            "renewed {renewals} times in thirty thirds of a term"
        );

        table.take_over();
        let started = Instant::now();
        assert!(
            !lease
                .pause_holding(&table, "view", Duration::from_secs(60))
                .await
                .unwrap()
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "noticed the loss at the next renewal"
        );
    }

    #[test]
    fn an_endless_lease_is_a_century() {
        let lease = Lease::new(Some(Duration::MAX));
        assert_eq!(lease.ttl(), Some(LONGEST));
    }
}
