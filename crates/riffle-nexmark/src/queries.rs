//! The Nexmark queries on the DataStream API, with the semantics of nexmark-flink's
//! `queries/q*.sql`, each in the shape of its SQL plan.
//!
//! Result rows carry the columns of each query's result table (`nexmark_qN`) under those names,
//! times in unix milliseconds. Where the SQL is an updating query (q4: an aggregate over a
//! regular join) the rows are a changelog: each update replaces the previous row of its key.
//!
//! | query | what                               | plan here                                            |
//! |-------|------------------------------------|------------------------------------------------------|
//! | q0    | pass-through                       | map                                                  |
//! | q1    | currency conversion                | map (exact decimal, 3 places)                        |
//! | q2    | selection                          | filter                                               |
//! | q3    | local item suggestion              | regular join (unbounded interval join) of filtered people and auctions |
//! | q4    | average closing price per category | auctions ⋈ bids within the auction's life, max per auction when it expires, running mean per category |
//! | q5    | hot items                          | sliding count per auction, then the top count per window |
//! | q7    | highest bid                        | tumbling window of the bids at the maximum price      |
//! | q8    | monitor new users                  | tumbling distinct people and sellers, window join     |
//! | q11   | user sessions                      | session-window count per bidder                       |

// Window shapes and bounds here are constants of the queries (valid by construction, and every
// query runs in the tests): their `expect`s cannot fire on data.
#![allow(clippy::expect_used)]

use std::str::FromStr;

use riffle_core::aggregate::{Aggregate, Count};
use riffle_core::join::{IntervalBounds, JoinKind};
use riffle_core::window::{SessionWindows, SlidingWindows, TumblingWindows};
use riffle_runtime::{DataStream, WindowResult};
use serde::{Deserialize, Serialize};

use crate::model::{Auction, Bid, Event, Millis, Person};

/// A Nexmark query.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Query {
    /// Pass-through.
    Q0,
    /// Currency conversion.
    Q1,
    /// Selection.
    Q2,
    /// Local item suggestion.
    Q3,
    /// Average price per category.
    Q4,
    /// Hot items.
    Q5,
    /// Highest bid.
    Q7,
    /// Monitor new users.
    Q8,
    /// User sessions.
    Q11,
}

impl Query {
    /// Every query, in order.
    pub const ALL: [Query; 9] = [
        Query::Q0,
        Query::Q1,
        Query::Q2,
        Query::Q3,
        Query::Q4,
        Query::Q5,
        Query::Q7,
        Query::Q8,
        Query::Q11,
    ];

    /// Its name: `q0`, `q1`, …
    pub fn name(self) -> &'static str {
        match self {
            Query::Q0 => "q0",
            Query::Q1 => "q1",
            Query::Q2 => "q2",
            Query::Q3 => "q3",
            Query::Q4 => "q4",
            Query::Q5 => "q5",
            Query::Q7 => "q7",
            Query::Q8 => "q8",
            Query::Q11 => "q11",
        }
    }

    /// Whether the rows are a changelog (an update replaces the previous row of its key).
    pub fn updating(self) -> bool {
        self == Query::Q4
    }
}

impl FromStr for Query {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Query::ALL
            .into_iter()
            .find(|q| q.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                let names: Vec<&str> = Query::ALL.iter().map(|q| q.name()).collect();
                format!("unknown Nexmark query '{s}' (known: {})", names.join(", "))
            })
    }
}

/// A bid as q0 and q7 return it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BidRow {
    /// Auction id.
    pub auction: u64,
    /// Bidder id.
    pub bidder: u64,
    /// Price in cents.
    pub price: u64,
    /// Bid time.
    #[serde(rename = "dateTime")]
    pub date_time: Millis,
    /// Extra.
    pub extra: String,
}

impl From<Bid> for BidRow {
    fn from(b: Bid) -> Self {
        BidRow {
            auction: b.auction,
            bidder: b.bidder,
            price: b.price,
            date_time: b.date_time,
            extra: b.extra,
        }
    }
}

/// A decimal with three places, held exactly as thousandths (SQL `0.908 * price` is a
/// DECIMAL); written in JSON as the number it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub struct Thousandths(pub u64);

impl Serialize for Thousandths {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // n / 1000 as the nearest f64 prints as exactly the decimal n / 1000 (shortest
        // round-trip form) for n < 2^53.
        s.serialize_f64(self.0 as f64 / 1000.0)
    }
}

/// q1: the bid with its price in euros.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Q1Row {
    /// Auction id.
    pub auction: u64,
    /// Bidder id.
    pub bidder: u64,
    /// `0.908 * price`.
    pub price: Thousandths,
    /// Bid time.
    #[serde(rename = "dateTime")]
    pub date_time: Millis,
    /// Extra.
    pub extra: String,
}

/// q2: bids on every 123rd auction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Q2Row {
    /// Auction id.
    pub auction: u64,
    /// Price.
    pub price: u64,
}

/// q3: who sells in OR, ID or CA in category 10, and what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Q3Row {
    /// Seller's name.
    pub name: String,
    /// Seller's city.
    pub city: String,
    /// Seller's state.
    pub state: String,
    /// Auction id.
    pub id: u64,
}

/// q4: the running mean of closing prices in a category (`nexmark_q4 (id, final)`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Q4Row {
    /// Category.
    pub id: u64,
    /// Mean of the closing prices of its auctions so far (SQL `AVG` of BIGINT: truncated).
    #[serde(rename = "final")]
    pub final_price: u64,
}

/// q5: an auction with the most bids in a sliding window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Q5Row {
    /// Auction id.
    pub auction: u64,
    /// Its bids in the window.
    pub num: u64,
}

/// q8: a person who registered and opened an auction in the same 10 s window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Q8Row {
    /// Person id.
    pub id: u64,
    /// Name.
    pub name: String,
    /// Window start.
    pub stime: Millis,
}

/// q11: a bidder's session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Q11Row {
    /// Bidder id.
    pub bidder: u64,
    /// Bids in the session.
    pub bid_count: u64,
    /// Session start (first bid).
    pub starttime: Millis,
    /// Session end (last bid + gap).
    pub endtime: Millis,
}

/// A result row of any query.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Row {
    /// q0, q7.
    Bid(BidRow),
    /// q1.
    Q1(Q1Row),
    /// q2.
    Q2(Q2Row),
    /// q3.
    Q3(Q3Row),
    /// q4.
    Q4(Q4Row),
    /// q5.
    Q5(Q5Row),
    /// q8.
    Q8(Q8Row),
    /// q11.
    Q11(Q11Row),
}

impl Row {
    /// Appends the row as one JSON object with the query's column names, and a newline.
    pub fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        match self {
            Row::Bid(r) => serde_json::to_writer(&mut *out, r),
            Row::Q1(r) => serde_json::to_writer(&mut *out, r),
            Row::Q2(r) => serde_json::to_writer(&mut *out, r),
            Row::Q3(r) => serde_json::to_writer(&mut *out, r),
            Row::Q4(r) => serde_json::to_writer(&mut *out, r),
            Row::Q5(r) => serde_json::to_writer(&mut *out, r),
            Row::Q8(r) => serde_json::to_writer(&mut *out, r),
            Row::Q11(r) => serde_json::to_writer(&mut *out, r),
        }?;
        out.push(b'\n');
        Ok(())
    }
}

/// The dataflow of `query` over `events`.
pub fn build<'s>(query: Query, events: DataStream<'s, Event>) -> DataStream<'s, Row> {
    match query {
        Query::Q0 => bids(events).map(|b| Row::Bid(b.into())),
        Query::Q1 => q1(events).map(Row::Q1),
        Query::Q2 => q2(events).map(Row::Q2),
        Query::Q3 => q3(events).map(Row::Q3),
        Query::Q4 => q4(events).map(Row::Q4),
        Query::Q5 => q5(events).map(Row::Q5),
        Query::Q7 => q7(events).map(Row::Bid),
        Query::Q8 => q8(events).map(Row::Q8),
        Query::Q11 => q11(events).map(Row::Q11),
    }
}

/// The bids of an event stream.
pub fn bids(events: DataStream<'_, Event>) -> DataStream<'_, Bid> {
    events.flat_map(|e| match e {
        Event::Bid(b) => Some(b),
        _ => None,
    })
}

/// The people of an event stream.
pub fn people(events: DataStream<'_, Event>) -> DataStream<'_, Person> {
    events.flat_map(|e| match e {
        Event::Person(p) => Some(p),
        _ => None,
    })
}

/// The auctions of an event stream.
pub fn auctions(events: DataStream<'_, Event>) -> DataStream<'_, Auction> {
    events.flat_map(|e| match e {
        Event::Auction(a) => Some(a),
        _ => None,
    })
}

/// q1: `SELECT auction, bidder, 0.908 * price AS price, dateTime, extra FROM bid`.
pub fn q1(events: DataStream<'_, Event>) -> DataStream<'_, Q1Row> {
    bids(events).map(|b| Q1Row {
        auction: b.auction,
        bidder: b.bidder,
        price: Thousandths(b.price.saturating_mul(908)),
        date_time: b.date_time,
        extra: b.extra,
    })
}

/// q2: `SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0`.
pub fn q2(events: DataStream<'_, Event>) -> DataStream<'_, Q2Row> {
    events.flat_map(|e| match e {
        Event::Bid(b) if b.auction % 123 == 0 => Some(Q2Row {
            auction: b.auction,
            price: b.price,
        }),
        _ => None,
    })
}

/// q3: people of OR, ID and CA joined with their auctions in category 10, a regular join
/// (both sides kept for ever, as the SQL's unwindowed join): an interval join whose interval
/// is all of time.
pub fn q3(events: DataStream<'_, Event>) -> DataStream<'_, Q3Row> {
    let sellers = events
        .clone()
        .flat_map(|e| match e {
            Event::Person(p) if matches!(p.state.as_str(), "OR" | "ID" | "CA") => Some((p.id, p.name, p.city, p.state)),
            _ => None,
        })
        .key_by(|p: &(u64, String, String, String)| p.0);
    let all_time = IntervalBounds::new(i64::MIN, i64::MAX).expect("MIN <= MAX");
    events
        .flat_map(|e| match e {
            Event::Auction(a) if a.category == 10 => Some((a.seller, a.id)),
            _ => None,
        })
        .key_by(|a: &(u64, u64)| a.0)
        .interval_join(sellers, all_time, JoinKind::Inner)
        .rows
        .flat_map(|r| match (r.left, r.right) {
            (Some((_, id)), Some((_, name, city, state))) => Some(Q3Row { name, city, state, id }),
            _ => None,
        })
}

/// The mean of `u64`s as SQL's `AVG(BIGINT)`: truncated to an integer.
#[derive(Clone, Copy, Debug)]
pub struct TruncatedMean;

impl<K> Aggregate<(K, u64)> for TruncatedMean {
    type Acc = (u128, u64);
    type Output = u64;
    fn create(&self) -> (u128, u64) {
        (0, 0)
    }
    fn add(&self, acc: &mut (u128, u64), (_, v): (K, u64)) {
        acc.0 += u128::from(v);
        acc.1 += 1;
    }
    fn merge(&self, acc: &mut (u128, u64), other: (u128, u64)) {
        acc.0 += other.0;
        acc.1 += other.1;
    }
    fn result(&self, acc: &(u128, u64)) -> u64 {
        if acc.1 == 0 {
            0
        } else {
            u64::try_from(acc.0 / u128::from(acc.1)).unwrap_or(u64::MAX)
        }
    }
}

/// q4: bids join their auction while it is open (`B.dateTime BETWEEN A.dateTime AND
/// A.expires`), an auction's closing price is its highest such bid, and each category's
/// result is the running mean of its auctions' closing prices.
///
/// The join is an interval join from each auction's opening to the end of time, filtered by
/// its expiry; each joined pair then moves to its auction's expiry, where a 1 ms window per
/// auction closes exactly when the watermark passes the expiry (no bid can join after). The
/// per-category mean is a rolling aggregate, so the output is a changelog.
pub fn q4(events: DataStream<'_, Event>) -> DataStream<'_, Q4Row> {
    let bids = events
        .clone()
        .flat_map(|e| match e {
            Event::Bid(b) => Some((b.auction, b.price, b.date_time)),
            _ => None,
        })
        .key_by(|b: &(u64, u64, Millis)| b.0);
    let from_opening = IntervalBounds::new(0, i64::MAX).expect("0 <= MAX");
    events
        .flat_map(|e| match e {
            Event::Auction(a) => Some((a.id, a.category, a.expires)),
            _ => None,
        })
        .key_by(|a: &(u64, u64, Millis)| a.0)
        .interval_join(bids, from_opening, JoinKind::Inner)
        .rows
        .flat_map(|r| match (r.left, r.right) {
            (Some((id, category, expires)), Some((_, price, at))) if at <= expires => {
                Some((id, category, expires, price))
            }
            _ => None,
        })
        // Later than the bid: never late downstream.
        .assign_event_time(|_, p| p.2)
        .key_by(|p: &(u64, u64, Millis, u64)| (p.0, p.1))
        .window(TumblingWindows::of_millis(1).expect("1 ms > 0"))
        .max(|p: &(u64, u64, Millis, u64)| p.3)
        .flat_map(|r| r.value.map(|price| (r.key.1, price)))
        .key_by(|c: &(u64, u64)| c.0)
        .rolling(TruncatedMean)
        .map(|(category, mean)| Q4Row {
            id: category,
            final_price: mean,
        })
}

/// The auctions with the most bids of one window, and that number: the accumulator of q5's
/// second stage (`MAX(num)` per window joined back on `num >= maxn`).
#[derive(Clone, Copy, Debug)]
pub struct MostBids;

impl Aggregate<WindowResult<u64, u64>> for MostBids {
    type Acc = (u64, Vec<u64>);
    type Output = (u64, Vec<u64>);
    fn create(&self) -> Self::Acc {
        (0, Vec::new())
    }
    fn add(&self, acc: &mut Self::Acc, r: WindowResult<u64, u64>) {
        self.merge(acc, (r.value, vec![r.key]));
    }
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) {
        if other.0 > acc.0 {
            *acc = other;
        } else if other.0 == acc.0 {
            acc.1.extend(other.1);
        }
    }
    fn result(&self, acc: &Self::Acc) -> Self::Output {
        acc.clone()
    }
}

/// q5: bids per auction in sliding windows of 10 s every 2 s, and per window the auctions
/// whose count is the window's maximum. The first stage's results carry their window's last
/// millisecond, so a tumbling 2 s window keyed by the sliding window gathers exactly one
/// sliding window's counts (combined on each worker before the exchange).
pub fn q5(events: DataStream<'_, Event>) -> DataStream<'_, Q5Row> {
    let hop = SlidingWindows::of_millis(10_000, 2_000).expect("valid sliding windows");
    events
        .flat_map(|e| match e {
            Event::Bid(b) => Some(b.auction),
            _ => None,
        })
        .key_by(|a: &u64| *a)
        .window(hop)
        .aggregate(Count)
        .key_by(|r: &WindowResult<u64, u64>| r.window)
        .window(TumblingWindows::of_millis(2_000).expect("2 s > 0"))
        .aggregate(MostBids)
        .flat_map(|r| {
            let (num, auctions) = r.value;
            auctions.into_iter().map(move |auction| Q5Row { auction, num })
        })
}

/// q7's input: a bid of the window it belongs to (`member`), or, for a bid at the first
/// millisecond of a window, its copy for the previous window, which the SQL's `BETWEEN
/// window_end - 10 s AND window_end` also joins (`member` false: it does not count for that
/// window's maximum).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowBid {
    /// The window's start.
    pub window: Millis,
    /// Whether the bid is in the window (else it is at the window's end).
    pub member: bool,
    /// The bid.
    pub bid: BidRow,
}

/// The highest bids of a window: the maximum price of its members, its members at that
/// price, and the end-of-window bids that may equal it.
#[derive(Clone, Copy, Debug)]
pub struct HighestBids;

impl Aggregate<WindowBid> for HighestBids {
    type Acc = (Option<u64>, Vec<BidRow>, Vec<BidRow>);
    type Output = Vec<BidRow>;
    fn create(&self) -> Self::Acc {
        (None, Vec::new(), Vec::new())
    }
    fn add(&self, acc: &mut Self::Acc, w: WindowBid) {
        if w.member {
            self.merge(acc, (Some(w.bid.price), vec![w.bid], Vec::new()));
        } else {
            self.merge(acc, (None, Vec::new(), vec![w.bid]));
        }
    }
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) {
        let (max, members, edge) = other;
        match (acc.0, max) {
            (_, None) => {}
            (Some(a), Some(b)) if a > b => {}
            (Some(a), Some(b)) if a == b => acc.1.extend(members),
            _ => {
                acc.0 = max;
                acc.1 = members;
            }
        }
        acc.2.extend(edge);
        // End-of-window bids below the maximum can never be the answer.
        if let Some(m) = acc.0 {
            acc.2.retain(|b| b.price >= m);
        }
    }
    fn result(&self, acc: &Self::Acc) -> Vec<BidRow> {
        match acc.0 {
            None => Vec::new(),
            Some(m) => acc
                .1
                .iter()
                .chain(acc.2.iter().filter(|b| b.price == m))
                .cloned()
                .collect(),
        }
    }
}

/// The 10 s windows of q7 and q8.
const TEN_SECONDS: i64 = 10_000;

/// q7: per tumbling 10 s window, the bids at its highest price (`B.price = MAX(price)` with the
/// bid between the window's end − 10 s and its end, both included). One key per window; each
/// worker combines its bids into the few at its maximum before the exchange.
pub fn q7(events: DataStream<'_, Event>) -> DataStream<'_, BidRow> {
    events
        .flat_map(|e| {
            let Event::Bid(b) = e else { return Vec::new() };
            let window = b.date_time.div_euclid(TEN_SECONDS) * TEN_SECONDS;
            let bid = BidRow::from(b);
            if bid.date_time == window {
                let edge = WindowBid {
                    window: window - TEN_SECONDS,
                    member: false,
                    bid: bid.clone(),
                };
                vec![
                    WindowBid {
                        window,
                        member: true,
                        bid,
                    },
                    edge,
                ]
            } else {
                vec![WindowBid {
                    window,
                    member: true,
                    bid,
                }]
            }
        })
        // The previous window's copy goes to that window's last millisecond.
        .assign_event_time(|ts, w| if w.member { ts } else { w.window + TEN_SECONDS - 1 })
        .key_by(|w: &WindowBid| w.window)
        .window(TumblingWindows::of_millis(TEN_SECONDS).expect("10 s > 0"))
        .aggregate(HighestBids)
        .flat_map(|r| r.value)
}

/// q8: people who registered and opened an auction in the same tumbling 10 s window: distinct
/// `(id, name)` and distinct sellers per window (window counts whose results carry the window's
/// last millisecond), then a window join of the two on the person id.
pub fn q8(events: DataStream<'_, Event>) -> DataStream<'_, Q8Row> {
    let tumble = || TumblingWindows::of_millis(TEN_SECONDS).expect("10 s > 0");
    let sellers = events
        .clone()
        .flat_map(|e| match e {
            Event::Auction(a) => Some(a.seller),
            _ => None,
        })
        .key_by(|s: &u64| *s)
        .window(tumble())
        .aggregate(Count)
        .key_by(|r: &WindowResult<u64, u64>| r.key);
    events
        .flat_map(|e| match e {
            Event::Person(p) => Some((p.id, p.name)),
            _ => None,
        })
        .key_by(|p: &(u64, String)| p.clone())
        .window(tumble())
        .aggregate(Count)
        .key_by(|r: &WindowResult<(u64, String), u64>| r.key.0)
        .window_join(sellers, tumble(), JoinKind::Inner)
        .rows
        .flat_map(|r| {
            r.left.map(|p| Q8Row {
                id: p.key.0,
                name: p.key.1,
                stime: p.window.start,
            })
        })
}

/// q11: bids per bidder session (gap 10 s); a session ends 10 s after its last bid.
pub fn q11(events: DataStream<'_, Event>) -> DataStream<'_, Q11Row> {
    events
        .flat_map(|e| match e {
            Event::Bid(b) => Some(b.bidder),
            _ => None,
        })
        .key_by(|b: &u64| *b)
        .window(SessionWindows::with_gap_millis(TEN_SECONDS).expect("10 s > 0"))
        .aggregate(Count)
        .map(|r: WindowResult<u64, u64>| Q11Row {
            bidder: r.key,
            bid_count: r.value,
            starttime: r.window.start,
            endtime: r.window.end,
        })
}
