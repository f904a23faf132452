//! Window join: pairs of records of the same key in the same window (tumbling, sliding,
//! session), emitted when the window fires, as Flink's `join(...).where(...).window(...)`.
//!
//! Tumbling and sliding windows keep each side's records per pane (a record is stored once,
//! not once per window) and assemble a window's rows from its panes when it fires; a pair
//! appears once per window that holds both records. Session windows are built over the union
//! of both sides' records of a key (a left and a right record close in time share a session).
//! In outer joins, a window with rows of one side only emits them with the other side missing.
//! A window's state is freed when it fires. There is no allowed lateness for joins: a record
//! all of whose windows have fired is late.
//!
//! ```
//! use riffle_core::join::{JoinKind, WindowJoinState};
//! use riffle_core::window::TumblingWindows;
//! let mut j = WindowJoinState::<&str, u32, u32>::new(TumblingWindows::of_millis(10).unwrap().into(), JoinKind::Inner);
//! j.insert_left("k", 1, i64::MIN, 7);
//! j.insert_right("k", 9, i64::MIN, 8);
//! j.insert_right("k", 12, i64::MIN, 9); // next window: no partner
//! let mut out = vec![];
//! j.advance(i64::MAX, &mut |w, _k, _ts, l, r| out.push((w.start, l.copied(), r.copied())));
//! assert_eq!(out, vec![(0, Some(7), Some(8))]);
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::hash::Hash;

use hashbrown::HashMap;

use super::JoinKind;
use crate::key_group::{filled_slots, group_slots, slot_of, GroupedState, KeyGroup};
use crate::time::{EventTime, Watermark};
use crate::window::{Slicing, TimeWindows, Window};

/// Each side's records: (event time, watermark it arrived with, record).
type Rows<L, R> = (Vec<(EventTime, Watermark, L)>, Vec<(EventTime, Watermark, R)>);

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Session<L, R> {
    window: Window,
    rows: Rows<L, R>,
}

/// Receives window join rows: window, key, event time (the window's last millisecond), left
/// and right (one missing for unmatched rows of outer joins).
pub type WindowJoinEmit<'a, K, L, R> = dyn FnMut(Window, &K, EventTime, Option<&L>, Option<&R>) + 'a;

/// The state of a window join. It serialises whole, for checkpoints.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(bound(
    serialize = "K: serde::Serialize + Hash + Eq, L: serde::Serialize, R: serde::Serialize",
    deserialize = "K: serde::Deserialize<'de> + Hash + Eq, L: serde::Deserialize<'de>, R: serde::Deserialize<'de>"
))]
pub struct WindowJoinState<K, L, R> {
    windows: TimeWindows,
    kind: JoinKind,
    panes: BTreeMap<EventTime, HashMap<K, Rows<L, R>>>,
    sessions: HashMap<K, Vec<Session<L, R>>>,
    fired_up_to: Watermark,
    len: usize,
}

impl<K: Hash + Eq + Clone, L, R> WindowJoinState<K, L, R> {
    /// Empty state for `windows`.
    pub fn new(windows: TimeWindows, kind: JoinKind) -> Self {
        WindowJoinState {
            windows,
            kind,
            panes: BTreeMap::new(),
            sessions: HashMap::new(),
            fired_up_to: Watermark::MIN,
            len: 0,
        }
    }

    /// Rows held: the state size.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no rows are held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The watermark up to which windows have fired.
    pub fn fired_up_to(&self) -> Watermark {
        self.fired_up_to
    }

    /// Whether a record at `ts` arriving with watermark `wm` still belongs to a window that
    /// has not fired (otherwise it is late).
    pub fn is_on_time(&self, ts: EventTime, wm: Watermark) -> bool {
        match &self.windows {
            TimeWindows::Sliced(s) => s.last_window_end(s.pane_of(ts)) > wm,
            TimeWindows::Session(_) => ts > wm,
        }
    }

    /// Adds an on-time left record that arrived with watermark `wm`. It joins in the windows
    /// that end after `wm`: those that end at or before it fired (or must be taken to have
    /// fired: the operator's own watermark may lag) without it.
    pub fn insert_left(&mut self, key: K, ts: EventTime, wm: Watermark, value: L) {
        self.insert(key, ts, |rows| rows.0.push((ts, wm, value)));
    }

    /// Adds an on-time right record that arrived with watermark `wm`.
    pub fn insert_right(&mut self, key: K, ts: EventTime, wm: Watermark, value: R) {
        self.insert(key, ts, |rows| rows.1.push((ts, wm, value)));
    }

    fn insert(&mut self, key: K, ts: EventTime, put: impl FnOnce(&mut Rows<L, R>)) {
        self.len += 1;
        match &self.windows {
            TimeWindows::Sliced(s) => {
                let rows = self
                    .panes
                    .entry(s.pane_of(ts))
                    .or_default()
                    .entry(key)
                    .or_insert_with(|| (Vec::new(), Vec::new()));
                put(rows);
            }
            TimeWindows::Session(sw) => {
                let mut window = Window {
                    start: ts,
                    end: ts.saturating_add(sw.gap),
                };
                let list = self.sessions.entry(key).or_default();
                let mut rows: Rows<L, R> = (Vec::new(), Vec::new());
                put(&mut rows);
                // Merge every session this one touches (Flink's TimeWindow::intersects).
                let mut i = 0;
                while i < list.len() {
                    let w = list[i].window;
                    if w.start <= window.end && window.start <= w.end {
                        let s = list.swap_remove(i);
                        window = Window {
                            start: window.start.min(s.window.start),
                            end: window.end.max(s.window.end),
                        };
                        rows.0.extend(s.rows.0);
                        rows.1.extend(s.rows.1);
                    } else {
                        i += 1;
                    }
                }
                list.push(Session { window, rows });
            }
        }
    }

    /// Fires every window that ends at or before `wm` and frees its state.
    pub fn advance(&mut self, wm: Watermark, emit: &mut WindowJoinEmit<'_, K, L, R>) {
        if wm <= self.fired_up_to {
            return;
        }
        let kind = self.kind;
        match &self.windows {
            TimeWindows::Sliced(s) => {
                let s = *s;
                self.fire_sliced(&s, wm, emit);
            }
            TimeWindows::Session(_) => {
                let mut freed = 0;
                self.sessions.retain(|key, list| {
                    list.retain(|session| {
                        if session.window.end <= wm {
                            freed += session.rows.0.len() + session.rows.1.len();
                            join_rows(kind, session.window, key, &session.rows.0, &session.rows.1, emit);
                            false
                        } else {
                            true
                        }
                    });
                    !list.is_empty()
                });
                self.len -= freed;
            }
        }
        self.fired_up_to = wm;
    }

    /// Takes in checkpoint parts written by workers that may have fired up to different
    /// watermarks: each part first fires up to the highest of them, emitting what its old
    /// worker would have emitted on its way there, so that no window is lost or fired twice.
    pub fn absorb_caught_up(&mut self, parts: Vec<Self>, emit: &mut WindowJoinEmit<'_, K, L, R>)
    where
        L: Clone,
        R: Clone,
    {
        let highest = parts.iter().map(|p| p.fired_up_to).max().unwrap_or(Watermark::MIN);
        for mut part in parts {
            part.advance(highest, emit);
            self.absorb(part);
        }
    }

    fn fire_sliced(&mut self, s: &Slicing, wm: Watermark, emit: &mut WindowJoinEmit<'_, K, L, R>) {
        if s.pane == s.size && !s.is_global() {
            // Tumbling: each pane is one window; fire and free it whole.
            while let Some(entry) = self.panes.first_entry() {
                let window = Window {
                    start: *entry.key(),
                    end: entry.key().saturating_add(s.size),
                };
                if window.end > wm {
                    break;
                }
                let keys = entry.remove();
                for (key, (lefts, rights)) in keys {
                    self.len -= lefts.len() + rights.len();
                    let l: Vec<&(EventTime, Watermark, L)> = lefts.iter().filter(|r| r.1 < window.end).collect();
                    let r: Vec<&(EventTime, Watermark, R)> = rights.iter().filter(|r| r.1 < window.end).collect();
                    join_refs(self.kind, window, &key, &l, &r, emit);
                }
            }
            return;
        }
        let from = self.fired_up_to;
        let mut windows = BTreeSet::new();
        for (&pane, _) in self.panes.range(..wm) {
            s.windows_of_pane(pane, &mut |w| {
                if w.end > from && w.end <= wm {
                    windows.insert((w.end, w.start));
                }
            });
        }
        for (end, start) in windows {
            let window = Window { start, end };
            let mut keys: Vec<&K> = Vec::new();
            let mut seen = hashbrown::HashSet::new();
            let panes: Vec<&HashMap<K, Rows<L, R>>> =
                s.panes_of_window(window).filter_map(|p| self.panes.get(&p)).collect();
            for p in &panes {
                for k in p.keys() {
                    if seen.insert(k) {
                        keys.push(k);
                    }
                }
            }
            for key in keys {
                let lefts: Vec<&(EventTime, Watermark, L)> = panes
                    .iter()
                    .filter_map(|p| p.get(key))
                    .flat_map(|r| &r.0)
                    .filter(|r| r.1 < end)
                    .collect();
                let rights: Vec<&(EventTime, Watermark, R)> = panes
                    .iter()
                    .filter_map(|p| p.get(key))
                    .flat_map(|r| &r.1)
                    .filter(|r| r.1 < end)
                    .collect();
                join_refs(self.kind, window, key, &lefts, &rights, emit);
            }
        }
        // Free panes whose every window has fired.
        while let Some(entry) = self.panes.first_entry() {
            if s.last_window_end(*entry.key()) <= wm {
                self.len -= entry.get().values().map(|r| r.0.len() + r.1.len()).sum::<usize>();
                entry.remove();
            } else {
                break;
            }
        }
    }
}

/// A part keeps the watermark its state fired up to. Parts written by workers that had fired up to
/// different watermarks must each be brought to the same one (by [`advance`](WindowJoinState::advance),
/// emitting what their old worker would have) before they are absorbed: the merged state keeps
/// the highest watermark, and a window of a part that had not fired up to it would never fire.
impl<K: Hash + Eq + Clone, L: Clone, R: Clone> GroupedState for WindowJoinState<K, L, R> {
    fn split_groups(&self, include: &dyn Fn(KeyGroup) -> bool) -> Vec<(KeyGroup, Self)> {
        let mut slots = group_slots(include, || {
            let mut part = Self::new(self.windows, self.kind);
            part.fired_up_to = self.fired_up_to;
            part
        });
        for (&pane, keys) in &self.panes {
            for (key, rows) in keys {
                if let Some(part) = slot_of(&mut slots, key) {
                    part.len += rows.0.len() + rows.1.len();
                    part.panes.entry(pane).or_default().insert(key.clone(), rows.clone());
                }
            }
        }
        for (key, list) in &self.sessions {
            if let Some(part) = slot_of(&mut slots, key) {
                part.len += list.iter().map(|s| s.rows.0.len() + s.rows.1.len()).sum::<usize>();
                part.sessions.insert(key.clone(), list.clone());
            }
        }
        filled_slots(slots)
    }

    fn absorb(&mut self, part: Self) {
        for (pane, keys) in part.panes {
            self.panes.entry(pane).or_default().extend(keys);
        }
        self.sessions.extend(part.sessions);
        self.len += part.len;
        self.fired_up_to = self.fired_up_to.max(part.fired_up_to);
    }
}

fn join_rows<K, L, R>(
    kind: JoinKind,
    window: Window,
    key: &K,
    lefts: &[(EventTime, Watermark, L)],
    rights: &[(EventTime, Watermark, R)],
    emit: &mut WindowJoinEmit<'_, K, L, R>,
) {
    let l: Vec<&(EventTime, Watermark, L)> = lefts.iter().collect();
    let r: Vec<&(EventTime, Watermark, R)> = rights.iter().collect();
    join_refs(kind, window, key, &l, &r, emit);
}

fn join_refs<K, L, R>(
    kind: JoinKind,
    window: Window,
    key: &K,
    lefts: &[&(EventTime, Watermark, L)],
    rights: &[&(EventTime, Watermark, R)],
    emit: &mut WindowJoinEmit<'_, K, L, R>,
) {
    let ts = window.max_timestamp();
    if rights.is_empty() {
        if kind.keeps_left() {
            for l in lefts {
                emit(window, key, ts, Some(&l.2), None);
            }
        }
    } else if lefts.is_empty() {
        if kind.keeps_right() {
            for r in rights {
                emit(window, key, ts, None, Some(&r.2));
            }
        }
    } else {
        for l in lefts {
            for r in rights {
                emit(window, key, ts, Some(&l.2), Some(&r.2));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::{SessionWindows, SlidingWindows, TumblingWindows};
    use proptest::prelude::*;

    type Row = (i64, i64, u8, Option<u32>, Option<u32>);

    fn windows_of(ts: i64, size: i64, slide: i64) -> Vec<Window> {
        let mut start = ts.div_euclid(slide) * slide;
        let mut out = vec![];
        while start + size > ts {
            out.push(Window {
                start,
                end: start + size,
            });
            start -= slide;
        }
        out
    }

    fn emit_rows(kind: JoinKind, w: Window, k: u8, l: &[u32], r: &[u32], out: &mut Vec<Row>) {
        if r.is_empty() {
            if kind.keeps_left() {
                out.extend(l.iter().map(|&x| (w.start, w.end, k, Some(x), None)));
            }
        } else if l.is_empty() {
            if kind.keeps_right() {
                out.extend(r.iter().map(|&y| (w.start, w.end, k, None, Some(y))));
            }
        } else {
            for &x in l {
                for &y in r {
                    out.push((w.start, w.end, k, Some(x), Some(y)));
                }
            }
        }
    }

    type Side = Vec<(i64, u8, u32)>;
    type Groups = BTreeMap<(i64, i64, u8), (Vec<u32>, Vec<u32>)>;

    fn oracle_sliced(left: &Side, right: &Side, size: i64, slide: i64, kind: JoinKind) -> Vec<Row> {
        let mut groups: Groups = BTreeMap::new();
        for &(t, k, v) in left {
            for w in windows_of(t, size, slide) {
                groups.entry((w.start, w.end, k)).or_default().0.push(v);
            }
        }
        for &(t, k, v) in right {
            for w in windows_of(t, size, slide) {
                groups.entry((w.start, w.end, k)).or_default().1.push(v);
            }
        }
        let mut out = vec![];
        for ((s, e, k), (l, r)) in groups {
            emit_rows(kind, Window { start: s, end: e }, k, &l, &r, &mut out);
        }
        out.sort_unstable();
        out
    }

    fn oracle_sessions(left: &Side, right: &Side, gap: i64, kind: JoinKind) -> Vec<Row> {
        let mut by_key: BTreeMap<u8, Vec<(i64, bool, u32)>> = BTreeMap::new();
        for &(t, k, v) in left {
            by_key.entry(k).or_default().push((t, true, v));
        }
        for &(t, k, v) in right {
            by_key.entry(k).or_default().push((t, false, v));
        }
        let mut out = vec![];
        for (k, mut recs) in by_key {
            recs.sort_unstable();
            let mut i = 0;
            while i < recs.len() {
                let mut j = i + 1;
                let mut last = recs[i].0;
                while j < recs.len() && recs[j].0 <= last + gap {
                    last = recs[j].0;
                    j += 1;
                }
                let w = Window {
                    start: recs[i].0,
                    end: last + gap,
                };
                let l: Vec<u32> = recs[i..j].iter().filter(|r| r.1).map(|r| r.2).collect();
                let r: Vec<u32> = recs[i..j].iter().filter(|r| !r.1).map(|r| r.2).collect();
                emit_rows(kind, w, k, &l, &r, &mut out);
                i = j;
            }
        }
        out.sort_unstable();
        out
    }

    /// Two workers' parts fired to different watermarks (one worker had fired further when
    /// the checkpoint was taken): restored together, every window fires exactly once.
    #[test]
    fn parts_fired_to_different_watermarks_catch_up() {
        let windows: TimeWindows = SlidingWindows::of_millis(10, 5).unwrap().into();
        let fill = |j: &mut WindowJoinState<u8, u32, u32>| {
            for ts in 0..30 {
                for key in [1u8, 2] {
                    j.insert_left(key, ts, i64::MIN, ts as u32);
                    j.insert_right(key, ts + 1, i64::MIN, ts as u32);
                }
            }
        };
        let rows = |j: &mut WindowJoinState<u8, u32, u32>, wm: i64, out: &mut Vec<Row>| {
            j.advance(wm, &mut |w, k, _ts, l, r| {
                out.push((w.start, w.end, *k, l.copied(), r.copied()))
            });
        };
        let mut expected = vec![];
        let mut whole = WindowJoinState::new(windows, JoinKind::Full);
        fill(&mut whole);
        rows(&mut whole, i64::MAX, &mut expected);
        // Worker 0 owns key 1's group and fired up to 20; worker 1 fired up to 10 only.
        let mut got = vec![];
        let mut w0 = WindowJoinState::new(windows, JoinKind::Full);
        fill(&mut w0);
        let mut w1 = WindowJoinState::new(windows, JoinKind::Full);
        fill(&mut w1);
        let g1 = KeyGroup::of(&1u8);
        let mut out0 = vec![];
        rows(&mut w0, 20, &mut out0);
        got.extend(out0.into_iter().filter(|r| r.2 == 1));
        let mut out1 = vec![];
        rows(&mut w1, 10, &mut out1);
        got.extend(out1.into_iter().filter(|r| r.2 == 2));
        let parts: Vec<_> = w0
            .split_groups(&|g| g == g1)
            .into_iter()
            .chain(w1.split_groups(&|g| g != g1))
            .map(|(_, p)| p)
            .collect();
        let mut restored = WindowJoinState::new(windows, JoinKind::Full);
        let mut emit = |w: Window, k: &u8, _ts: i64, l: Option<&u32>, r: Option<&u32>| {
            got.push((w.start, w.end, *k, l.copied(), r.copied()))
        };
        restored.absorb_caught_up(parts, &mut emit);
        rows(&mut restored, i64::MAX, &mut got);
        expected.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, expected);
    }

    fn run(windows: TimeWindows, kind: JoinKind, left: &Side, right: &Side, bits: u64) -> Vec<Row> {
        let mut j = WindowJoinState::new(windows, kind);
        let mut out = vec![];
        let mut emit = |w: Window, k: &u8, _ts: i64, l: Option<&u32>, r: Option<&u32>| {
            out.push((w.start, w.end, *k, l.copied(), r.copied()))
        };
        let (mut i, mut k, mut b) = (0, 0, bits);
        // Both sides sorted; the watermark is the smaller of the two sides' last times − 1.
        let (mut lw, mut rw) = (i64::MIN, i64::MIN);
        while i < left.len() || k < right.len() {
            if k == right.len() || (i < left.len() && b & 1 == 0) {
                let (t, key, v) = left[i];
                j.insert_left(key, t, lw.min(rw), v);
                lw = t - 1;
                i += 1;
            } else {
                let (t, key, v) = right[k];
                j.insert_right(key, t, lw.min(rw), v);
                rw = t - 1;
                k += 1;
            }
            b = b.rotate_right(1);
            let lw_eff = if i == left.len() { i64::MAX } else { lw };
            let rw_eff = if k == right.len() { i64::MAX } else { rw };
            j.advance(lw_eff.min(rw_eff), &mut emit);
            // Split by key group and put back together (a checkpoint restored elsewhere) at
            // some step: nothing changes.
            if i + k == (bits % 97) as usize {
                j = crate::key_group::regroup(&j, WindowJoinState::new(windows, kind));
            }
        }
        j.advance(i64::MAX, &mut emit);
        assert!(j.is_empty());
        out.sort_unstable();
        out
    }

    fn arb_side() -> impl Strategy<Value = Side> {
        proptest::collection::vec((0i64..200, 0u8..3, any::<u32>()), 0..30).prop_map(|mut v| {
            v.sort_by_key(|r| r.0);
            v
        })
    }

    proptest! {
        #[test]
        fn sliced_equals_the_oracle(left in arb_side(), right in arb_side(), slide in 1i64..30, factor in 1i64..4,
                                    kind in 0usize..4, bits in any::<u64>()) {
            let kind = [JoinKind::Inner, JoinKind::Left, JoinKind::Right, JoinKind::Full][kind];
            let size = slide * factor;
            let windows: TimeWindows = if factor == 1 {
                TumblingWindows::of_millis(size).unwrap().into()
            } else {
                SlidingWindows::of_millis(size, slide).unwrap().into()
            };
            prop_assert_eq!(run(windows, kind, &left, &right, bits), oracle_sliced(&left, &right, size, slide, kind));
        }

        #[test]
        fn sessions_equal_the_oracle(left in arb_side(), right in arb_side(), gap in 1i64..30, kind in 0usize..4, bits in any::<u64>()) {
            let kind = [JoinKind::Inner, JoinKind::Left, JoinKind::Right, JoinKind::Full][kind];
            let windows: TimeWindows = SessionWindows::with_gap_millis(gap).unwrap().into();
            prop_assert_eq!(run(windows, kind, &left, &right, bits), oracle_sessions(&left, &right, gap, kind));
        }
    }
}
