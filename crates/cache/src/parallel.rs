//! A small work-sharing loop over scoped threads: layers of an image,
//! images of an archive, and files to delete are handled a few at a time.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use std::thread::ScopedJoinHandle;

use crate::error::{Error, Result};

/// Runs `work` on every item with up to `workers` threads, stopping early
/// after the first failure. Returns results in item order, or the failure
/// of the lowest-numbered failed item.
pub fn map<T: Sync, R: Send>(items: &[T], workers: usize, work: impl Fn(&T) -> Result<R> + Sync) -> Result<Vec<R>> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let done = Mutex::new(Vec::with_capacity(items.len()));
    std::thread::scope(|scope| {
        for _ in 0..workers.clamp(1, items.len().max(1)) {
            scope.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let result = work(item);
                    failed.fetch_or(result.is_err(), Ordering::Relaxed);
                    done.lock().unwrap_or_else(|p| p.into_inner()).push((i, result));
                }
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_else(|p| p.into_inner());
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, result)| result).collect()
}

/// What a scoped thread returned, its panic as an `Internal` error saying
/// which `work` panicked: work beside a call must fail the call, not abort it.
pub fn join<T>(handle: ScopedJoinHandle<'_, Result<T>>, work: &str) -> Result<T> {
    handle.join().unwrap_or_else(|_| Err(Error::Internal(format!("{work} panicked"))))
}

/// Drops `value` on a thread of its own, so that a call does not wait for
/// tens of thousands of allocations to be freed before it returns.
pub fn drop_beside<T: Send + 'static>(value: T) {
    // Should no thread start, the closure, and `value` with it, is dropped here.
    let _ = std::thread::Builder::new().name("msb-drop".into()).spawn(move || drop(value));
}
