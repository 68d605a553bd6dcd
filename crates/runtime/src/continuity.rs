//! Continuity of what a group consumer hands on: each assigned partition
//! continues from the offset it resumed at, with no offset passed over.
//!
//! A partition resumes at its committed offset, and a broker answers a
//! fetch from an offset inside a record batch with that whole batch (the
//! consumer drops the records before the offset). So the records handed on
//! are the partition's offsets one after the other, and a record that
//! arrives past the offset expected means offsets were passed over: a batch
//! another producer had been given offsets for but had not yet written
//! (tansu's engines assign offsets before they store), an offset with no
//! record (a transaction marker, compaction), or records deleted by
//! retention. The first two are read again; only the last loses data.
//!
//! So when a record arrives past the offset expected, the partition is
//! sought back before that offset, further each time (the windows of
//! [`WINDOWS`], then the partition's start). The gap is accepted, and said,
//! once two re-reads in a row showed a record before it followed by one
//! after it (nothing is stored there), or a re-read from the partition's
//! start still passed over it (deleted). A consumer reads nothing twice
//! when no offset is passed over: on a rebalance, each resumed partition
//! is read from its committed offset.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// How far back successive re-reads start, in records before the offset
/// expected; after the last, the partition's start. A batch of librdkafka's
/// producer holds at most 10,000 records (`batch.num.messages`).
pub const WINDOWS: [i64; 3] = [10_000, 100_000, 1_000_000];

/// Where the re-read of step `step` starts when `next` is expected: the
/// window [`WINDOWS`]`[step]` before it, past the last window the
/// partition's start.
fn window_start(next: i64, step: usize) -> i64 {
    WINDOWS.get(step).map_or(0, |w| (next - w).max(0))
}

/// Re-reads that must each show the gap between two records before it is
/// taken for offsets with nothing stored (the second one rules out a batch
/// that was still being written during the first).
const CONFIRMATIONS: u32 = 2;

/// What to do with a consumed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// The next record of its partition: hand it on.
    Handle,
    /// Handed on already, or before where the partition resumed: drop it.
    Skip,
    /// Records before it were passed over: drop it, seek the partition to
    /// this offset and read on from there.
    Rewind(i64),
    /// Hand it on; the offsets before it, down to the one expected, hold no
    /// record the broker can return ([`Gap`]).
    AfterGap(Gap),
}

/// Offsets `from..to` of a partition that the consumer could not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub from: i64,
    pub to: i64,
    /// Whether re-reads showed records on both sides (offsets with nothing
    /// stored), rather than the start of the partition being past them
    /// (deleted).
    pub empty: bool,
}

/// A re-read under way.
#[derive(Debug, Clone, Copy)]
struct Reread {
    /// Index into [`WINDOWS`] (past its end: the partition's start).
    step: usize,
    /// The offset sought to.
    to: i64,
    /// A record before the one expected came again since the seek.
    saw_before: bool,
    /// Earlier re-reads that saw the gap between two records.
    confirmed: u32,
}

#[derive(Debug, Clone, Copy, Default)]
struct Partition {
    /// The next offset to hand on; `None` until known (the first record
    /// read then sets it).
    next: Option<i64>,
    reread: Option<Reread>,
}

/// The positions of a consumer's assigned partitions, indexed by partition
/// id (a lookup per record; an unknown partition holds the default).
#[derive(Debug, Default)]
pub struct Positions {
    partitions: Vec<Partition>,
}

impl Positions {
    /// `partition` was assigned; it resumes at `from` and is read from
    /// there (`None`: unknown, such as no committed offset: the first record
    /// read is the start).
    pub fn assigned(&mut self, partition: i32, from: Option<i64>) {
        if let Some(p) = self.slot(partition) {
            *p = Partition {
                next: from,
                reread: None,
            };
        }
    }

    /// `partition` was revoked.
    pub fn revoked(&mut self, partition: i32) {
        if let Some(p) = self.slot(partition) {
            *p = Partition::default();
        }
    }

    /// Every partition whose next offset is known, with it.
    pub fn known(&self) -> Vec<(i32, i64)> {
        (0i32..)
            .zip(&self.partitions)
            .filter_map(|(i, p)| Some((i, p.next?)))
            .collect()
    }

    /// The next offset `partition` hands on, when known.
    pub fn expected(&self, partition: i32) -> Option<i64> {
        let i = usize::try_from(partition).ok()?;
        self.partitions.get(i).and_then(|p| p.next)
    }

    /// The state of `partition` (`None` for a negative id, which no record
    /// has).
    fn slot(&mut self, partition: i32) -> Option<&mut Partition> {
        let i = usize::try_from(partition).ok()?;
        if i >= self.partitions.len() {
            self.partitions.resize(i + 1, Partition::default());
        }
        self.partitions.get_mut(i)
    }

    /// Decides about the record at `offset` of `partition`.
    pub fn admit(&mut self, partition: i32, offset: i64) -> Admit {
        let Some(p) = self.slot(partition) else {
            return Admit::Handle;
        };
        let Some(next) = p.next else {
            p.next = Some(offset + 1);
            return Admit::Handle;
        };
        if offset < next {
            if let Some(r) = &mut p.reread {
                r.saw_before = true;
            }
            return Admit::Skip;
        }
        if offset == next {
            p.next = Some(offset + 1);
            p.reread = None;
            return Admit::Handle;
        }
        let (step, confirmed) = match p.reread {
            None => (0, 0),
            Some(r) if r.saw_before => {
                if r.confirmed + 1 >= CONFIRMATIONS {
                    return p.accept(next, offset, true);
                }
                // The window reached before the gap: keep it.
                (r.step, r.confirmed + 1)
            }
            // Read again from the start, and the start is past the gap.
            Some(r) if r.to == 0 => return p.accept(next, offset, false),
            Some(r) => (r.step + 1, 0),
        };
        let to = window_start(next, step);
        p.reread = Some(Reread {
            step,
            to,
            saw_before: false,
            confirmed,
        });
        Admit::Rewind(to)
    }
}

/// A change of a consumer's assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Resuming at `from` (`None`: unknown).
    Assigned {
        partition: i32,
        from: Option<i64>,
    },
    Revoked {
        partition: i32,
    },
}

/// Assignment changes the rebalance callback notes, for the consume loop
/// to apply to its [`Positions`] before it admits the next record.
#[derive(Debug, Default)]
pub struct Changes {
    pending: AtomicBool,
    list: Mutex<Vec<Change>>,
    /// Woken when partitions were assigned.
    assigned: tokio::sync::Notify,
}

impl Changes {
    pub fn push(&self, changes: impl IntoIterator<Item = Change>) {
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        let before = list.len();
        list.extend(changes);
        let assigned = list[before..]
            .iter()
            .any(|c| matches!(c, Change::Assigned { .. }));
        self.pending.store(true, Ordering::Release);
        drop(list);
        if assigned {
            self.assigned.notify_one();
        }
    }

    /// Completes once partitions were assigned since the last time it
    /// completed (cancel safe).
    pub async fn assigned(&self) {
        self.assigned.notified().await;
    }

    /// Applies the changes noted since the last call, in order (one atomic
    /// load when there are none).
    pub fn apply_to(&self, positions: &mut Positions) {
        // A plain load first: this runs for every record consumed.
        if !self.pending.load(Ordering::Acquire) || !self.pending.swap(false, Ordering::Acquire) {
            return;
        }
        let list = std::mem::take(&mut *self.list.lock().unwrap_or_else(|e| e.into_inner()));
        for change in list {
            match change {
                Change::Assigned { partition, from } => positions.assigned(partition, from),
                Change::Revoked { partition } => positions.revoked(partition),
            }
        }
    }
}

impl Partition {
    fn accept(&mut self, from: i64, to: i64, empty: bool) -> Admit {
        self.next = Some(to + 1);
        self.reread = None;
        Admit::AfterGap(Gap { from, to, empty })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn records_in_order_are_handled() {
        let mut p = Positions::default();
        p.assigned(0, Some(0));
        assert_eq!(p.admit(0, 0), Admit::Handle);
        assert_eq!(p.admit(0, 1), Admit::Handle);
    }

    #[test]
    fn an_unknown_start_is_the_first_record_read() {
        let mut p = Positions::default();
        p.assigned(3, None);
        assert_eq!(p.admit(3, 40), Admit::Handle);
        assert_eq!(p.admit(3, 41), Admit::Handle);
        // A partition never announced (no rebalance callback) likewise.
        assert_eq!(p.admit(4, 7), Admit::Handle);
    }

    #[test]
    fn records_before_the_resume_offset_are_skipped() {
        // Committed 14,588 inside a batch 14,500..14,753: the broker returns
        // that batch whole.
        let mut p = Positions::default();
        p.assigned(0, Some(14_588));
        assert_eq!(p.admit(0, 14_500), Admit::Skip);
        assert_eq!(p.admit(0, 14_587), Admit::Skip);
        assert_eq!(p.admit(0, 14_588), Admit::Handle);
        assert_eq!(p.admit(0, 14_589), Admit::Handle);
    }

    #[test]
    fn a_resumed_partition_passed_over_is_read_from_a_window_before() {
        // Committed 20,000; the batch holding it (given offsets, not yet
        // written) is passed over, and the next one comes first.
        let mut p = Positions::default();
        p.assigned(0, Some(20_000));
        assert_eq!(p.admit(0, 25_000), Admit::Rewind(10_000));
        assert_eq!(p.admit(0, 19_999), Admit::Skip);
        assert_eq!(p.admit(0, 20_000), Admit::Handle);
    }

    #[test]
    fn a_gap_in_the_middle_is_read_again() {
        // A batch given offsets 300..400 but written after the next one.
        let mut p = Positions::default();
        p.assigned(0, None);
        assert_eq!(p.admit(0, 299), Admit::Handle);
        assert_eq!(p.admit(0, 400), Admit::Rewind(0));
        assert_eq!(p.admit(0, 299), Admit::Skip);
        assert_eq!(p.admit(0, 300), Admit::Handle);
    }

    #[test]
    fn a_window_too_short_is_widened_then_the_start_is_read() {
        let mut p = Positions::default();
        p.assigned(1, Some(2_500_000));
        // Nothing before 2,600,000 came, however far back it is read.
        assert_eq!(p.admit(1, 2_600_000), Admit::Rewind(2_490_000));
        assert_eq!(p.admit(1, 2_600_000), Admit::Rewind(2_400_000));
        assert_eq!(p.admit(1, 2_600_000), Admit::Rewind(1_500_000));
        assert_eq!(p.admit(1, 2_600_000), Admit::Rewind(0));
        // From the start, still nothing before 2,600,000: deleted.
        assert_eq!(
            p.admit(1, 2_600_000),
            Admit::AfterGap(Gap {
                from: 2_500_000,
                to: 2_600_000,
                empty: false
            })
        );
        assert_eq!(p.admit(1, 2_600_001), Admit::Handle);
    }

    #[test]
    fn offsets_with_nothing_stored_are_accepted_after_two_rereads() {
        // A transaction marker at 20 on Apache Kafka; read from 20.
        let mut p = Positions::default();
        p.assigned(0, Some(20));
        assert_eq!(p.admit(0, 21), Admit::Rewind(0));
        assert_eq!(p.admit(0, 19), Admit::Skip);
        // Once: a batch still being written would look the same.
        assert_eq!(p.admit(0, 21), Admit::Rewind(0));
        assert_eq!(p.admit(0, 19), Admit::Skip);
        assert_eq!(
            p.admit(0, 21),
            Admit::AfterGap(Gap {
                from: 20,
                to: 21,
                empty: true
            })
        );
        assert_eq!(p.admit(0, 22), Admit::Handle);
    }

    #[test]
    fn noted_changes_apply_in_order_once() {
        let changes = Changes::default();
        let mut p = Positions::default();
        changes.push([
            Change::Assigned {
                partition: 0,
                from: Some(7),
            },
            Change::Revoked { partition: 0 },
            Change::Assigned {
                partition: 0,
                from: Some(3),
            },
        ]);
        changes.apply_to(&mut p);
        assert_eq!(p.admit(0, 3), Admit::Handle);
        // Applied once: the position moves on.
        changes.apply_to(&mut p);
        assert_eq!(p.admit(0, 3), Admit::Skip);
    }

    #[test]
    fn an_assignment_starts_afresh() {
        let mut p = Positions::default();
        p.assigned(0, Some(100));
        assert_eq!(p.admit(0, 100), Admit::Handle);
        p.revoked(0);
        // Back with a lower committed offset: its records are read again.
        p.assigned(0, Some(90));
        assert_eq!(p.admit(0, 90), Admit::Handle);
    }

    /// A partition as a broker serves it: batches of the given sizes from
    /// offset 0, of which those in `holes` hold no record (markers), and
    /// the first `deleted` offsets gone; a fetch from an offset returns the
    /// records of the batch holding it and of those after it (or, below the
    /// first record kept, from that record).
    struct Log {
        batches: Vec<(i64, i64)>,
        holes: Vec<usize>,
        deleted: i64,
    }

    impl Log {
        fn new(sizes: &[i64], holes: Vec<usize>, deleted: i64) -> Self {
            let mut base = 0;
            let batches = sizes
                .iter()
                .map(|n| {
                    let b = (base, base + n);
                    base += n;
                    b
                })
                .collect();
            Log {
                batches,
                holes,
                deleted,
            }
        }

        fn end(&self) -> i64 {
            self.batches.last().map_or(0, |b| b.1)
        }

        fn stored(&self) -> impl Iterator<Item = i64> + '_ {
            self.batches
                .iter()
                .enumerate()
                .filter(|(i, _)| !self.holes.contains(i))
                .flat_map(|(_, &(a, b))| a..b)
                .filter(|o| *o >= self.deleted)
        }

        fn fetch_from(&self, offset: i64) -> Vec<i64> {
            let offset = offset.max(self.deleted);
            let mut records = Vec::new();
            for (i, &(base, end)) in self.batches.iter().enumerate() {
                if !self.holes.contains(&i) && end > offset {
                    records.extend(base.max(self.deleted)..end);
                }
            }
            records
        }
    }

    /// Consumes `log` from `committed` as the services do; returns the
    /// offsets handed on, the gaps accepted and the seeks made.
    fn consume(log: &Log, committed: i64) -> (Vec<i64>, Vec<Gap>, usize) {
        let mut p = Positions::default();
        p.assigned(0, Some(committed));
        let (mut handled, mut gaps, mut seeks) = (Vec::new(), Vec::new(), 0);
        let mut queue = log.fetch_from(committed).into_iter();
        while let Some(o) = queue.next() {
            match p.admit(0, o) {
                Admit::Handle => handled.push(o),
                Admit::Skip => {}
                Admit::AfterGap(g) => {
                    gaps.push(g);
                    handled.push(o);
                }
                Admit::Rewind(to) => {
                    seeks += 1;
                    assert!(seeks < 100, "seeks without end");
                    queue = log.fetch_from(to).into_iter();
                }
            }
        }
        (handled, gaps, seeks)
    }

    /// Batch sizes, now and then larger than the first window.
    fn sizes() -> impl Strategy<Value = Vec<i64>> {
        proptest::collection::vec(prop_oneof![9 => 1i64..3_000, 1 => 10_000i64..12_000], 1..20)
    }

    proptest! {
        #[test]
        fn every_stored_record_from_the_committed_offset_is_handled_once(
            sizes in sizes(),
            at in 0.0f64..1.0,
        ) {
            let log = Log::new(&sizes, Vec::new(), 0);
            let committed = (log.end() as f64 * at) as i64;
            let (handled, gaps, _) = consume(&log, committed);
            let want: Vec<i64> = (committed..log.end()).collect();
            prop_assert_eq!(handled, want);
            prop_assert!(gaps.is_empty());
        }

        #[test]
        fn offsets_without_records_are_passed_once_confirmed(
            sizes in sizes(),
            holes in proptest::collection::vec(0usize..20, 0..5),
            at in 0.0f64..1.0,
        ) {
            let log = Log::new(&sizes, holes, 0);
            let committed = (log.end() as f64 * at) as i64;
            let (handled, gaps, _) = consume(&log, committed);
            let want: Vec<i64> = log.stored().filter(|o| *o >= committed).collect();
            prop_assert_eq!(handled, want);
            prop_assert!(gaps.iter().all(|g| g.empty || g.from == committed));
        }

        #[test]
        fn records_deleted_before_the_committed_offset_are_a_gap(
            sizes in sizes(),
            at in 0.0f64..1.0,
            deleted_at in 0.0f64..1.0,
        ) {
            let log0 = Log::new(&sizes, Vec::new(), 0);
            let committed = (log0.end() as f64 * at) as i64;
            let deleted = committed + ((log0.end() - committed) as f64 * deleted_at) as i64;
            let log = Log::new(&sizes, Vec::new(), deleted);
            let (handled, gaps, _) = consume(&log, committed);
            let want: Vec<i64> = (deleted..log.end()).collect();
            prop_assert_eq!(handled, want);
            if deleted > committed && deleted < log.end() {
                prop_assert_eq!(gaps, vec![Gap { from: committed, to: deleted, empty: false }]);
            }
        }
    }
}
