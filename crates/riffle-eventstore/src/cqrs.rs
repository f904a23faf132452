//! The write side of CQRS on the store: an [`Aggregate`] decides a command against its state
//! and evolves its state by events; a [`CommandHandler`] loads the aggregate (snapshot, then the
//! events after it), decides, and appends the new events with the version it loaded as the
//! expected version, deciding again on a conflict.
//!
//! The expected version is what makes a rule such as "no balance below zero" hold under any
//! concurrency: two withdrawals decided against the same balance cannot both be appended,
//! because the second one's expected version is stale; it is decided again against the state
//! that includes the first.
//!
//! Commands can carry an id: the events they produce then take ids derived from it, so a client
//! that retries a command after a timeout gets the first outcome back instead of a second
//! withdrawal.
//!
//! ```
//! use riffle_eventstore::cqrs::{Aggregate, CommandHandler};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Default, Serialize, Deserialize)]
//! struct Counter { value: u32 }
//! #[derive(Serialize, Deserialize)]
//! #[serde(tag = "type", content = "data")]
//! enum Event { Added { n: u32 } }
//! enum Command { Add(u32) }
//!
//! impl Aggregate for Counter {
//!     type Command = Command;
//!     type Event = Event;
//!     type Rejection = String;
//!     const CATEGORY: &'static str = "counter";
//!     fn decide(&self, c: &Command) -> Result<Vec<Event>, String> {
//!         match c {
//!             Command::Add(n) if self.value + n > 10 => Err(format!("{} + {n} is more than 10", self.value)),
//!             Command::Add(n) => Ok(vec![Event::Added { n: *n }]),
//!         }
//!     }
//!     fn evolve(&mut self, e: &Event) {
//!         match e { Event::Added { n } => self.value += n }
//!     }
//! }
//!
//! let dir = tempfile::tempdir().unwrap();
//! let handler = CommandHandler::<Counter>::new(riffle_eventstore::EventStore::open(dir.path()).unwrap());
//! handler.handle("a", &Command::Add(4), None).unwrap();
//! let done = handler.handle("a", &Command::Add(5), None).unwrap();
//! assert_eq!(done.state.value, 9);
//! assert!(handler.handle("a", &Command::Add(5), None).is_err());
//! ```

use crate::{AppendResult, Direction, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StoreError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::marker::PhantomData;
use uuid::Uuid;

/// An aggregate: a consistency boundary whose events live in one stream,
/// `<CATEGORY>-<id>`.
///
/// Events are (de)serialised with serde as `{"type": ..., "data": ...}` (an enum with
/// `#[serde(tag = "type", content = "data")]`): the store's event type and data.
pub trait Aggregate: Default + Serialize + DeserializeOwned {
    /// What a client asks for.
    type Command;
    /// What happened; the only thing stored.
    type Event: Serialize + DeserializeOwned;
    /// Why a command was refused.
    type Rejection: fmt::Display;
    /// The category of the aggregate's streams.
    const CATEGORY: &'static str;
    /// The events `command` produces against this state, or why it is refused. Pure: no I/O.
    fn decide(&self, command: &Self::Command) -> Result<Vec<Self::Event>, Self::Rejection>;
    /// The state after `event`. Pure, and total: an event that happened cannot be refused.
    fn evolve(&mut self, event: &Self::Event);
}

/// The stream of aggregate `id` of `A`.
pub fn stream_of<A: Aggregate>(id: &str) -> String {
    format!("{}-{id}", A::CATEGORY)
}

/// An event as the store's type and data.
pub fn encode_event<E: Serialize>(event: &E) -> Result<NewEvent, String> {
    let value = serde_json::to_value(event).map_err(|e| format!("cannot serialise an event: {e}"))?;
    let serde_json::Value::Object(mut fields) = value else {
        return Err(
            "an event must serialise as {\"type\", \"data\"} (serde tag = \"type\", content = \"data\")".into(),
        );
    };
    let Some(serde_json::Value::String(event_type)) = fields.remove("type") else {
        return Err("an event must serialise with a string \"type\"".into());
    };
    let data = fields
        .remove("data")
        .unwrap_or(serde_json::Value::Object(Default::default()));
    Ok(NewEvent {
        id: None,
        event_type,
        data: data.to_string(),
        metadata: None,
    })
}

/// A recorded event as the aggregate's event type.
pub fn decode_event<E: DeserializeOwned>(event: &RecordedEvent) -> Result<E, String> {
    let event_type = serde_json::Value::String(event.event_type.clone());
    let text = format!("{{\"type\":{event_type},\"data\":{}}}", event.data);
    serde_json::from_str(&text)
        .or_else(|e| {
            // A unit variant is stored with empty data (`{}`) and read without it.
            if event.data.trim() == "{}" {
                serde_json::from_str(&format!("{{\"type\":{event_type}}}")).map_err(|_| e)
            } else {
                Err(e)
            }
        })
        .map_err(|e| {
            format!(
                "event {} of stream {:?} (version {}, type {:?}) is not an event of this aggregate: {e}",
                event.position, event.stream, event.version, event.event_type
            )
        })
}

/// Why a command was not carried out.
#[derive(Debug)]
pub enum CommandError<R> {
    /// The aggregate refused it: nothing was written.
    Rejected(R),
    /// The store failed (see [`StoreError`] for whether a retry helps).
    Store(StoreError),
    /// The stream holds an event the aggregate cannot read.
    Decode(String),
    /// Other writers won every attempt: nothing was written; try again later.
    Contended {
        /// The stream.
        stream: String,
        /// The attempts made.
        attempts: usize,
    },
}

impl<R: fmt::Display> fmt::Display for CommandError<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Rejected(r) => write!(f, "rejected: {r}"),
            CommandError::Store(e) => write!(f, "{e}"),
            CommandError::Decode(e) => write!(f, "{e}"),
            CommandError::Contended { stream, attempts } => write!(
                f,
                "stream {stream:?} changed under each of {attempts} attempts: nothing was written, try again"
            ),
        }
    }
}

impl<R: fmt::Debug + fmt::Display> std::error::Error for CommandError<R> {}

/// What a carried-out command did.
#[derive(Debug)]
pub struct Handled<A: Aggregate> {
    /// The aggregate's state after the command.
    pub state: A,
    /// The events appended (empty when the command changed nothing).
    pub events: Vec<A::Event>,
    /// Where they went; `None` when there were none. `position` is the one a query waits for
    /// to read its own write.
    pub append: Option<AppendResult>,
    /// The stream's version after the command (`None`: the stream has no event).
    pub version: Option<u64>,
}

/// Loads aggregates of type `A`, decides commands and appends their events.
pub struct CommandHandler<A> {
    store: EventStore,
    /// Save a snapshot when this many events followed the last one (0: never).
    snapshot_every: u64,
    max_attempts: usize,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A: Aggregate> CommandHandler<A> {
    /// A handler on `store` that snapshots every 100 events and tries a contended command up
    /// to 20 times.
    pub fn new(store: EventStore) -> Self {
        CommandHandler {
            store,
            snapshot_every: 100,
            max_attempts: 20,
            _aggregate: PhantomData,
        }
    }

    /// The same handler, snapshotting every `n` events (0: never).
    pub fn snapshot_every(mut self, n: u64) -> Self {
        self.snapshot_every = n;
        self
    }

    /// The store.
    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// Aggregate `id`'s state and its stream's version: from its snapshot, if any, then the
    /// events after it.
    pub fn load(&self, id: &str) -> Result<(A, Option<u64>, u64), CommandError<A::Rejection>> {
        let stream = stream_of::<A>(id);
        let (mut state, mut version, mut since_snapshot) = match self.store.load_snapshot(&stream) {
            Ok(Some(s)) => match serde_json::from_str::<A>(&s.state) {
                Ok(state) => (state, Some(s.version), 0),
                // A snapshot of an older shape of the state: replay from the start.
                Err(e) => {
                    tracing::warn!("ignoring the snapshot of {stream:?}: {e}");
                    (A::default(), None, 0)
                }
            },
            Ok(None) => (A::default(), None, 0),
            Err(e) => return Err(CommandError::Store(e)),
        };
        loop {
            let from = version.map_or(0, |v| v + 1);
            let events = self
                .store
                .read_stream(&stream, from, Direction::Forward, 1024)
                .map_err(CommandError::Store)?;
            if events.is_empty() {
                break;
            }
            for e in &events {
                let event: A::Event = decode_event(e).map_err(CommandError::Decode)?;
                state.evolve(&event);
                version = Some(e.version);
                since_snapshot += 1;
            }
        }
        Ok((state, version, since_snapshot))
    }

    /// Carries out `command` on aggregate `id`. With a `command_id`, the events take ids
    /// derived from it: the same command sent again returns the first outcome and writes
    /// nothing.
    pub fn handle(
        &self,
        id: &str,
        command: &A::Command,
        command_id: Option<Uuid>,
    ) -> Result<Handled<A>, CommandError<A::Rejection>> {
        let stream = stream_of::<A>(id);
        for _ in 0..self.max_attempts {
            let (mut state, version, since_snapshot) = self.load(id)?;
            let events = match state.decide(command) {
                Ok(events) => events,
                Err(rejection) => {
                    // A retried command whose first attempt was written is not refused
                    // against the state it produced: its events are there.
                    if let Some(found) = self.already_written(&stream, command_id)? {
                        return Ok(Handled {
                            state,
                            events: Vec::new(),
                            append: Some(found),
                            version,
                        });
                    }
                    return Err(CommandError::Rejected(rejection));
                }
            };
            if events.is_empty() {
                return Ok(Handled {
                    state,
                    events,
                    append: None,
                    version,
                });
            }
            let mut new_events = Vec::with_capacity(events.len());
            for (i, e) in events.iter().enumerate() {
                let mut n = encode_event(e).map_err(CommandError::Decode)?;
                n.id = command_id.map(|c| derived_id(c, i));
                new_events.push(n);
            }
            let expected = version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
            match self.store.append(&stream, expected, new_events) {
                Ok(result) => {
                    if result.already_written {
                        // A retry: the state loaded already includes the events.
                        return Ok(Handled {
                            state,
                            events: Vec::new(),
                            append: Some(result),
                            version: Some(result.last_version.max(version.unwrap_or(0))),
                        });
                    }
                    for e in &events {
                        state.evolve(e);
                    }
                    let since = since_snapshot + events.len() as u64;
                    if self.snapshot_every > 0 && since >= self.snapshot_every {
                        match serde_json::to_string(&state) {
                            Ok(s) => {
                                if let Err(e) = self.store.save_snapshot(&stream, result.last_version, &s) {
                                    tracing::warn!("cannot snapshot {stream:?}: {e}");
                                }
                            }
                            Err(e) => tracing::warn!("cannot serialise the state of {stream:?}: {e}"),
                        }
                    }
                    return Ok(Handled {
                        state,
                        events,
                        append: Some(result),
                        version: Some(result.last_version),
                    });
                }
                Err(StoreError::WrongExpectedVersion { .. }) => continue,
                Err(e) => return Err(CommandError::Store(e)),
            }
        }
        Err(CommandError::Contended {
            stream,
            attempts: self.max_attempts,
        })
    }

    /// The append of the events of `command_id` in `stream`, if they are there.
    fn already_written(
        &self,
        stream: &str,
        command_id: Option<Uuid>,
    ) -> Result<Option<AppendResult>, CommandError<A::Rejection>> {
        let Some(c) = command_id else { return Ok(None) };
        let first = derived_id(c, 0);
        // Recent commands are the likely retries: look back over the stream's last events.
        let recent = self
            .store
            .read_stream(stream, u64::MAX, Direction::Backward, 256)
            .map_err(CommandError::Store)?;
        let Some(at) = recent.iter().position(|e| e.id == first) else {
            return Ok(None);
        };
        let ours: Vec<&RecordedEvent> = recent[..=at]
            .iter()
            .rev()
            .enumerate()
            .take_while(|(i, e)| e.id == derived_id(c, *i))
            .map(|(_, e)| e)
            .collect();
        let (Some(f), Some(l)) = (ours.first(), ours.last()) else {
            return Ok(None);
        };
        Ok(Some(AppendResult {
            first_version: f.version,
            last_version: l.version,
            first_position: f.position,
            position: l.position,
            already_written: true,
        }))
    }
}

/// The id of the `i`th event of command `command`: the same for every attempt of a command.
pub fn derived_id(command: Uuid, i: usize) -> Uuid {
    Uuid::from_u128(command.as_u128() ^ (i as u128).rotate_left(64))
}
