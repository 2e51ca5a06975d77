//! The application catalog: every live application with its owner, products and active
//! credentials, built from the global log.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;

use es_core::{EventEnvelope, EventFilter, Position, Projection, Version};

use crate::application::{Application, ApplicationEvent};

/// One application as the catalog lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationSummary {
    /// Its display name.
    pub name: String,
    /// Who owns it.
    pub owner: String,
    /// The API products it uses, sorted.
    pub products: BTreeSet<String>,
    /// How many of its credential keys still work.
    pub active_credentials: usize,
}

/// Every application that has not been deleted, by application id.
///
/// The catalog lives in memory, so it keeps its checkpoint beside its data
/// ([`Projection::keeps_own_checkpoint`]): a new process starts with an empty catalog *and*
/// no checkpoint, and builds it from the start of the log. (Had it let the runner keep the
/// checkpoint in the store, a restarted process on PostgreSQL would resume after the saved
/// position with an empty catalog and never list the older applications.) Run it with no
/// lease (`with_lease(None)`): each process has its own catalog, with nothing to share.
///
/// It also remembers the last version it applied of each application's stream and skips
/// anything at or below it, so seeing an event again changes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplicationCatalog {
    /// The live applications, by application id.
    pub applications: BTreeMap<String, ApplicationSummary>,
    /// Per application id (deleted ones included), the last stream version applied.
    versions: BTreeMap<String, Version>,
    /// The position of the last committed batch.
    position: Option<Position>,
    /// Keys still working per application, to count them.
    active_keys: BTreeMap<String, BTreeSet<String>>,
}

impl ApplicationCatalog {
    /// The name of its checkpoint.
    pub const NAME: &'static str = "application-catalog";

    /// The last version of application `id`'s stream the catalog has applied (deleted
    /// applications included): it reflects every command on `id` up to that version.
    pub fn version_of(&self, id: &str) -> Option<Version> {
        self.versions.get(id).copied()
    }

    fn count_keys(&mut self, id: &str) {
        let count = self.active_keys.get(id).map_or(0, BTreeSet::len);
        if let Some(app) = self.applications.get_mut(id) {
            app.active_credentials = count;
        }
    }
}

impl Projection for ApplicationCatalog {
    type Event = ApplicationEvent;
    type Error = Infallible;

    fn name(&self) -> &str {
        Self::NAME
    }

    fn filter(&self) -> EventFilter {
        EventFilter::for_aggregate::<Application>()
    }

    async fn handle(
        &mut self,
        envelope: &EventEnvelope<ApplicationEvent>,
    ) -> Result<(), Infallible> {
        let id = envelope.stream_id.id();
        if self
            .versions
            .get(id)
            .is_some_and(|seen| *seen >= envelope.version)
        {
            return Ok(());
        }
        self.versions.insert(id.to_owned(), envelope.version);
        match &envelope.event {
            ApplicationEvent::Created { name, owner } => {
                self.applications.insert(
                    id.to_owned(),
                    ApplicationSummary {
                        name: name.clone(),
                        owner: owner.clone(),
                        products: BTreeSet::new(),
                        active_credentials: 0,
                    },
                );
            }
            ApplicationEvent::ApiProductAdded { product } => {
                if let Some(app) = self.applications.get_mut(id) {
                    app.products.insert(product.clone());
                }
            }
            ApplicationEvent::ApiProductRemoved { product, .. } => {
                if let Some(app) = self.applications.get_mut(id) {
                    app.products.remove(product);
                }
            }
            ApplicationEvent::OwnerChanged { to, .. } => {
                if let Some(app) = self.applications.get_mut(id) {
                    app.owner.clone_from(to);
                }
            }
            ApplicationEvent::CredentialsGenerated { key, .. } => {
                self.active_keys
                    .entry(id.to_owned())
                    .or_default()
                    .insert(key.clone());
                self.count_keys(id);
            }
            ApplicationEvent::CredentialsExpired { key, .. } => {
                if let Some(keys) = self.active_keys.get_mut(id) {
                    keys.remove(key);
                }
                self.count_keys(id);
            }
            ApplicationEvent::Deleted => {
                self.applications.remove(id);
                self.active_keys.remove(id);
            }
        }
        Ok(())
    }

    async fn reset(&mut self) -> Result<(), Infallible> {
        *self = Self::default();
        Ok(())
    }

    fn keeps_own_checkpoint(&self) -> bool {
        true
    }

    // The catalog runs unpartitioned, so one position serves its only key.
    async fn load_checkpoint(&mut self, _key: &str) -> Result<Option<Position>, Infallible> {
        Ok(self.position)
    }

    async fn commit(&mut self, _key: &str, position: Position) -> Result<(), Infallible> {
        // Writes are applied as they come, in memory: committing only moves the checkpoint.
        self.position = Some(position);
        Ok(())
    }
}
