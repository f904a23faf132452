//! The account aggregate: its events, its commands and the rules that decide them.

use riffle_eventstore::cqrs::Aggregate;
use serde::{Deserialize, Serialize};
use std::fmt;

/// An account's state, as its events made it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Whether it was opened.
    pub open: bool,
    /// Its owner.
    pub owner: String,
    /// Its balance in cents; never below zero.
    pub balance: i64,
}

/// What happens to an account. Amounts are in cents; `transfer` names the transfer that
/// moved the money, if one did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum AccountEvent {
    /// The account was opened.
    Opened {
        /// Its owner.
        owner: String,
    },
    /// Money came in.
    Deposited {
        /// Cents.
        amount: i64,
        /// The transfer, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transfer: Option<String>,
    },
    /// Money went out.
    Withdrawn {
        /// Cents.
        amount: i64,
        /// The transfer, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transfer: Option<String>,
    },
}

/// What a client asks of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountCommand {
    /// Open it for `owner`.
    Open {
        /// The owner.
        owner: String,
    },
    /// Put `amount` cents in.
    Deposit {
        /// Cents, more than 0.
        amount: i64,
        /// The transfer, if any.
        transfer: Option<String>,
    },
    /// Take `amount` cents out.
    Withdraw {
        /// Cents, more than 0.
        amount: i64,
        /// The transfer, if any.
        transfer: Option<String>,
    },
}

/// Why an account refused a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum AccountRejection {
    /// It is open already.
    AlreadyOpen,
    /// It was never opened.
    NotOpen,
    /// The amount is zero or negative.
    NotPositive {
        /// The amount given.
        amount: i64,
    },
    /// The balance is less than the withdrawal.
    InsufficientFunds {
        /// The balance.
        balance: i64,
        /// The withdrawal.
        amount: i64,
    },
}

impl fmt::Display for AccountRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccountRejection::AlreadyOpen => f.write_str("the account is open already"),
            AccountRejection::NotOpen => f.write_str("the account is not open"),
            AccountRejection::NotPositive { amount } => write!(f, "the amount must be more than 0, not {amount}"),
            AccountRejection::InsufficientFunds { balance, amount } => {
                write!(f, "the balance {balance} is less than {amount}")
            }
        }
    }
}

impl Aggregate for Account {
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Rejection = AccountRejection;
    const CATEGORY: &'static str = "account";

    fn decide(&self, command: &AccountCommand) -> Result<Vec<AccountEvent>, AccountRejection> {
        match command {
            AccountCommand::Open { owner } => {
                if self.open {
                    return Err(AccountRejection::AlreadyOpen);
                }
                Ok(vec![AccountEvent::Opened { owner: owner.clone() }])
            }
            AccountCommand::Deposit { amount, transfer } => {
                self.check(*amount)?;
                Ok(vec![AccountEvent::Deposited {
                    amount: *amount,
                    transfer: transfer.clone(),
                }])
            }
            AccountCommand::Withdraw { amount, transfer } => {
                self.check(*amount)?;
                if self.balance < *amount {
                    return Err(AccountRejection::InsufficientFunds {
                        balance: self.balance,
                        amount: *amount,
                    });
                }
                Ok(vec![AccountEvent::Withdrawn {
                    amount: *amount,
                    transfer: transfer.clone(),
                }])
            }
        }
    }

    fn evolve(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { owner } => {
                self.open = true;
                self.owner = owner.clone();
            }
            AccountEvent::Deposited { amount, .. } => self.balance += amount,
            AccountEvent::Withdrawn { amount, .. } => self.balance -= amount,
        }
    }
}

impl Account {
    fn check(&self, amount: i64) -> Result<(), AccountRejection> {
        if !self.open {
            return Err(AccountRejection::NotOpen);
        }
        if amount <= 0 {
            return Err(AccountRejection::NotPositive { amount });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules() {
        let mut a = Account::default();
        let deposit = AccountCommand::Deposit {
            amount: 5,
            transfer: None,
        };
        assert_eq!(a.decide(&deposit), Err(AccountRejection::NotOpen));
        for e in a.decide(&AccountCommand::Open { owner: "ann".into() }).unwrap() {
            a.evolve(&e);
        }
        assert_eq!(
            a.decide(&AccountCommand::Open { owner: "bob".into() }),
            Err(AccountRejection::AlreadyOpen)
        );
        for e in a.decide(&deposit).unwrap() {
            a.evolve(&e);
        }
        let too_much = AccountCommand::Withdraw {
            amount: 6,
            transfer: None,
        };
        assert_eq!(
            a.decide(&too_much),
            Err(AccountRejection::InsufficientFunds { balance: 5, amount: 6 })
        );
        let zero = AccountCommand::Withdraw {
            amount: 0,
            transfer: None,
        };
        assert_eq!(a.decide(&zero), Err(AccountRejection::NotPositive { amount: 0 }));
        assert_eq!(a.balance, 5);
    }
}
