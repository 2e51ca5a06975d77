//! A small bank-account domain for tests: an aggregate, its events, commands and errors.
//!
//! Its events have a history, as a long-lived system's do, so that the stores can prove
//! they upcast old events on every read path:
//!
//! | today | stored as | steps |
//! |---|---|---|
//! | `Opened` v3 `{owner}` | v1 `{name}`, v2 `{holder}` | v1→v2 renames a field (JSON), v2→v3 converts [`OpenedV2`] (typed) |
//! | `Deposited` v2 `{amount}` | v1 `Credited {cents}` | the old name is an alias; v1→v2 renames a field |

use es_core::{Aggregate, DomainEvent, RawEvent, UpcastError};
use serde::{Deserialize, Serialize};

/// Something that happened to an account.
#[derive(Debug, Clone, PartialEq, DomainEvent)]
pub enum AccountEvent {
    /// The account was opened.
    #[event(
        version = 3,
        upcast(from = 1, with = opened_v1_to_v2),
        upcast(from = 2, typed = OpenedV2)
    )]
    Opened {
        /// Its owner.
        owner: String,
    },
    /// Money came in.
    #[event(version = 2, alias = "Credited", upcast(from = 1, with = deposited_v1_to_v2))]
    Deposited {
        /// How much, in cents.
        amount: u64,
    },
    /// Money went out.
    Withdrawn {
        /// How much, in cents.
        amount: u64,
    },
    /// The account was closed.
    Closed,
}

/// `Opened` version 1 called the owner `name`; version 2 called it `holder`.
fn opened_v1_to_v2(event: RawEvent) -> Result<RawEvent, UpcastError> {
    Ok(event.rename_field("name", "holder")?.with_version(2))
}

/// `Opened` as version 2 stored it.
#[derive(Debug, Deserialize)]
pub struct OpenedV2 {
    /// The owner.
    pub holder: String,
}

impl From<OpenedV2> for AccountEvent {
    fn from(old: OpenedV2) -> Self {
        Self::Opened { owner: old.holder }
    }
}

/// `Deposited` version 1 was stored as `Credited`, with the amount in `cents`.
fn deposited_v1_to_v2(event: RawEvent) -> Result<RawEvent, UpcastError> {
    Ok(event.rename_field("cents", "amount")?.with_version(2))
}

/// What can be asked of an account.
#[derive(Debug, Clone, PartialEq)]
pub enum AccountCommand {
    /// Open it.
    Open {
        /// Its owner.
        owner: String,
    },
    /// Put money in.
    Deposit {
        /// How much, in cents.
        amount: u64,
    },
    /// Take money out.
    Withdraw {
        /// How much, in cents.
        amount: u64,
    },
    /// Close it.
    Close,
}

/// Why an account refuses a command.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AccountError {
    /// It is already open.
    #[error("the account is already open")]
    AlreadyOpen,
    /// It is not open.
    #[error("the account is not open")]
    NotOpen,
    /// It holds less than asked for.
    #[error("insufficient funds: balance {balance}, requested {requested}")]
    InsufficientFunds {
        /// What it holds.
        balance: u64,
        /// What was asked for.
        requested: u64,
    },
    /// Zero is not an amount.
    #[error("the amount must be positive")]
    ZeroAmount,
}

/// A bank account.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, es_core::AggregateType)]
#[aggregate(
    name = "account",
    command = AccountCommand,
    event = AccountEvent,
    error = AccountError
)]
pub struct Account {
    /// Its owner, once opened.
    pub owner: Option<String>,
    /// Whether it is open.
    pub open: bool,
    /// Its balance in cents.
    pub balance: u64,
    /// How many deposits and withdrawals it saw.
    pub movements: u64,
}

impl Aggregate for Account {
    async fn handle(
        &self,
        command: AccountCommand,
        _services: &(),
    ) -> Result<Vec<AccountEvent>, AccountError> {
        match command {
            AccountCommand::Open { .. } if self.open => Err(AccountError::AlreadyOpen),
            AccountCommand::Open { owner } => Ok(vec![AccountEvent::Opened { owner }]),
            _ if !self.open => Err(AccountError::NotOpen),
            AccountCommand::Deposit { amount: 0 } | AccountCommand::Withdraw { amount: 0 } => {
                Err(AccountError::ZeroAmount)
            }
            AccountCommand::Deposit { amount } => Ok(vec![AccountEvent::Deposited { amount }]),
            AccountCommand::Withdraw { amount } if amount > self.balance => {
                Err(AccountError::InsufficientFunds {
                    balance: self.balance,
                    requested: amount,
                })
            }
            AccountCommand::Withdraw { amount } => Ok(vec![AccountEvent::Withdrawn { amount }]),
            AccountCommand::Close => Ok(vec![AccountEvent::Closed]),
        }
    }

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { owner } => {
                self.owner = Some(owner.clone());
                self.open = true;
            }
            AccountEvent::Deposited { amount } => {
                self.balance += amount;
                self.movements += 1;
            }
            AccountEvent::Withdrawn { amount } => {
                self.balance -= amount;
                self.movements += 1;
            }
            AccountEvent::Closed => self.open = false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use es_core::testing::{AggregateTestExt, EventTestExt};
    use serde_json::json;

    #[test]
    fn every_stored_shape_of_opened_upcasts() {
        let ada = AccountEvent::Opened {
            owner: "ada".into(),
        };
        AccountEvent::stored("Opened", 1, json!({ "name": "ada" })).upcasts_to(ada.clone());
        AccountEvent::stored("Opened", 2, json!({ "holder": "ada" })).upcasts_to(ada.clone());
        AccountEvent::stored("Opened", 3, json!({ "owner": "ada" })).upcasts_to(ada);
    }

    #[test]
    fn credited_is_an_old_name_for_deposited() {
        AccountEvent::stored("Credited", 1, json!({ "cents": 5 }))
            .upcasts_to(AccountEvent::Deposited { amount: 5 });
    }

    #[test]
    fn a_version_from_the_future_is_refused() {
        let error = AccountEvent::stored("Deposited", 3, json!({ "amount": 5 })).fails();
        assert!(matches!(
            error,
            es_core::DecodeError::UnsupportedVersion {
                version: 3,
                supported: 2,
                ..
            }
        ));
    }

    #[test]
    #[should_panic(expected = "upcasts to another event")]
    fn the_upcast_helper_reports_a_wrong_result() {
        AccountEvent::stored("Credited", 1, json!({ "cents": 5 }))
            .upcasts_to(AccountEvent::Deposited { amount: 6 });
    }

    #[test]
    #[should_panic(expected = "does not upcast")]
    fn the_upcast_helper_reports_a_missing_path() {
        AccountEvent::stored("Credited", 2, json!({ "cents": 5 }))
            .upcasts_to(AccountEvent::Deposited { amount: 5 });
    }

    #[test]
    #[should_panic(expected = "was expected to fail")]
    fn the_upcast_helper_reports_an_unexpected_success() {
        let _ = AccountEvent::stored("Credited", 1, json!({ "cents": 5 })).fails();
    }

    #[test]
    fn rules_apply_to_histories_stored_by_older_versions() {
        Account::test()
            .given_stored([
                RawEvent::new("Opened", 1, json!({ "name": "ada" })),
                RawEvent::new("Credited", 1, json!({ "cents": 10 })),
            ])
            .when(AccountCommand::Withdraw { amount: 11 })
            .then_expect_error(AccountError::InsufficientFunds {
                balance: 10,
                requested: 11,
            });
    }

    #[test]
    #[should_panic(expected = "given event 2 (`Credited` v7) does not upcast")]
    fn a_stored_history_that_does_not_upcast_fails_the_test() {
        let _ = Account::test().given_stored([
            RawEvent::new("Opened", 3, json!({ "owner": "ada" })),
            RawEvent::new("Credited", 7, json!({})),
        ]);
    }

    #[test]
    fn opens_once() {
        Account::test()
            .given([AccountEvent::Opened {
                owner: "ada".into(),
            }])
            .when(AccountCommand::Open {
                owner: "bob".into(),
            })
            .then_expect_error(AccountError::AlreadyOpen);
    }

    #[test]
    fn withdraws_only_what_it_holds() {
        Account::test()
            .given([
                AccountEvent::Opened {
                    owner: "ada".into(),
                },
                AccountEvent::Deposited { amount: 10 },
            ])
            .when(AccountCommand::Withdraw { amount: 11 })
            .then_expect_error(AccountError::InsufficientFunds {
                balance: 10,
                requested: 11,
            });
    }

    #[test]
    fn deposits() {
        Account::test()
            .given([AccountEvent::Opened {
                owner: "ada".into(),
            }])
            .when(AccountCommand::Deposit { amount: 5 })
            .then_expect_events([AccountEvent::Deposited { amount: 5 }]);
    }
}

/// An event JSON cannot encode (a map with tuple keys): stores must refuse it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
pub struct Tallied {
    /// Counts by pair; serde_json has no way to write tuple keys.
    pub counts: std::collections::BTreeMap<(u8, u8), u32>,
}

/// A measurement: a float payload, which JSON cannot hold when it is NaN or infinite
/// (serde_json writes `null`), so such an event would never read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
pub struct Measured {
    /// The reading.
    pub value: f64,
}
