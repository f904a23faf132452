//! Each Nexmark query computed over a finished list of events by plain single-threaded code,
//! written from the SQL and sharing nothing with the dataflows of [`crate::queries`] (no
//! windows, joins or aggregates of the engine): the oracle the tests compare the streaming
//! results with, and the hand-written loop `riffle nexmark bench` prints beside them.
//!
//! For q4, whose SQL result is updating, the answer is the final row of each category.

use hashbrown::{HashMap, HashSet};

use crate::model::{Event, Millis};
use crate::queries::{BidRow, Q11Row, Q1Row, Q2Row, Q3Row, Q4Row, Q5Row, Q8Row, Query, Row, Thousandths};

/// The rows of `query` over `events`, in no particular order.
pub fn run(query: Query, events: &[Event]) -> Vec<Row> {
    match query {
        Query::Q0 => bid_rows(events).map(Row::Bid).collect(),
        Query::Q1 => bid_rows(events)
            .map(|b| {
                Row::Q1(Q1Row {
                    auction: b.auction,
                    bidder: b.bidder,
                    price: Thousandths(b.price * 908),
                    date_time: b.date_time,
                    extra: b.extra,
                })
            })
            .collect(),
        Query::Q2 => events
            .iter()
            .filter_map(|e| match e {
                Event::Bid(b) if b.auction % 123 == 0 => Some(Row::Q2(Q2Row {
                    auction: b.auction,
                    price: b.price,
                })),
                _ => None,
            })
            .collect(),
        Query::Q3 => q3(events),
        Query::Q4 => q4(events),
        Query::Q5 => q5(events),
        Query::Q7 => q7(events),
        Query::Q8 => q8(events),
        Query::Q11 => q11(events),
    }
}

fn bid_rows(events: &[Event]) -> impl Iterator<Item = BidRow> + '_ {
    events.iter().filter_map(|e| match e {
        Event::Bid(b) => Some(BidRow::from(b.clone())),
        _ => None,
    })
}

fn q3(events: &[Event]) -> Vec<Row> {
    let mut people: HashMap<u64, Vec<(String, String, String)>> = HashMap::new();
    for e in events {
        if let Event::Person(p) = e {
            if p.state == "OR" || p.state == "ID" || p.state == "CA" {
                people
                    .entry(p.id)
                    .or_default()
                    .push((p.name.clone(), p.city.clone(), p.state.clone()));
            }
        }
    }
    let mut rows = Vec::new();
    for e in events {
        if let Event::Auction(a) = e {
            if a.category == 10 {
                for (name, city, state) in people.get(&a.seller).into_iter().flatten() {
                    rows.push(Row::Q3(Q3Row {
                        name: name.clone(),
                        city: city.clone(),
                        state: state.clone(),
                        id: a.id,
                    }));
                }
            }
        }
    }
    rows
}

fn q4(events: &[Event]) -> Vec<Row> {
    let mut auctions: HashMap<u64, Vec<(u64, Millis, Millis)>> = HashMap::new();
    for e in events {
        if let Event::Auction(a) = e {
            auctions
                .entry(a.id)
                .or_default()
                .push((a.category, a.date_time, a.expires));
        }
    }
    // MAX(B.price) GROUP BY A.id, A.category
    let mut closing: HashMap<(u64, u64), u64> = HashMap::new();
    for e in events {
        if let Event::Bid(b) = e {
            for &(category, opened, expires) in auctions.get(&b.auction).into_iter().flatten() {
                if opened <= b.date_time && b.date_time <= expires {
                    let max = closing.entry((b.auction, category)).or_insert(0);
                    *max = (*max).max(b.price);
                }
            }
        }
    }
    // AVG(final) GROUP BY category
    let mut per_category: HashMap<u64, (u128, u128)> = HashMap::new();
    for ((_, category), price) in closing {
        let s = per_category.entry(category).or_insert((0, 0));
        s.0 += u128::from(price);
        s.1 += 1;
    }
    per_category
        .into_iter()
        .map(|(id, (sum, n))| {
            Row::Q4(Q4Row {
                id,
                final_price: (sum / n) as u64,
            })
        })
        .collect()
}

fn q5(events: &[Event]) -> Vec<Row> {
    // HOP(dateTime, 2 s, 10 s): the windows [s, s + 10 s) with s a multiple of 2 s holding t.
    let mut counts: HashMap<(Millis, u64), u64> = HashMap::new();
    for e in events {
        if let Event::Bid(b) = e {
            let last = b.date_time.div_euclid(2_000) * 2_000;
            let mut start = last;
            while start > b.date_time - 10_000 {
                *counts.entry((start, b.auction)).or_insert(0) += 1;
                start -= 2_000;
            }
        }
    }
    let mut max: HashMap<Millis, u64> = HashMap::new();
    for (&(start, _), &n) in &counts {
        let m = max.entry(start).or_insert(0);
        *m = (*m).max(n);
    }
    counts
        .into_iter()
        .filter(|((start, _), n)| *n >= max[start])
        .map(|((_, auction), num)| Row::Q5(Q5Row { auction, num }))
        .collect()
}

fn q7(events: &[Event]) -> Vec<Row> {
    // MAX(price) per TUMBLE(10 s), with the window's end.
    let mut max: HashMap<Millis, u64> = HashMap::new();
    for e in events {
        if let Event::Bid(b) = e {
            let end = b.date_time.div_euclid(10_000) * 10_000 + 10_000;
            let m = max.entry(end).or_insert(0);
            *m = (*m).max(b.price);
        }
    }
    // B.price = maxprice AND B.dateTime BETWEEN end - 10 s AND end: a bid can meet the window
    // it is in and, at the first millisecond of a window, the one before.
    let mut rows = Vec::new();
    for e in events {
        if let Event::Bid(b) = e {
            let own_end = b.date_time.div_euclid(10_000) * 10_000 + 10_000;
            for end in [own_end, own_end - 10_000] {
                if end - 10_000 <= b.date_time && b.date_time <= end && max.get(&end) == Some(&b.price) {
                    rows.push(Row::Bid(BidRow::from(b.clone())));
                }
            }
        }
    }
    rows
}

fn q8(events: &[Event]) -> Vec<Row> {
    let window = |t: Millis| t.div_euclid(10_000) * 10_000;
    let mut people: HashSet<(u64, String, Millis)> = HashSet::new();
    let mut sellers: HashSet<(u64, Millis)> = HashSet::new();
    for e in events {
        match e {
            Event::Person(p) => {
                people.insert((p.id, p.name.clone(), window(p.date_time)));
            }
            Event::Auction(a) => {
                sellers.insert((a.seller, window(a.date_time)));
            }
            Event::Bid(_) => {}
        }
    }
    people
        .into_iter()
        .filter(|(id, _, start)| sellers.contains(&(*id, *start)))
        .map(|(id, name, stime)| Row::Q8(Q8Row { id, name, stime }))
        .collect()
}

fn q11(events: &[Event]) -> Vec<Row> {
    let mut times: HashMap<u64, Vec<Millis>> = HashMap::new();
    for e in events {
        if let Event::Bid(b) = e {
            times.entry(b.bidder).or_default().push(b.date_time);
        }
    }
    let mut rows = Vec::new();
    for (bidder, mut ts) in times {
        ts.sort_unstable();
        // A session goes on while the next bid comes at most 10 s after the last: Flink
        // merges session windows [t, t + gap) that touch.
        let mut start = ts[0];
        let mut last = ts[0];
        let mut count = 0;
        for t in ts {
            if t > last + 10_000 {
                rows.push(Row::Q11(Q11Row {
                    bidder,
                    bid_count: count,
                    starttime: start,
                    endtime: last + 10_000,
                }));
                start = t;
                count = 0;
            }
            last = t;
            count += 1;
        }
        rows.push(Row::Q11(Q11Row {
            bidder,
            bid_count: count,
            starttime: start,
            endtime: last + 10_000,
        }));
    }
    rows
}
