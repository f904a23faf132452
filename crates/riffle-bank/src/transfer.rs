//! Transfers: a process manager over two accounts.
//!
//! A transfer is its own stream (`transfer-<id>`) that records how far it got: requested,
//! debited (the money left the source account), then completed, or failed (refused at the
//! source, or refused at the destination and refunded). [`Transfers::run`] carries a transfer
//! from wherever its stream says it is to its end; every step it takes on an account is a
//! command whose id is derived from the transfer's id and the step, so running a transfer
//! again (a client's retry, or [`Transfers::resume_all`] after a crash between two steps)
//! never withdraws or deposits twice.

use crate::account::{Account, AccountCommand};
use crate::name_id;
use riffle_eventstore::cqrs::{Aggregate, CommandError, CommandHandler};
use riffle_eventstore::{EventStore, Filter, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A transfer's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// What was asked, once requested.
    pub request: Option<TransferRequest>,
    /// Where it is.
    pub stage: Stage,
}

/// What a transfer moves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRequest {
    /// The account the money leaves.
    pub from: String,
    /// The account it goes to.
    pub to: String,
    /// Cents.
    pub amount: i64,
}

/// How far a transfer got.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum Stage {
    /// Not requested.
    #[default]
    None,
    /// Requested; nothing moved yet.
    Requested,
    /// The money left the source account.
    Debited,
    /// The money reached the destination.
    Completed,
    /// It did not happen (the money, if it left, was refunded).
    Failed {
        /// Why.
        reason: String,
        /// Whether the source account was debited and then refunded.
        refunded: bool,
    },
}

/// What happens to a transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum TransferEvent {
    /// It was asked for.
    Requested(TransferRequest),
    /// The source account was debited.
    Debited,
    /// The destination account was credited.
    Completed,
    /// It failed.
    Failed {
        /// Why.
        reason: String,
        /// Whether the source account had been debited and was refunded.
        refunded: bool,
    },
}

/// What the process manager records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferCommand {
    /// Start it.
    Request(TransferRequest),
    /// Record the debit.
    RecordDebit,
    /// Record the credit.
    RecordCompletion,
    /// Record the failure.
    RecordFailure {
        /// Why.
        reason: String,
        /// Whether a refund was made.
        refunded: bool,
    },
}

/// Why a transfer command was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TransferRejection(pub String);

impl std::fmt::Display for TransferRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Aggregate for Transfer {
    type Command = TransferCommand;
    type Event = TransferEvent;
    type Rejection = TransferRejection;
    const CATEGORY: &'static str = "transfer";

    fn decide(&self, command: &TransferCommand) -> Result<Vec<TransferEvent>, TransferRejection> {
        use Stage::*;
        Ok(match (command, &self.stage) {
            (TransferCommand::Request(r), None) => {
                if r.amount <= 0 {
                    return Err(TransferRejection(format!(
                        "the amount must be more than 0, not {}",
                        r.amount
                    )));
                }
                if r.from == r.to {
                    return Err(TransferRejection("a transfer needs two different accounts".into()));
                }
                vec![TransferEvent::Requested(r.clone())]
            }
            (TransferCommand::Request(r), _) if self.request.as_ref() == Some(r) => vec![],
            (TransferCommand::Request(_), _) => {
                return Err(TransferRejection(
                    "this transfer id was used for another transfer".into(),
                ))
            }
            (TransferCommand::RecordDebit, Requested) => vec![TransferEvent::Debited],
            (TransferCommand::RecordCompletion, Debited) => vec![TransferEvent::Completed],
            (TransferCommand::RecordFailure { reason, refunded }, Requested | Debited) => vec![TransferEvent::Failed {
                reason: reason.clone(),
                refunded: *refunded,
            }],
            // A step recorded already (a resumed transfer): nothing to add.
            (_, Completed | Failed { .. }) | (TransferCommand::RecordDebit, Debited) => vec![],
            (c, s) => return Err(TransferRejection(format!("cannot {c:?} a transfer at stage {s:?}"))),
        })
    }

    fn evolve(&mut self, event: &TransferEvent) {
        match event {
            TransferEvent::Requested(r) => {
                self.request = Some(r.clone());
                self.stage = Stage::Requested;
            }
            TransferEvent::Debited => self.stage = Stage::Debited,
            TransferEvent::Completed => self.stage = Stage::Completed,
            TransferEvent::Failed { reason, refunded } => {
                self.stage = Stage::Failed {
                    reason: reason.clone(),
                    refunded: *refunded,
                }
            }
        }
    }
}

/// How a transfer ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TransferOutcome {
    /// The transfer's id.
    pub transfer: String,
    /// `completed` or `failed`.
    pub status: &'static str,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Whether the source account was refunded.
    pub refunded: bool,
    /// The highest store position of the transfer's events (its account events and its own):
    /// a query with this `min_position` sees the transfer's effect.
    pub position: u64,
}

/// Runs transfers on a store.
pub struct Transfers {
    accounts: CommandHandler<Account>,
    transfers: CommandHandler<Transfer>,
}

/// Why a transfer could not be run to its end (a refusal is an outcome, not an error).
pub type TransferError = CommandError<TransferRejection>;

fn store_err<R>(e: CommandError<R>) -> TransferError
where
    R: std::fmt::Display,
{
    match e {
        CommandError::Rejected(r) => CommandError::Rejected(TransferRejection(r.to_string())),
        CommandError::Store(s) => CommandError::Store(s),
        CommandError::Decode(d) => CommandError::Decode(d),
        CommandError::Contended { stream, attempts } => CommandError::Contended { stream, attempts },
    }
}

impl Transfers {
    /// Transfers on `store`.
    pub fn new(store: EventStore) -> Transfers {
        Transfers {
            accounts: CommandHandler::new(store.clone()),
            transfers: CommandHandler::new(store),
        }
    }

    /// Requests transfer `id` and runs it to its end. The same id and request again returns
    /// the same outcome and moves no money; the same id for another request is refused.
    pub fn transfer(&self, id: &str, request: TransferRequest) -> Result<TransferOutcome, TransferError> {
        // The request's id names what is requested, so that another request under the same
        // transfer id is not taken for a retry of the first.
        let request_id = name_id(&format!(
            "transfer/{id}/request/{}/{}/{}",
            request.from, request.to, request.amount
        ));
        self.transfers
            .handle(id, &TransferCommand::Request(request), Some(request_id))?;
        self.run(id)
    }

    /// Carries transfer `id` from where its stream says it is to its end.
    pub fn run(&self, id: &str) -> Result<TransferOutcome, TransferError> {
        let step_id = |step: &str| Some(name_id(&format!("transfer/{id}/{step}")));
        let mut position = 0u64;
        loop {
            let (state, _, _) = self.transfers.load(id)?;
            let Some(request) = state.request.clone() else {
                return Err(CommandError::Rejected(TransferRejection(format!("no transfer {id:?}"))));
            };
            let record = |command: TransferCommand, position: &mut u64| -> Result<(), TransferError> {
                let h = self.transfers.handle(id, &command, step_id(&format!("{command:?}")))?;
                if let Some(a) = h.append {
                    *position = (*position).max(a.position);
                }
                Ok(())
            };
            match state.stage {
                Stage::None => unreachable_stage(id)?,
                Stage::Requested => {
                    let withdraw = AccountCommand::Withdraw {
                        amount: request.amount,
                        transfer: Some(id.to_string()),
                    };
                    match self.accounts.handle(&request.from, &withdraw, step_id("withdraw")) {
                        Ok(h) => {
                            position = position.max(h.append.map_or(0, |a| a.position));
                            record(TransferCommand::RecordDebit, &mut position)?;
                        }
                        Err(CommandError::Rejected(r)) => record(
                            TransferCommand::RecordFailure {
                                reason: format!("account {}: {r}", request.from),
                                refunded: false,
                            },
                            &mut position,
                        )?,
                        Err(e) => return Err(store_err(e)),
                    }
                }
                Stage::Debited => {
                    let deposit = AccountCommand::Deposit {
                        amount: request.amount,
                        transfer: Some(id.to_string()),
                    };
                    match self.accounts.handle(&request.to, &deposit, step_id("deposit")) {
                        Ok(h) => {
                            position = position.max(h.append.map_or(0, |a| a.position));
                            record(TransferCommand::RecordCompletion, &mut position)?;
                        }
                        Err(CommandError::Rejected(r)) => {
                            // Compensate: the money goes back where it came from.
                            let refund = AccountCommand::Deposit {
                                amount: request.amount,
                                transfer: Some(id.to_string()),
                            };
                            let h = self
                                .accounts
                                .handle(&request.from, &refund, step_id("refund"))
                                .map_err(store_err)?;
                            position = position.max(h.append.map_or(0, |a| a.position));
                            record(
                                TransferCommand::RecordFailure {
                                    reason: format!("account {}: {r}", request.to),
                                    refunded: true,
                                },
                                &mut position,
                            )?;
                        }
                        Err(e) => return Err(store_err(e)),
                    }
                }
                Stage::Completed => {
                    return Ok(TransferOutcome {
                        transfer: id.to_string(),
                        status: "completed",
                        reason: None,
                        refunded: false,
                        position: position.max(self.last_position(id)?),
                    })
                }
                Stage::Failed { reason, refunded } => {
                    return Ok(TransferOutcome {
                        transfer: id.to_string(),
                        status: "failed",
                        reason: Some(reason),
                        refunded,
                        position: position.max(self.last_position(id)?),
                    })
                }
            }
        }
    }

    fn last_position(&self, id: &str) -> Result<u64, TransferError> {
        let stream = riffle_eventstore::cqrs::stream_of::<Transfer>(id);
        let last = self
            .transfers
            .store()
            .read_stream(&stream, u64::MAX, riffle_eventstore::Direction::Backward, 1)
            .map_err(CommandError::Store)?;
        Ok(last.first().map_or(0, |e| e.position))
    }

    /// Runs every transfer that a crash left between two steps; returns how many.
    pub fn resume_all(&self) -> Result<usize, TransferError> {
        let store = self.transfers.store();
        let mut open: BTreeMap<String, bool> = BTreeMap::new();
        let mut from = 0;
        loop {
            let (events, next) = store
                .read_from(&Filter::Category(Transfer::CATEGORY.into()), from, 10_000)
                .map_err(CommandError::Store)?;
            if events.is_empty() {
                break;
            }
            for e in &events {
                let Some(id) = e.stream.strip_prefix("transfer-") else {
                    continue;
                };
                let done = matches!(e.event_type.as_str(), "Completed" | "Failed");
                open.insert(id.to_string(), !done);
            }
            from = next;
        }
        let mut resumed = 0;
        for (id, _) in open.into_iter().filter(|(_, o)| *o) {
            tracing::info!("resuming transfer {id}");
            self.run(&id)?;
            resumed += 1;
        }
        Ok(resumed)
    }
}

fn unreachable_stage(id: &str) -> Result<(), TransferError> {
    Err(CommandError::Store(StoreError::InvalidAppend {
        stream: format!("transfer-{id}"),
        reason: "a requested transfer has no stage".into(),
    }))
}
