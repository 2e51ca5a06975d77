//! The API product catalog, and the rule that crosses it and the applications: an API
//! product can be withdrawn from the catalog only when no application still uses it, and
//! an application can add a product only while it is offered.
//!
//! # Why no aggregate can hold this rule
//!
//! The rule is about one product and every application at once. An application's stream
//! knows its own products, not who else uses them; a product's stream (`product-<id>`)
//! knows whether it is offered, not who uses it. Put the rule in the product aggregate and
//! every add and removal of every application must also be written there (one hot stream
//! per product, and an application's add becoming two appends that can half fail); put it
//! in the application and no application can see the catalog change under it. A saga
//! would let a withdrawal and an add both pass and repair one afterwards.
//!
//! # How the decisions guard it
//!
//! Events are tagged with what they are about: [`ProductEvent`]s and the application's
//! `ApiProductAdded` / `ApiProductRemoved` with `product:<id>` (their `#[tag]` fields), and
//! every application event with `application:<id>`. The events hold no application id
//! (the stream names it), so that tag is added by whoever appends them: the decisions
//! below by their own [`Decision::tags`], and the repository's commands on the aggregate
//! (create, change owner, delete) by running in [`tagged_context`]. Each decision folds
//! small states from the events their queries select, and the [`Decider`] appends only
//! if none of those events was stored after the ones it read:
//!
//! | decision | reads | appends to | tags its events |
//! |---|---|---|---|
//! | [`OfferProduct`] | [`ProductOffering`] | `product-<id>` | `product:<id>` (declared) |
//! | [`WithdrawProduct`] | [`ProductOffering`], [`ProductUsers`] | `product-<id>` | `product:<id>` (declared) |
//! | [`AddProductToApplication`] | [`ApplicationHistory`], [`ProductOffering`] | `application-<id>` | `product:<id>` (declared), `application:<id>` (its own) |
//! | [`RemoveProductFromApplication`] | [`ApplicationHistory`] | `application-<id>` | `product:<id>` (declared), `application:<id>` (its own) |
//!
//! What guards what:
//!
//! - *A withdrawal and an add of the same product* each read what the other writes (the
//!   withdrawal reads `ApiProductAdded` tagged with the product; the add reads
//!   `ApiProductWithdrawn` tagged with it): whichever appends second finds its condition
//!   failed, reads again and is refused. They never both succeed, on either store.
//! - *Two adds (or an add and a removal) on one application* each read the application's
//!   `application:<id>` events, which the other's event carries by the decision's own
//!   tag: the second reads again and applies the aggregate's rule to the first's event.
//! - *A decision and a repository command on one application*: the add folds the whole
//!   [`Application`] from its `application:<id>` events ([`ApplicationHistory`]) and
//!   applies the aggregate's own rule ([`Application::add_api_product`]), so a deletion
//!   the repository stored meanwhile fails the add's condition, as long as the deletion
//!   carries the tag: that is what [`tagged_context`] is still for, and why every
//!   repository command on an application runs in it (an event without the tag is
//!   invisible to the decisions). The other way, a repository command expects the stream
//!   version it loaded, which the decision's append moved, so it loads again. (Folding
//!   the aggregate from its stream instead would leave the add unguarded: the decider
//!   appends with no expected version.)
//!
//! Since the decisions tag their own events, they run in any [`CommandContext`]: give one
//! with your command id ([`Decider::execute_with`]) and a repeated add records once.
//!
//! [`ProductUsers`] counts adds minus removals: an application alternates the two for a
//! product (its own rule, guarded by its stream), so the count is the number of
//! applications using it. A deleted application still counts for the products it held:
//! `ApplicationDeleted` names none, so a withdrawal stays refused, on the safe side.
//!
//! ```
//! use developer_portal::products::{AddProductToApplication, OfferProduct, ProductError};
//! use developer_portal::{Application, ApplicationCommand, PortalServices, tagged_context};
//! use es_core::{CommandContext, Decider, Repository};
//! use es_memory::MemoryEventStore;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
//! let store = MemoryEventStore::new();
//! let apps = Repository::<Application, _>::with_services(store.clone(), PortalServices::default());
//! let create = ApplicationCommand::Create { name: "Weather".into(), owner: "u-17".into() };
//! apps.execute_with("weather", create, tagged_context("weather")?).await?;
//!
//! let decider = Decider::new(store);
//! let add = AddProductToApplication::new("weather", "maps-api")?;
//! let refused = decider.execute(&add).await.unwrap_err();
//! assert_eq!(refused.rejection(), Some(&ProductError::NotOffered { product: "maps-api".into() }));
//!
//! decider.execute(&OfferProduct::new("maps-api", "Maps")?).await?;
//! // The caller's command id: the same request sent twice adds once.
//! let request = CommandContext::new().with_command_id(uuid::Uuid::now_v7());
//! let added = decider.execute_with(&add, request.clone()).await?;
//! let again = decider.execute_with(&add, request).await?;
//! assert!(again.duplicate);
//! assert_eq!(again.events, added.events);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use es_core::{
    Aggregate as _, AggregateType as _, Decision, DecisionState, DomainEvent, EventSchema, Query,
    QueryItem, StreamId, StreamIdError, Tag, TagError,
};
use serde::{Deserialize, Serialize};

#[cfg(doc)]
use crate::application::tagged_context;
use crate::application::{Application, ApplicationError, ApplicationEvent, application_tag};
#[cfg(doc)]
use es_core::{CommandContext, Decider};

/// The stream category of products: a product's events go to `product-<id>`.
pub const PRODUCT_CATEGORY: &str = "product";

/// What happens to an API product in the catalog. Each event is tagged `product:<id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent, EventSchema)]
pub enum ProductEvent {
    /// The product is in the catalog: applications may add it.
    #[event(name = "ApiProductOffered")]
    ApiProductOffered {
        /// The product's id.
        #[tag(prefix = "product")]
        product: String,
        /// Its display name.
        name: String,
    },
    /// The product left the catalog: no application may add it (until it is offered
    /// again).
    #[event(name = "ApiProductWithdrawn")]
    ApiProductWithdrawn {
        /// The product's id.
        #[tag(prefix = "product")]
        product: String,
    },
}

/// Why a product decision is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProductError {
    /// The product was never offered.
    #[error("API product `{product}` is not offered")]
    NotOffered {
        /// The product.
        product: String,
    },
    /// The product was withdrawn from the catalog.
    #[error("API product `{product}` has been withdrawn from the catalog")]
    Withdrawn {
        /// The product.
        product: String,
    },
    /// Applications still use the product.
    #[error(
        "API product `{product}` is still used by {applications} application(s): remove it from them first"
    )]
    InUse {
        /// The product.
        product: String,
        /// How many applications use it.
        applications: u32,
    },
    /// A product needs a display name.
    #[error("API product `{product}` needs a name")]
    NameRequired {
        /// The product.
        product: String,
    },
    /// The application's own rules refuse.
    #[error(transparent)]
    Application(#[from] ApplicationError),
}

/// An id that cannot name a product or an application.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidId {
    /// The id is empty (after trimming).
    #[error("an {what} id must not be empty")]
    Empty {
        /// What it names: `API product` or `application`.
        what: &'static str,
    },
    /// The id makes no valid tag.
    #[error("an {what} id must make a valid tag")]
    Tag {
        /// What it names.
        what: &'static str,
        /// Why not (the tag's key, never its value).
        #[source]
        source: TagError,
    },
    /// The id makes no valid stream id.
    #[error("an {what} id must make a valid stream id")]
    Stream {
        /// What it names.
        what: &'static str,
        /// Why not.
        #[source]
        source: StreamIdError,
    },
}

/// The tag of product `id`, `product:<id>`, as the `#[tag(prefix = "product")]` fields
/// make it.
///
/// # Errors
///
/// If `id` makes no valid tag.
pub fn product_tag(id: &str) -> Result<Tag, TagError> {
    Tag::pair(PRODUCT_CATEGORY, id)
}

/// A product id, trimmed, with its tag and stream.
#[derive(Debug, Clone)]
struct ProductId {
    id: String,
    tag: Tag,
    stream: StreamId,
}

impl ProductId {
    fn new(id: &str) -> Result<Self, InvalidId> {
        const WHAT: &str = "API product";
        let id = id.trim();
        if id.is_empty() {
            return Err(InvalidId::Empty { what: WHAT });
        }
        Ok(Self {
            tag: product_tag(id).map_err(|source| InvalidId::Tag { what: WHAT, source })?,
            stream: StreamId::new(PRODUCT_CATEGORY, id)
                .map_err(|source| InvalidId::Stream { what: WHAT, source })?,
            id: id.to_owned(),
        })
    }
}

/// An application id, with its tag and stream.
#[derive(Debug, Clone)]
struct ApplicationId {
    tag: Tag,
    stream: StreamId,
}

impl ApplicationId {
    fn new(id: &str) -> Result<Self, InvalidId> {
        const WHAT: &str = "application";
        if id.trim().is_empty() {
            return Err(InvalidId::Empty { what: WHAT });
        }
        Ok(Self {
            tag: application_tag(id).map_err(|source| InvalidId::Tag { what: WHAT, source })?,
            stream: StreamId::new(Application::NAME, id)
                .map_err(|source| InvalidId::Stream { what: WHAT, source })?,
        })
    }
}

/// Where a product is in the catalog.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Offering {
    /// Never offered.
    #[default]
    NotOffered,
    /// Offered: applications may add it.
    Offered,
    /// Withdrawn.
    Withdrawn,
}

/// Whether one product is offered: its [`ProductEvent`]s, by its `product:<id>` tag.
#[derive(Debug, Clone)]
pub struct ProductOffering {
    tag: Tag,
    /// Where it is in the catalog.
    pub offering: Offering,
}

impl ProductOffering {
    /// The state of the product tagged `tag`, before any event.
    pub fn new(tag: Tag) -> Self {
        Self {
            tag,
            offering: Offering::NotOffered,
        }
    }
}

impl DecisionState for ProductOffering {
    type Event = ProductEvent;

    fn query(&self) -> Query {
        QueryItem::of::<ProductEvent>()
            .with_tag(self.tag.clone())
            .into()
    }

    fn apply(&mut self, event: &ProductEvent) {
        self.offering = match event {
            ProductEvent::ApiProductOffered { .. } => Offering::Offered,
            ProductEvent::ApiProductWithdrawn { .. } => Offering::Withdrawn,
        };
    }
}

/// How many applications use one product: its `ApiProductAdded` minus its
/// `ApiProductRemoved` events, by its `product:<id>` tag (see the [module docs](self) for
/// why that counts applications).
#[derive(Debug, Clone)]
pub struct ProductUsers {
    tag: Tag,
    /// How many applications use it.
    pub applications: u32,
}

impl ProductUsers {
    /// The users of the product tagged `tag`, before any event.
    pub fn new(tag: Tag) -> Self {
        Self {
            tag,
            applications: 0,
        }
    }
}

impl DecisionState for ProductUsers {
    type Event = ApplicationEvent;

    fn query(&self) -> Query {
        QueryItem::new()
            .with_types(["ApiProductAdded", "ApiProductRemoved"])
            .with_tag(self.tag.clone())
            .into()
    }

    fn apply(&mut self, event: &ApplicationEvent) {
        match event {
            ApplicationEvent::ApiProductAdded { .. } => self.applications += 1,
            // Saturating: a removal is never stored without its add, but a fold is
            // infallible whatever the log holds.
            ApplicationEvent::ApiProductRemoved { .. } => {
                self.applications = self.applications.saturating_sub(1);
            }
            _ => {}
        }
    }
}

/// One application as the aggregate sees it, folded from its `application:<id>` events
/// (every event the application's commands and decisions record, see
/// [`tagged_context`]).
#[derive(Debug, Clone)]
pub struct ApplicationHistory {
    tag: Tag,
    /// The application, as its events made it.
    pub application: Application,
}

impl ApplicationHistory {
    /// The application tagged `tag`, before any event.
    pub fn new(tag: Tag) -> Self {
        Self {
            tag,
            application: Application::default(),
        }
    }
}

impl DecisionState for ApplicationHistory {
    type Event = ApplicationEvent;

    fn query(&self) -> Query {
        QueryItem::of::<ApplicationEvent>()
            .with_tag(self.tag.clone())
            .into()
    }

    fn apply(&mut self, event: &ApplicationEvent) {
        self.application.apply(event);
    }
}

/// Put a product in the catalog (again, after a withdrawal). Offering a product that is
/// offered changes nothing.
#[derive(Debug, Clone)]
pub struct OfferProduct {
    product: ProductId,
    name: String,
}

impl OfferProduct {
    /// Offer product `product` under display name `name`.
    ///
    /// # Errors
    ///
    /// If `product` is empty or makes no valid tag or stream id.
    pub fn new(product: &str, name: &str) -> Result<Self, InvalidId> {
        Ok(Self {
            product: ProductId::new(product)?,
            name: name.trim().to_owned(),
        })
    }
}

impl Decision for OfferProduct {
    type State = ProductOffering;
    type Event = ProductEvent;
    type Error = ProductError;

    fn state(&self) -> ProductOffering {
        ProductOffering::new(self.product.tag.clone())
    }

    fn stream(&self) -> StreamId {
        self.product.stream.clone()
    }

    fn decide(&self, state: &ProductOffering) -> Result<Vec<ProductEvent>, ProductError> {
        if self.name.is_empty() {
            return Err(ProductError::NameRequired {
                product: self.product.id.clone(),
            });
        }
        if state.offering == Offering::Offered {
            return Ok(Vec::new());
        }
        Ok(vec![ProductEvent::ApiProductOffered {
            product: self.product.id.clone(),
            name: self.name.clone(),
        }])
    }
}

/// Withdraw a product from the catalog: refused while any application uses it.
#[derive(Debug, Clone)]
pub struct WithdrawProduct {
    product: ProductId,
}

impl WithdrawProduct {
    /// Withdraw product `product`.
    ///
    /// # Errors
    ///
    /// If `product` is empty or makes no valid tag or stream id.
    pub fn new(product: &str) -> Result<Self, InvalidId> {
        Ok(Self {
            product: ProductId::new(product)?,
        })
    }
}

impl Decision for WithdrawProduct {
    type State = (ProductOffering, ProductUsers);
    type Event = ProductEvent;
    type Error = ProductError;

    fn state(&self) -> Self::State {
        (
            ProductOffering::new(self.product.tag.clone()),
            ProductUsers::new(self.product.tag.clone()),
        )
    }

    fn stream(&self) -> StreamId {
        self.product.stream.clone()
    }

    fn decide(&self, (offering, users): &Self::State) -> Result<Vec<ProductEvent>, ProductError> {
        let product = self.product.id.clone();
        match offering.offering {
            Offering::NotOffered => Err(ProductError::NotOffered { product }),
            Offering::Withdrawn => Err(ProductError::Withdrawn { product }),
            Offering::Offered if users.applications > 0 => Err(ProductError::InUse {
                product,
                applications: users.applications,
            }),
            Offering::Offered => Ok(vec![ProductEvent::ApiProductWithdrawn { product }]),
        }
    }
}

/// Let an application use a product: the application's own rules, and the product must
/// be offered. Its event carries `application:<id>` by the decision's own
/// [`tags`](Decision::tags), whatever context it runs in.
#[derive(Debug, Clone)]
pub struct AddProductToApplication {
    application: ApplicationId,
    product: ProductId,
}

impl AddProductToApplication {
    /// Add product `product` to application `application`.
    ///
    /// # Errors
    ///
    /// If either id is empty or makes no valid tag or stream id.
    pub fn new(application: &str, product: &str) -> Result<Self, InvalidId> {
        Ok(Self {
            application: ApplicationId::new(application)?,
            product: ProductId::new(product)?,
        })
    }
}

impl Decision for AddProductToApplication {
    type State = (ApplicationHistory, ProductOffering);
    type Event = ApplicationEvent;
    type Error = ProductError;

    fn state(&self) -> Self::State {
        (
            ApplicationHistory::new(self.application.tag.clone()),
            ProductOffering::new(self.product.tag.clone()),
        )
    }

    fn stream(&self) -> StreamId {
        self.application.stream.clone()
    }

    fn decide(
        &self,
        (history, offering): &Self::State,
    ) -> Result<Vec<ApplicationEvent>, ProductError> {
        // The application's own rules first: a deleted application is refused as the
        // aggregate refuses it, whatever the catalog says.
        let events = history.application.add_api_product(&self.product.id)?;
        let product = self.product.id.clone();
        match offering.offering {
            Offering::Offered => Ok(events),
            Offering::NotOffered => Err(ProductError::NotOffered { product }),
            Offering::Withdrawn => Err(ProductError::Withdrawn { product }),
        }
    }

    /// `application:<id>`: the event names no application, and the next decision on the
    /// application selects its events by it.
    fn tags(&self) -> Vec<Tag> {
        vec![self.application.tag.clone()]
    }
}

/// Stop an application using a product: the application's own rules only (a product
/// can always be given up), as a decision so that its event is read and tagged like the
/// add's (`application:<id>` by the decision's own [`tags`](Decision::tags)).
#[derive(Debug, Clone)]
pub struct RemoveProductFromApplication {
    application: ApplicationId,
    product: ProductId,
}

impl RemoveProductFromApplication {
    /// Remove product `product` from application `application`.
    ///
    /// # Errors
    ///
    /// If either id is empty or makes no valid tag or stream id.
    pub fn new(application: &str, product: &str) -> Result<Self, InvalidId> {
        Ok(Self {
            application: ApplicationId::new(application)?,
            product: ProductId::new(product)?,
        })
    }
}

impl Decision for RemoveProductFromApplication {
    type State = ApplicationHistory;
    type Event = ApplicationEvent;
    type Error = ProductError;

    fn state(&self) -> ApplicationHistory {
        ApplicationHistory::new(self.application.tag.clone())
    }

    fn stream(&self) -> StreamId {
        self.application.stream.clone()
    }

    fn decide(&self, history: &ApplicationHistory) -> Result<Vec<ApplicationEvent>, ProductError> {
        Ok(history.application.remove_api_product(&self.product.id)?)
    }

    /// `application:<id>`, as the add's.
    fn tags(&self) -> Vec<Tag> {
        vec![self.application.tag.clone()]
    }
}
