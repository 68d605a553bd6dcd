//! Per-record work of a batch spread over the cores, its results in the
//! records' order: what a stage works out for each record on its own
//! before the consume loop sends, in order, what it made (the validator's
//! making of signed records: signature, verdict, outputs, attestations).

/// Fewest records of a batch worth spreading over threads: below it,
/// starting them costs more than they save.
pub const WORTH_SPREADING: usize = 16;

/// The threads [`map`] is worth running on here: the cores this process
/// may use.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Items a thread of [`map`] takes at a time.
const BLOCK: usize = 8;

/// `work` over `items` on up to `threads` threads, this one among them,
/// the results in the items' order. Each thread takes the next block of
/// consecutive items until none is left, with a scratch `S` of its own (a
/// buffer to decode into again): a helper that gets no core leaves its
/// share to the others instead of holding this thread up, which waits at
/// most for the block a helper is working on.
///
/// `None` when a helper thread panicked: the caller does the work again
/// on its own thread, where a panic stops the service as it would have
/// without the helpers. A panic on this thread unwinds as usual.
pub fn map<I, T, S>(
    items: &[I],
    threads: usize,
    work: impl Fn(&I, &mut S) -> T + Sync,
) -> Option<Vec<T>>
where
    I: Sync,
    T: Send,
    S: Default,
{
    let blocks = items.len().div_ceil(BLOCK);
    let threads = threads.clamp(1, blocks.max(1));
    if threads == 1 {
        let mut scratch = S::default();
        return Some(items.iter().map(|i| work(i, &mut scratch)).collect());
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    // Blocks taken, each with its index, until none is left.
    let take = || {
        let mut scratch = S::default();
        let mut done: Vec<(usize, Vec<T>)> = Vec::new();
        loop {
            let block = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let start = block.saturating_mul(BLOCK);
            if start >= items.len() {
                return done;
            }
            let part = &items[start..items.len().min(start + BLOCK)];
            done.push((block, part.iter().map(|i| work(i, &mut scratch)).collect()));
        }
    };
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(take)).collect();
        let mut done = take();
        for helper in helpers {
            done.extend(helper.join().ok()?);
        }
        done.sort_unstable_by_key(|(block, _)| *block);
        Some(done.into_iter().flat_map(|(_, part)| part).collect())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_in_the_items_order_whatever_the_threads() {
        let items: Vec<u32> = (0..1000).collect();
        for threads in [0, 1, 2, 3, 7, 1000, 5000] {
            let out = map(&items, threads, |i, _: &mut ()| i * 2).expect("no panic");
            assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        }
        assert_eq!(map(&[] as &[u32], 4, |i, _: &mut ()| *i), Some(vec![]));
    }

    #[test]
    fn each_thread_keeps_its_own_scratch_over_the_blocks_it_takes() {
        // The scratch counts what its thread took before: within a block
        // of consecutive items it rises by one per item, and the threads
        // together take every item once.
        let items: Vec<usize> = (0..100).collect();
        let out = map(&items, 4, |i, seen: &mut usize| {
            *seen += 1;
            (*i, *seen)
        })
        .expect("no panic");
        assert_eq!(out.iter().map(|(i, _)| *i).collect::<Vec<_>>(), items);
        for block in out.chunks(BLOCK) {
            assert!(block.windows(2).all(|w| w[1].1 == w[0].1 + 1), "{block:?}");
        }
        let firsts = out.iter().filter(|(_, seen)| *seen == 1).count();
        assert!((1..=4).contains(&firsts), "{firsts} threads started");
    }

    #[test]
    fn a_helper_that_panics_gives_none_not_a_partial_result() {
        // Only a helper panics; this thread is slow enough that the helper
        // takes a block.
        let this = std::thread::current().id();
        let items: Vec<u32> = (0..64).collect();
        let out = map(&items, 2, |i, _: &mut ()| {
            if std::thread::current().id() == this {
                std::thread::sleep(std::time::Duration::from_millis(5));
            } else {
                panic!("a helper's item {i}");
            }
            *i
        });
        assert_eq!(out, None);
    }
}
