//! The combiner of time windows, before the keyed exchange (on the worker that produced the
//! records, no exchange): decides each record's admission from the watermark of the message
//! that carries it, pre-aggregates on-time records per pane and key, and flushes a pane once
//! its own input frontier has passed the pane's end (or when it holds too many entries). It
//! holds a capability at the time of each pane's first record, so the window operator cannot
//! fire a window before the pane's partial aggregate has reached it. Staged
//! (behind-the-watermark) records are forwarded at once, tagged with their watermark; late ones
//! leave through the late-data stream.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use hashbrown::HashMap;
use riffle_core::aggregate::Aggregate;
use riffle_core::window::TimeWindows;
use riffle_core::window_state::{admit_session, admit_sliced, Admission};
use riffle_core::EventTime;
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::core::OkErr;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

use crate::progress::{frontier_watermark, message_time, open_epoch};
use crate::stream::{Data, Key, KeyedStream};
use crate::time::Time;

type VecBuilder<T> = CapacityContainerBuilder<Vec<T>>;

/// A combiner's partial aggregates of one pane: its start, the capability of its first
/// record, and an accumulator per key.
type PaneBuffer<K, Acc> = (EventTime, Capability<Time>, HashMap<K, Acc>);

/// A partial aggregate on its way to the worker that owns its key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Partial<K, Acc> {
    pub(crate) key: K,
    /// Pane start (sliced windows) or record time (sessions).
    pub(crate) slot: EventTime,
    /// For staged records: the watermark they arrived with.
    pub(crate) staged_at: Option<EventTime>,
    pub(crate) acc: Acc,
}

/// Entries a combiner may hold before it flushes everything (bounds its memory).
const COMBINER_LIMIT: usize = 1 << 18;

/// The partial aggregates of `keyed`'s records per pane (sliced windows) or record (sessions)
/// and key, and the records later than `lateness`.
#[allow(clippy::type_complexity)] // the two streams, spelled out
pub(crate) fn combine<'s, K: Key, D: Data, A: Aggregate<D>>(
    keyed: KeyedStream<'s, K, D>,
    windows: TimeWindows,
    lateness: i64,
    agg: A,
) -> (
    Stream<'s, Time, Vec<Partial<K, A::Acc>>>,
    Stream<'s, Time, Vec<(EventTime, D)>>,
) {
    let key_fn = keyed.key;
    let combine_agg = agg;
    let late_ctx = Arc::clone(&keyed.stream.ctx);
    type CombineOut<K, Acc, D> = Result<Partial<K, Acc>, (EventTime, D)>;
    let combined = keyed
        .stream
        .stream
        .unary_frontier::<VecBuilder<CombineOut<K, A::Acc, D>>, _, _, _>(
            Pipeline,
            "WindowCombine",
            move |_cap, _info| {
                let agg = combine_agg;
                let mut panes: Vec<PaneBuffer<K, A::Acc>> = Vec::new();
                let mut entries = 0usize;
                let mut forward: Vec<CombineOut<K, A::Acc, D>> = Vec::new();
                move |(input, frontier), output| {
                    let port = output.output_index();
                    input.for_each(|cap, data| {
                        let time = message_time(&cap);
                        let wm = time.watermark;
                        let mut late = 0u64;
                        match windows {
                            TimeWindows::Sliced(s) => {
                                // Consecutive records mostly fall into the same pane: remember the
                                // last pane's bounds, admission and slot so that the common case
                                // costs two comparisons instead of several divisions.
                                let mut cached: Option<(EventTime, EventTime, Admission, usize)> = None;
                                for (ts, d) in data.drain(..) {
                                    let (pane, admission, slot) = match cached {
                                        Some((lo, hi, a, i)) if lo <= ts && ts < hi => (lo, a, i),
                                        _ => {
                                            let pane = s.pane_of(ts);
                                            let admission = admit_sliced(&s, ts, wm, lateness);
                                            let slot = if admission == Admission::OnTime {
                                                match panes
                                                    .iter()
                                                    .rposition(|p| p.0 == pane && p.1.time().epoch == time.epoch)
                                                {
                                                    Some(i) => i,
                                                    None => {
                                                        panes.push((pane, cap.delayed(&time, port), HashMap::new()));
                                                        panes.len() - 1
                                                    }
                                                }
                                            } else {
                                                usize::MAX
                                            };
                                            cached = Some((pane, s.pane_end(pane), admission, slot));
                                            (pane, admission, slot)
                                        }
                                    };
                                    match admission {
                                        Admission::OnTime => {
                                            let key = key_fn(&d);
                                            let map = &mut panes[slot].2;
                                            match map.get_mut(&key) {
                                                Some(acc) => agg.add(acc, d),
                                                None => {
                                                    let mut acc = agg.create();
                                                    agg.add(&mut acc, d);
                                                    map.insert(key, acc);
                                                    entries += 1;
                                                }
                                            }
                                        }
                                        Admission::Staged => {
                                            let mut acc = agg.create();
                                            let key = key_fn(&d);
                                            agg.add(&mut acc, d);
                                            forward.push(Ok(Partial {
                                                key,
                                                slot: pane,
                                                staged_at: Some(wm),
                                                acc,
                                            }));
                                        }
                                        Admission::Late => {
                                            late += 1;
                                            forward.push(Err((ts, d)));
                                        }
                                    }
                                }
                            }
                            TimeWindows::Session(g) => {
                                for (ts, d) in data.drain(..) {
                                    let admission = admit_session(&g, ts, wm, lateness);
                                    if admission == Admission::Late {
                                        late += 1;
                                        forward.push(Err((ts, d)));
                                        continue;
                                    }
                                    let mut acc = agg.create();
                                    let key = key_fn(&d);
                                    agg.add(&mut acc, d);
                                    let staged_at = (admission == Admission::Staged).then_some(wm);
                                    forward.push(Ok(Partial {
                                        key,
                                        slot: ts,
                                        staged_at,
                                        acc,
                                    }));
                                }
                            }
                        }
                        if late > 0 {
                            late_ctx.metrics().late.fetch_add(late, Ordering::Relaxed);
                        }
                        if !forward.is_empty() {
                            output.session(&cap).give_iterator(forward.drain(..));
                        }
                    });
                    if let TimeWindows::Sliced(s) = windows {
                        let fwm = frontier_watermark(frontier.frontier().iter());
                        // A pane of a closed epoch leaves now: the checkpoint of that epoch
                        // waits for it, and a combiner keeps no state across epochs.
                        let open = open_epoch(frontier.frontier()).unwrap_or(u64::MAX);
                        let flush_all = entries > COMBINER_LIMIT;
                        panes.retain_mut(|(pane, cap, map)| {
                            let ready = flush_all || s.pane_end(*pane) <= fwm || cap.time().epoch < open;
                            if ready {
                                let pane = *pane;
                                entries -= map.len();
                                output.session(cap).give_iterator(map.drain().map(|(key, acc)| {
                                    Ok(Partial {
                                        key,
                                        slot: pane,
                                        staged_at: None,
                                        acc,
                                    })
                                }));
                            }
                            !ready
                        });
                        // A waiting pane holds the time of its first record; move its watermark
                        // up to the frontier's, so that a pane whose first record came long ago
                        // (a burst read before the watermark moved) does not hold back the
                        // windows that the watermark has closed since. Its window stays open:
                        // the frontier is still before the pane's end. Only the watermark moves:
                        // the pane's records belong to the epoch they were read in (moving to a
                        // later epoch of the frontier put them into the next checkpoint, whose
                        // source positions were already past them: lost on restore).
                        if fwm != i64::MAX {
                            for (_, cap, _) in panes.iter_mut() {
                                if cap.time().watermark < fwm {
                                    let t = Time::new(cap.time().epoch, fwm);
                                    cap.downgrade(&t);
                                }
                            }
                        }
                    }
                }
            },
        );
    combined.ok_err::<Vec<Partial<K, A::Acc>>, _, Vec<(EventTime, D)>, _, _>(|x: CombineOut<K, A::Acc, D>| x)
}
