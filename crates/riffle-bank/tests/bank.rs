//! The bank's write side under concurrency: no balance below zero, no money made or lost,
//! transfers that complete or refund, and a transfer interrupted between its steps that is
//! resumed without moving money twice.

use riffle_bank::account::{Account, AccountCommand, AccountEvent};
use riffle_bank::transfer::{Stage, Transfer, TransferCommand, TransferRequest, Transfers};
use riffle_eventstore::cqrs::{decode_event, CommandError, CommandHandler};
use riffle_eventstore::{Direction, EventStore, Filter};
use std::collections::HashMap;
use std::sync::{Arc, Barrier};

fn open(h: &CommandHandler<Account>, id: &str, deposit: i64) {
    h.handle(id, &AccountCommand::Open { owner: id.to_string() }, None)
        .expect("opened");
    if deposit == 0 {
        return;
    }
    h.handle(
        id,
        &AccountCommand::Deposit {
            amount: deposit,
            transfer: None,
        },
        None,
    )
    .expect("deposited");
}

/// Replays every account stream, checking that no balance ever went below zero; returns the
/// balances.
fn replay(store: &EventStore) -> HashMap<String, i64> {
    let mut balances: HashMap<String, i64> = HashMap::new();
    for e in store
        .read(&Filter::Category("account".into()), 0, usize::MAX)
        .expect("read")
    {
        let event: AccountEvent = decode_event(&e).expect("an account event");
        let b = balances.entry(e.stream.clone()).or_default();
        match event {
            AccountEvent::Deposited { amount, .. } => *b += amount,
            AccountEvent::Withdrawn { amount, .. } => *b -= amount,
            AccountEvent::Opened { .. } => {}
        }
        assert!(*b >= 0, "{} went to {b} at version {}", e.stream, e.version);
    }
    balances
}

#[test]
fn concurrent_withdrawals_and_transfers_keep_every_balance_at_or_above_zero() {
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(dir.path()).unwrap();
    let accounts = CommandHandler::<Account>::new(store.clone()).snapshot_every(7);
    let names: Vec<String> = (0..4).map(|i| format!("a{i}")).collect();
    for n in &names {
        open(&accounts, n, 1000);
    }
    let threads = 8;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = store.clone();
            let names = names.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let accounts = CommandHandler::<Account>::new(store.clone()).snapshot_every(7);
                let transfers = Transfers::new(store);
                barrier.wait();
                let mut withdrawn = 0i64;
                for i in 0..60usize {
                    let from = &names[(t + i) % 4];
                    let to = &names[(t + 2 * i + 1) % 4];
                    let amount = 37 + ((t * 31 + i * 17) % 300) as i64;
                    if i % 3 == 0 {
                        match accounts.handle(from, &AccountCommand::Withdraw { amount, transfer: None }, None) {
                            Ok(_) => withdrawn += amount,
                            Err(CommandError::Rejected(_)) => {}
                            Err(e) => panic!("{e}"),
                        }
                    } else if from != to {
                        let request = TransferRequest {
                            from: from.clone(),
                            // Every fifth transfer goes to an account that does not exist, and is refunded.
                            to: if i % 5 == 0 { "nobody".into() } else { to.clone() },
                            amount,
                        };
                        let outcome = transfers.transfer(&format!("t{t}-{i}"), request).unwrap();
                        if i % 5 == 0 {
                            assert_eq!(outcome.status, "failed");
                        }
                    }
                }
                withdrawn
            })
        })
        .collect();
    let withdrawn: i64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let balances = replay(&store);
    // Transfers move money, refunds bring it back: only withdrawals take it out.
    assert_eq!(balances.values().sum::<i64>(), 4000 - withdrawn);
    assert!(withdrawn > 0);
    // The aggregates (from snapshots and events) agree with the replay.
    for n in &names {
        let (state, _, _) = accounts.load(n).unwrap();
        assert_eq!(state.balance, balances[&format!("account-{n}")]);
    }
    let ended = store
        .read(&Filter::Category("transfer".into()), 0, usize::MAX)
        .unwrap()
        .iter()
        .filter(|e| e.event_type == "Completed" || e.event_type == "Failed")
        .count();
    assert!(ended > 0);
}

#[test]
fn a_transfer_interrupted_after_its_debit_is_resumed_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(dir.path()).unwrap();
    let accounts = CommandHandler::<Account>::new(store.clone());
    open(&accounts, "x", 500);
    open(&accounts, "y", 0);
    let transfers = Transfers::new(store.clone());
    // A transfer that crashed between its steps: requested, and the debit written, but not
    // recorded in the transfer's stream (the crash came just after the withdrawal).
    let request = TransferRequest {
        from: "x".into(),
        to: "y".into(),
        amount: 200,
    };
    let handler = CommandHandler::<Transfer>::new(store.clone());
    handler
        .handle(
            "t1",
            &TransferCommand::Request(request.clone()),
            Some(riffle_bank::name_id("transfer/t1/request/x/y/200")),
        )
        .unwrap();
    accounts
        .handle(
            "x",
            &AccountCommand::Withdraw {
                amount: 200,
                transfer: Some("t1".into()),
            },
            Some(riffle_bank::name_id("transfer/t1/withdraw")),
        )
        .unwrap();
    assert_eq!(transfers.resume_all().unwrap(), 1);
    assert_eq!(transfers.resume_all().unwrap(), 0);
    let balances = replay(&store);
    assert_eq!((balances["account-x"], balances["account-y"]), (300, 200));
    // A client retrying the same transfer gets the same outcome and moves nothing.
    let again = transfers.transfer("t1", request).unwrap();
    assert_eq!(again.status, "completed");
    assert_eq!(replay(&store), balances);
    let (t, _, _) = handler.load("t1").unwrap();
    assert_eq!(t.stage, Stage::Completed);
    // The same transfer id for another transfer is refused.
    let other = TransferRequest {
        from: "y".into(),
        to: "x".into(),
        amount: 1,
    };
    assert!(matches!(
        transfers.transfer("t1", other),
        Err(CommandError::Rejected(_))
    ));
    let x = store.read_stream("account-x", 0, Direction::Forward, 100).unwrap();
    assert_eq!(x.len(), 3, "opened, deposited, one withdrawal");
}

#[test]
fn a_retried_command_with_its_id_moves_money_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(dir.path()).unwrap();
    let accounts = CommandHandler::<Account>::new(store.clone());
    open(&accounts, "z", 100);
    let id = riffle_eventstore::Uuid::new_v4();
    let withdraw = AccountCommand::Withdraw {
        amount: 80,
        transfer: None,
    };
    let first = accounts.handle("z", &withdraw, Some(id)).unwrap();
    // The retry would be refused against the new balance (20 < 80): it is recognised instead.
    let retry = accounts.handle("z", &withdraw, Some(id)).unwrap();
    assert_eq!(retry.append.unwrap().position, first.append.unwrap().position);
    assert!(retry.append.unwrap().already_written);
    assert_eq!(replay(&store)["account-z"], 20);
}
