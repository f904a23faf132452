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
    /// batch then).
    pub fn next_batch(&mut self, max: usize, timeout: Duration) -> Result<Vec<RecordedEvent>, StoreError> {
        let _ = (max, timeout, &self.store, &self.filter);
        todo!()
    }

    /// The global position from which the subscription reads next: every event the filter
    /// admits below it was returned.
    pub fn position(&self) -> u64 {
        self.next
    }
}
