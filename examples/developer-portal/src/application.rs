//! The application aggregate: a developer's registered application, the API products it
//! uses, its owner and its credentials.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};
use es_core::{Aggregate, CommandContext, DomainEvent, EventSchema, Metadata, Tag, TagError};
use serde::{Deserialize, Serialize};

use crate::services::PortalServices;

/// The tag every event of application `id` carries, `application:<id>`: what the
/// decisions about its products ([`crate::products`]) select its events by.
///
/// The events hold no application id (the stream names it), so the tag is added by
/// whoever appends them: the product decisions by their own
/// [`Decision::tags`](es_core::Decision::tags), the repository's commands by running in
/// [`tagged_context`].
///
/// # Errors
///
/// If `id` makes no valid tag (a control character, too long).
pub fn application_tag(id: &str) -> Result<Tag, TagError> {
    Tag::pair("application", id)
}

/// A command context whose events carry [`application_tag`]`(id)`: every command the
/// repository runs on application `id` runs in one, so that a decision about the
/// application sees every event of it (the aggregate's commands have no tags of their
/// own; the product decisions tag their events themselves). Give it your command id
/// with [`CommandContext::with_command_id`] for an idempotent command.
///
/// # Errors
///
/// If `id` makes no valid tag.
pub fn tagged_context(id: &str) -> Result<CommandContext, TagError> {
    Ok(CommandContext::new().with_metadata(Metadata::new().with_tag(application_tag(id)?)))
}

/// The longest validity credentials may have, in days: every key expires.
pub const MAX_VALIDITY_DAYS: u32 = 365;

/// What happens to an application. Each variant is its own event type in the
/// application's stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent, EventSchema)]
pub enum ApplicationEvent {
    /// A developer registered the application.
    #[event(name = "ApplicationCreated")]
    Created {
        /// Its display name.
        name: String,
        /// Who owns it.
        owner: String,
    },
    /// The application may now call an API product.
    #[event(name = "ApiProductAdded")]
    ApiProductAdded {
        /// The product.
        // Tagged `product:<product>`, so that the decision withdrawing the product sees
        // it (see `crate::products`); tags are not part of the payload's schema.
        #[tag(prefix = "product")]
        product: String,
    },
    /// The application no longer uses an API product.
    #[event(name = "ApiProductRemoved")]
    ApiProductRemoved {
        /// The product.
        // Tagged `product:<product>`, as the add is.
        #[tag(prefix = "product")]
        product: String,
        /// Who owned the application when the product was removed: the one to ask why.
        owner: String,
    },
    /// Someone else owns the application now.
    #[event(name = "OwnerChanged")]
    OwnerChanged {
        /// The previous owner.
        from: String,
        /// The new owner.
        to: String,
    },
    /// A credential key was issued.
    #[event(name = "CredentialsGenerated")]
    CredentialsGenerated {
        /// The consumer key.
        key: String,
        /// When it was issued (by the portal's clock).
        issued_at: DateTime<Utc>,
        /// When it stops being valid.
        expires_at: DateTime<Utc>,
    },
    /// A credential key reached its expiry and no longer works.
    #[event(name = "CredentialsExpired")]
    CredentialsExpired {
        /// The consumer key.
        key: String,
        /// When it was expired (by the portal's clock).
        expired_at: DateTime<Utc>,
    },
    /// The application was deleted; nothing more happens to it.
    #[event(name = "ApplicationDeleted")]
    Deleted,
}

/// What can be asked of an application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplicationCommand {
    /// Register a new application.
    Create {
        /// Its display name.
        name: String,
        /// Who owns it.
        owner: String,
    },
    /// Let the application call an API product.
    ///
    /// The aggregate checks only its own rules here: it cannot see the catalog. The
    /// portal adds products with the
    /// [`AddProductToApplication`](crate::products::AddProductToApplication) decision,
    /// which applies the same rules and also requires the product to be offered.
    AddApiProduct {
        /// The product.
        product: String,
    },
    /// Stop the application using an API product.
    RemoveApiProduct {
        /// The product.
        product: String,
    },
    /// Hand the application to another owner.
    ChangeOwner {
        /// The new owner.
        owner: String,
    },
    /// Issue a credential key, valid from now for this many days.
    GenerateCredentials {
        /// How long the key is valid, from 1 to [`MAX_VALIDITY_DAYS`] days.
        valid_for_days: u32,
    },
    /// Expire a credential key whose validity has run out.
    ExpireCredentials {
        /// The consumer key.
        key: String,
    },
    /// Delete the application.
    Delete,
}

/// Why an application refuses a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplicationError {
    /// The application exists already.
    #[error("the application has already been created")]
    AlreadyCreated,
    /// There is no such application.
    #[error("the application has not been created")]
    NotCreated,
    /// The application was deleted: it accepts nothing more.
    #[error("the application has been deleted")]
    Deleted,
    /// The application was deleted already.
    #[error("the application has already been deleted")]
    AlreadyDeleted,
    /// An application needs a name.
    #[error("an application needs a name")]
    NameRequired,
    /// An application needs an owner.
    #[error("an application needs an owner")]
    OwnerRequired,
    /// An API product needs a name.
    #[error("an API product needs a name")]
    ProductNameRequired,
    /// The application uses the product already.
    #[error("the application already uses API product `{product}`")]
    ProductAlreadyAdded {
        /// The product.
        product: String,
    },
    /// The application does not use the product.
    #[error("the application does not use API product `{product}`")]
    ProductNotAdded {
        /// The product.
        product: String,
    },
    /// The new owner is the current one.
    #[error("`{owner}` already owns the application")]
    SameOwner {
        /// The owner.
        owner: String,
    },
    /// Credentials grant access to API products, so an application needs one first.
    #[error("the application has no API products: credentials need at least one")]
    NoApiProducts,
    /// Credentials must expire, within the allowed time.
    #[error("credentials must be valid for 1 to {MAX_VALIDITY_DAYS} days, not {days}")]
    InvalidValidity {
        /// The requested validity.
        days: u32,
    },
    /// The key generator produced a key the application has already.
    #[error("credential key `{key}` is already in use")]
    KeyInUse {
        /// The key.
        key: String,
    },
    /// The application has no such key.
    #[error("the application has no credential key `{key}`")]
    UnknownCredentials {
        /// The key.
        key: String,
    },
    /// The key expired already.
    #[error("credential key `{key}` has already expired")]
    CredentialsAlreadyExpired {
        /// The key.
        key: String,
    },
    /// The key is still valid.
    #[error("credential key `{key}` is valid until {expires_at}")]
    CredentialsNotDue {
        /// The key.
        key: String,
        /// When it expires.
        expires_at: DateTime<Utc>,
    },
}

/// Where an application is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApplicationStatus {
    /// Not created yet.
    #[default]
    Draft,
    /// Created and in use.
    Active,
    /// Deleted.
    Deleted,
}

/// One credential key of an application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
    /// When its validity runs out.
    pub expires_at: DateTime<Utc>,
    /// When it was expired, if it has been.
    pub expired_at: Option<DateTime<Utc>>,
}

impl Credential {
    /// Whether the key still works: it has not been expired. (Expiry is an event the
    /// portal records, not the mere passing of `expires_at`, so state changes only
    /// through events.)
    pub fn is_active(&self) -> bool {
        self.expired_at.is_none()
    }
}

/// An application, as its events made it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, es_core::AggregateType)]
#[aggregate(
    name = "application",
    command = ApplicationCommand,
    event = ApplicationEvent,
    error = ApplicationError,
    services = PortalServices
)]
pub struct Application {
    /// Where it is in its life.
    pub status: ApplicationStatus,
    /// Its display name.
    pub name: String,
    /// Who owns it.
    pub owner: String,
    /// The API products it uses.
    pub products: BTreeSet<String>,
    /// Its credentials, by key.
    pub credentials: BTreeMap<String, Credential>,
}

impl Application {
    /// The keys that still work.
    pub fn active_keys(&self) -> impl Iterator<Item = &str> {
        self.credentials
            .iter()
            .filter(|(_, credential)| credential.is_active())
            .map(|(key, _)| key.as_str())
    }

    /// Whether the application accepts commands other than `Create` and `Delete`: it
    /// exists and is not deleted.
    ///
    /// # Errors
    ///
    /// [`ApplicationError::NotCreated`] or [`ApplicationError::Deleted`].
    pub fn check_active(&self) -> Result<(), ApplicationError> {
        match self.status {
            ApplicationStatus::Draft => Err(ApplicationError::NotCreated),
            ApplicationStatus::Active => Ok(()),
            ApplicationStatus::Deleted => Err(ApplicationError::Deleted),
        }
    }

    /// The application's own rule for adding `product` (it exists, is not deleted and
    /// does not use the product yet): the events to record, or why not. The
    /// `AddApiProduct` command and the [`AddProductToApplication`](crate::products::AddProductToApplication)
    /// decision both apply it, so the rule lives here once.
    ///
    /// # Errors
    ///
    /// Why the application refuses.
    pub fn add_api_product(
        &self,
        product: &str,
    ) -> Result<Vec<ApplicationEvent>, ApplicationError> {
        self.check_active()?;
        let product = required(product, ApplicationError::ProductNameRequired)?;
        if self.products.contains(&product) {
            return Err(ApplicationError::ProductAlreadyAdded { product });
        }
        Ok(vec![ApplicationEvent::ApiProductAdded { product }])
    }

    /// The application's own rule for removing `product` (it exists, is not deleted and
    /// uses the product), as [`Application::add_api_product`] is for adding.
    ///
    /// # Errors
    ///
    /// Why the application refuses.
    pub fn remove_api_product(
        &self,
        product: &str,
    ) -> Result<Vec<ApplicationEvent>, ApplicationError> {
        self.check_active()?;
        let product = product.trim().to_owned();
        if !self.products.contains(&product) {
            return Err(ApplicationError::ProductNotAdded { product });
        }
        Ok(vec![ApplicationEvent::ApiProductRemoved {
            product,
            owner: self.owner.clone(),
        }])
    }

    /// Decides a command for an application that exists and is not deleted.
    fn decide(
        &self,
        command: ApplicationCommand,
        services: &PortalServices,
    ) -> Result<Vec<ApplicationEvent>, ApplicationError> {
        match command {
            ApplicationCommand::Create { .. } => Err(ApplicationError::AlreadyCreated),
            ApplicationCommand::AddApiProduct { product } => self.add_api_product(&product),
            ApplicationCommand::RemoveApiProduct { product } => self.remove_api_product(&product),
            ApplicationCommand::ChangeOwner { owner } => {
                let owner = required(&owner, ApplicationError::OwnerRequired)?;
                if owner == self.owner {
                    return Err(ApplicationError::SameOwner { owner });
                }
                Ok(vec![ApplicationEvent::OwnerChanged {
                    from: self.owner.clone(),
                    to: owner,
                }])
            }
            ApplicationCommand::GenerateCredentials { valid_for_days } => {
                if self.products.is_empty() {
                    return Err(ApplicationError::NoApiProducts);
                }
                if valid_for_days == 0 || valid_for_days > MAX_VALIDITY_DAYS {
                    return Err(ApplicationError::InvalidValidity {
                        days: valid_for_days,
                    });
                }
                let key = services.new_key();
                if self.credentials.contains_key(&key) {
                    return Err(ApplicationError::KeyInUse { key });
                }
                let issued_at = services.now();
                Ok(vec![ApplicationEvent::CredentialsGenerated {
                    key,
                    issued_at,
                    expires_at: issued_at + TimeDelta::days(i64::from(valid_for_days)),
                }])
            }
            ApplicationCommand::ExpireCredentials { key } => {
                let Some(credential) = self.credentials.get(&key) else {
                    return Err(ApplicationError::UnknownCredentials { key });
                };
                if !credential.is_active() {
                    return Err(ApplicationError::CredentialsAlreadyExpired { key });
                }
                let now = services.now();
                if now < credential.expires_at {
                    return Err(ApplicationError::CredentialsNotDue {
                        key,
                        expires_at: credential.expires_at,
                    });
                }
                Ok(vec![ApplicationEvent::CredentialsExpired {
                    key,
                    expired_at: now,
                }])
            }
            ApplicationCommand::Delete => Ok(vec![ApplicationEvent::Deleted]),
        }
    }
}

/// `text` trimmed, or `missing` if nothing is left.
fn required(text: &str, missing: ApplicationError) -> Result<String, ApplicationError> {
    let text = text.trim();
    if text.is_empty() {
        Err(missing)
    } else {
        Ok(text.to_owned())
    }
}

impl Aggregate for Application {
    async fn handle(
        &self,
        command: ApplicationCommand,
        services: &PortalServices,
    ) -> Result<Vec<ApplicationEvent>, ApplicationError> {
        match (self.status, command) {
            (ApplicationStatus::Draft, ApplicationCommand::Create { name, owner }) => {
                let name = required(&name, ApplicationError::NameRequired)?;
                let owner = required(&owner, ApplicationError::OwnerRequired)?;
                Ok(vec![ApplicationEvent::Created { name, owner }])
            }
            (ApplicationStatus::Draft, _) => Err(ApplicationError::NotCreated),
            (ApplicationStatus::Active, command) => self.decide(command, services),
            (ApplicationStatus::Deleted, ApplicationCommand::Delete) => {
                Err(ApplicationError::AlreadyDeleted)
            }
            (ApplicationStatus::Deleted, _) => Err(ApplicationError::Deleted),
        }
    }

    fn apply(&mut self, event: &ApplicationEvent) {
        match event {
            ApplicationEvent::Created { name, owner } => {
                self.status = ApplicationStatus::Active;
                self.name.clone_from(name);
                self.owner.clone_from(owner);
            }
            ApplicationEvent::ApiProductAdded { product } => {
                self.products.insert(product.clone());
            }
            ApplicationEvent::ApiProductRemoved { product, .. } => {
                self.products.remove(product);
            }
            ApplicationEvent::OwnerChanged { to, .. } => self.owner.clone_from(to),
            ApplicationEvent::CredentialsGenerated {
                key,
                issued_at,
                expires_at,
            } => {
                self.credentials.insert(
                    key.clone(),
                    Credential {
                        issued_at: *issued_at,
                        expires_at: *expires_at,
                        expired_at: None,
                    },
                );
            }
            ApplicationEvent::CredentialsExpired { key, expired_at } => {
                if let Some(credential) = self.credentials.get_mut(key) {
                    credential.expired_at = Some(*expired_at);
                }
            }
            ApplicationEvent::Deleted => self.status = ApplicationStatus::Deleted,
        }
    }
}
