//! Watching a load as it reads its archive: every byte read from the
//! archive passes a [`Meter`], which counts it for the `archive` progress
//! event and stops the read once the caller has cancelled. Cancelling thus
//! takes effect at the next read (at most a megabyte later) wherever the
//! load is: decompressing, hashing or converting.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oci::progress::{Progress, Sink};

/// Shortest interval between two progress events.
const INTERVAL: Duration = Duration::from_millis(100);

/// Counts the bytes read of an archive, reports them, and carries the
/// caller's cancellation.
pub struct Meter {
    read: AtomicU64,
    total: AtomicU64,
    cancel: Option<Arc<AtomicBool>>,
    progress: Sink,
    reported: Mutex<Option<Instant>>,
}

impl Meter {
    /// A meter reporting to `progress`, cancelled when `cancel` is raised.
    pub fn new(progress: Sink, cancel: Option<Arc<AtomicBool>>) -> Meter {
        Meter {
            read: AtomicU64::new(0),
            total: AtomicU64::new(0),
            cancel,
            progress,
            reported: Mutex::new(None),
        }
    }

    /// Whether the caller has cancelled.
    pub fn cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed))
    }

    /// Starts counting afresh towards `total` bytes (one phase of a load).
    pub fn start(&self, total: u64) {
        self.read.store(0, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
        self.report(true);
    }

    /// `inner`, its bytes counted and its reads refused once cancelled.
    pub fn reader<'a, R: Read + 'a>(&'a self, inner: R) -> Metered<'a, R> {
        Metered { meter: self, inner }
    }

    /// Reports the count, at most every [`INTERVAL`] unless `force`.
    fn report(&self, force: bool) {
        let mut last = self.reported.lock().unwrap_or_else(|p| p.into_inner());
        if !force && last.is_some_and(|at| at.elapsed() < INTERVAL) {
            return;
        }
        *last = Some(Instant::now());
        drop(last);
        let total = self.total.load(Ordering::Relaxed);
        (self.progress)(Progress::Archive {
            read: self.read.load(Ordering::Relaxed).min(total),
            total,
        });
    }
}

/// A reader counted by a [`Meter`].
pub struct Metered<'a, R> {
    meter: &'a Meter,
    inner: R,
}

impl<R: Read> Read for Metered<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.meter.cancelled() {
            // Not `Interrupted`: read loops retry that.
            return Err(io::Error::other("the load was cancelled"));
        }
        let n = self.inner.read(buf)?;
        let read = self.meter.read.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        self.meter.report(n == 0 || read >= self.meter.total.load(Ordering::Relaxed));
        Ok(n)
    }
}
