//! A small work-sharing loop over scoped threads: layers of an image, and
//! images of an archive, are ingested a few at a time.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::error::Result;

/// Runs `work` on every item with up to `workers` threads, stopping early
/// after the first failure. Returns results in item order, or the failure
/// of the lowest-numbered failed item; `collect` sees every side output
/// (e.g. files published) of the items that ran, failed or not.
pub fn map<T: Sync, R: Send, S: Send>(
    items: &[T],
    workers: usize,
    work: impl Fn(&T, &mut Vec<S>) -> Result<R> + Sync,
    collect: &mut Vec<S>,
) -> Result<Vec<R>> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let done = Mutex::new(Vec::with_capacity(items.len()));
    std::thread::scope(|scope| {
        for _ in 0..workers.clamp(1, items.len().max(1)) {
            scope.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let mut side = Vec::new();
                    let result = work(item, &mut side);
                    failed.fetch_or(result.is_err(), Ordering::Relaxed);
                    done.lock().unwrap_or_else(|p| p.into_inner()).push((i, result, side));
                }
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_else(|p| p.into_inner());
    done.sort_by_key(|(i, _, _)| *i);
    let mut results = Vec::with_capacity(done.len());
    let mut first_error = None;
    for (_, result, side) in done {
        collect.extend(side);
        match result {
            Ok(value) => results.push(value),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(results),
    }
}
