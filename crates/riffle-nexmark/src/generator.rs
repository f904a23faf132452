//! The Nexmark event generator: the reference model of the `nexmark` crate (risingwavelabs'
//! port of the Java generator nexmark-flink runs), configured as nexmark-flink configures it,
//! and cut into splits that riffle's sources read in parallel.
//!
//! Event `n` is a person, an auction or a bid by `n mod 50` (1/3/46); its fields come from a
//! random generator seeded with its id, its time is `base_time + n / rate`. So any event can be
//! generated on its own: split `i` of `k` generates events `i, i + k, i + 2k, …` and every way
//! of splitting yields the same events. Hot auctions, bidders and sellers, in-flight auctions
//! and auction lengths follow the reference.
//!
//! The configuration departs from the crate's defaults where nexmark-flink's differ: the
//! rate (10 M events/s of event time, nexmark-flink's `tps`), a fixed base time instead of
//! the clock (the same configuration gives the same events), and capitalised names, cities
//! and states as in the Java generator (query 3 filters on `'OR'`, `'ID'`, `'CA'`).
//!
//! ```
//! use riffle_nexmark::generator::GeneratorConfig;
//! let config = GeneratorConfig::default();
//! let all: Vec<_> = config.split(0, 1, 100).collect();
//! let odd: Vec<_> = config.split(1, 2, 100).collect();
//! assert_eq!(all.len(), 100);
//! assert_eq!(odd, all.iter().skip(1).step_by(2).cloned().collect::<Vec<_>>());
//! ```

use nexmark::config::NexmarkConfig;
use nexmark::EventGenerator;

use crate::model::{Auction, Bid, Event, Millis, Person};

/// nexmark-flink's event rate (`nexmark.workload.suite.100m.tps`).
pub const DEFAULT_RATE: u64 = 10_000_000;
/// The default time of event 0: 2023-11-14T22:13:20Z, a multiple of every window size.
pub const DEFAULT_BASE_TIME: Millis = 1_700_000_000_000;
/// nexmark-flink's watermark delay: dateTime − 4 s.
pub const WATERMARK_DELAY_MS: i64 = 4_000;

/// What the generator generates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GeneratorConfig {
    /// Events per second of event time.
    pub rate: u64,
    /// Event time of event 0, unix milliseconds.
    pub base_time: Millis,
    /// Added to every event's id (the seed of its fields), as nexmark's `firstEventId`.
    pub first_event_id: u64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            rate: DEFAULT_RATE,
            base_time: DEFAULT_BASE_TIME,
            first_event_id: 0,
        }
    }
}

fn names(list: &str) -> Vec<String> {
    list.split(',').map(str::to_string).collect()
}

impl GeneratorConfig {
    /// The reference generator's configuration.
    fn nexmark(&self) -> NexmarkConfig {
        let rate = usize::try_from(self.rate.max(1)).unwrap_or(usize::MAX);
        NexmarkConfig {
            first_rate: rate,
            next_rate: rate,
            base_time: u64::try_from(self.base_time).unwrap_or(0),
            first_event_id: usize::try_from(self.first_event_id).unwrap_or(usize::MAX),
            us_states: names("AZ,CA,ID,OR,WA,WY"),
            us_cities: names("Phoenix,Los Angeles,San Francisco,Boise,Portland,Bend,Redmond,Seattle,Kent,Cheyenne"),
            first_names: names("Peter,Paul,Luke,John,Saul,Vicky,Kate,Julie,Sarah,Deiter,Walter"),
            last_names: names("Shultz,Abrams,Spencer,White,Bartels,Walton,Smith,Jones,Noris"),
            ..NexmarkConfig::default()
        }
    }

    /// Split `index` of `splits` of the first `events` events: events `index`, `index +
    /// splits`, … below `events`, in order (so in event-time order).
    pub fn split(&self, index: u64, splits: u64, events: u64) -> impl Iterator<Item = Event> {
        let splits = splits.max(1);
        let count = if index < events {
            (events - index).div_ceil(splits)
        } else {
            0
        };
        EventGenerator::new(self.nexmark())
            .with_offset(index)
            .with_step(splits)
            .take(usize::try_from(count).unwrap_or(usize::MAX))
            .map(convert)
    }
}

/// Field widths: the crate's `usize` and `u64` become the model's `u64` and unix millis.
fn convert(event: nexmark::event::Event) -> Event {
    use nexmark::event::Event as E;
    let millis = |t: u64| Millis::try_from(t).unwrap_or(Millis::MAX);
    match event {
        E::Person(p) => Event::Person(Person {
            id: p.id as u64,
            name: p.name,
            email_address: p.email_address,
            credit_card: p.credit_card,
            city: p.city,
            state: p.state,
            date_time: millis(p.date_time),
            extra: p.extra,
        }),
        E::Auction(a) => Event::Auction(Auction {
            id: a.id as u64,
            item_name: a.item_name,
            description: a.description,
            initial_bid: a.initial_bid as u64,
            reserve: a.reserve as u64,
            date_time: millis(a.date_time),
            expires: millis(a.expires),
            seller: a.seller as u64,
            category: a.category as u64,
            extra: a.extra,
        }),
        E::Bid(b) => Event::Bid(Bid {
            auction: b.auction as u64,
            bidder: b.bidder as u64,
            price: b.price as u64,
            channel: b.channel,
            url: b.url,
            date_time: millis(b.date_time),
            extra: b.extra,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proportions_are_one_three_forty_six_and_times_follow_the_rate() {
        let config = GeneratorConfig {
            rate: 1_000,
            ..GeneratorConfig::default()
        };
        let events: Vec<Event> = config.split(0, 1, 5_000).collect();
        let count = |f: fn(&Event) -> bool| events.iter().filter(|e| f(e)).count();
        assert_eq!(count(|e| matches!(e, Event::Person(_))), 100);
        assert_eq!(count(|e| matches!(e, Event::Auction(_))), 300);
        assert_eq!(count(|e| matches!(e, Event::Bid(_))), 4_600);
        // 1000 events per second: event n at base + n ms, in order.
        for (n, e) in events.iter().enumerate() {
            assert_eq!(e.date_time(), DEFAULT_BASE_TIME + n as i64);
        }
    }

    #[test]
    fn ids_are_dense_and_hot_items_dominate() {
        let events: Vec<Event> = GeneratorConfig::default().split(0, 1, 50_000).collect();
        let people: Vec<u64> = events
            .iter()
            .filter_map(|e| match e {
                Event::Person(p) => Some(p.id),
                _ => None,
            })
            .collect();
        assert_eq!(people, (1000..1000 + people.len() as u64).collect::<Vec<_>>());
        let mut per_auction = hashbrown::HashMap::new();
        let mut bids = 0;
        for e in &events {
            if let Event::Bid(b) = e {
                *per_auction.entry(b.auction).or_insert(0u64) += 1;
                bids += 1;
            }
        }
        // Half of the bids go to hot auctions (hot_auction_ratio 2): the top auction of each
        // batch of 100 draws far more than an even share.
        let top = per_auction.values().copied().max().unwrap_or(0);
        assert!(top * per_auction.len() as u64 > 10 * bids, "top {top} of {bids}");
        // States are the Java generator's.
        assert!(events.iter().any(|e| matches!(e, Event::Person(p) if p.state == "OR")));
    }

    #[test]
    fn the_same_configuration_gives_the_same_events_and_ids_shift_with_the_first_event_id() {
        let a: Vec<Event> = GeneratorConfig::default().split(0, 1, 500).collect();
        let b: Vec<Event> = GeneratorConfig::default().split(0, 1, 500).collect();
        assert_eq!(a, b);
        let shifted = GeneratorConfig {
            first_event_id: 50,
            ..GeneratorConfig::default()
        };
        let c: Vec<Event> = shifted.split(0, 1, 500).collect();
        assert_ne!(a, c);
        assert_eq!(a[0].date_time(), c[0].date_time());
    }

    #[test]
    fn splits_partition_the_events() {
        let config = GeneratorConfig::default();
        let all: Vec<Event> = config.split(0, 1, 1_000).collect();
        for k in [2u64, 3, 7] {
            let mut merged: Vec<(usize, Event)> = Vec::new();
            for i in 0..k {
                merged.extend(
                    config
                        .split(i, k, 1_000)
                        .enumerate()
                        .map(|(j, e)| (j * k as usize + i as usize, e)),
                );
            }
            merged.sort_by_key(|(n, _)| *n);
            assert_eq!(merged.into_iter().map(|(_, e)| e).collect::<Vec<_>>(), all);
        }
    }
}
