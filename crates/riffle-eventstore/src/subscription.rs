//! [`Subscription`]: the events a filter admits from a position, first those already in the
//! store, then new ones as they become durable.

use crate::{EventStore, Filter, RecordedEvent, StoreError};
use std::time::Duration;

/// A subscription: call [`Subscription::next_batch`] in a loop; store
/// [`Subscription::position`] to resume after a restart.
pub struct Subscription {
    store: EventStore,
    filter: Filter,
    next: u64,
}

impl Subscription {
    pub(crate) fn new(store: EventStore, filter: Filter, from: u64) -> Subscription {
        Subscription {
            store,
            filter,
            next: from,
        }
    }

    /// Up to `max` next events; waits up to `timeout` for one when there is none yet (an empty
    /// batch then). A subscription to one stream that was deleted returns its events up to its
    /// tombstone, then [`StoreError::StreamDeleted`].
    ///
    /// Catch-up and live are one loop: read what the filter admits from the position, and
    /// when there is nothing, wait for the head to pass the position the read looked up to.
    /// The read reports that position under the same lock as the events it found, so an event
    /// that becomes durable between the read and the wait is read on the next turn: nothing
    /// is skipped, nothing is returned twice.
    pub fn next_batch(&mut self, max: usize, timeout: Duration) -> Result<Vec<RecordedEvent>, StoreError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            self.store.refresh()?;
            let (events, next) = self.store.read_from(&self.filter, self.next, max.max(1))?;
            self.next = next;
            if !events.is_empty() {
                return Ok(events);
            }
            // A deleted stream has nothing more to come: its tombstone was the last event.
            if let Filter::Stream(stream) = &self.filter {
                if self.store.stream_version(stream).1 {
                    return Err(StoreError::StreamDeleted { stream: stream.clone() });
                }
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Ok(events);
            }
            // `next` is the head the read saw: wait until an event at `next` exists.
            self.store.wait_beyond(next, deadline - now);
            if std::time::Instant::now() >= deadline && self.store.head() <= next {
                return Ok(Vec::new());
            }
        }
    }

    /// The filter the subscription reads.
    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    /// The global position from which the subscription reads next: every event the filter
    /// admits below it was returned.
    pub fn position(&self) -> u64 {
        self.next
    }
}
