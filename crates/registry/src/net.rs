//! Sockets that wake on cancellation. ureq blocks in socket calls for as
//! long as its timeouts allow (30 s by default), and a registry that drips
//! a byte now and then never trips a per-read timeout at all; an abort must
//! not wait for either. So the agents here resolve names, connect and read
//! through this module: every blocking step waits in slices of at most
//! [`SLICE`], checking the pull's cancel flag between slices, and honours
//! ureq's own budgets (per read, per call) the same way. Everything above
//! the socket (TLS, CONNECT proxies, HTTP) is ureq's own.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    Buffers, ConnectProxyConnector, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, RustlsConnector, Transport,
};
use ureq::Timeout;

/// Longest a socket call blocks before the cancel flag is looked at again:
/// the abort latency the transport adds.
pub(crate) const SLICE: Duration = Duration::from_millis(50);

/// The reason carried by the I/O error of a cancelled socket call (see [`is_cancelled`]).
#[derive(Debug)]
struct Cancelled;

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("operation aborted")
    }
}

impl std::error::Error for Cancelled {}

/// The error a cancelled call returns. Not `Interrupted`: std's readers
/// retry that kind, and would spin on a flag that stays raised.
fn cancelled() -> ureq::Error {
    ureq::Error::Io(io::Error::other(Cancelled))
}

/// The pull's cancel flag, as the sockets see it.
#[derive(Clone, Debug, Default)]
pub(crate) struct CancelFlag(pub(crate) Option<Arc<AtomicBool>>);

impl CancelFlag {
    pub(crate) fn raised(&self) -> bool {
        self.0.as_ref().is_some_and(|f| f.load(Ordering::Relaxed))
    }

    /// Waits for `rx` (a worker thread's answer) until `deadline`, waking
    /// every slice to look at the flag.
    fn wait<T>(&self, rx: &mpsc::Receiver<T>, deadline: Option<Instant>, timeout: Timeout) -> Result<T, ureq::Error> {
        loop {
            if self.raised() {
                return Err(cancelled());
            }
            let slice = match deadline {
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left.min(SLICE),
                    _ => return Err(ureq::Error::Timeout(timeout)),
                },
                None => SLICE,
            };
            match rx.recv_timeout(slice) {
                Ok(value) => return Ok(value),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(ureq::Error::Io(io::Error::other("a connection worker thread died")))
                }
            }
        }
    }
}

/// An agent's connector chain: ureq's CONNECT proxy support, then our
/// sockets, then rustls (which reads and writes through them).
pub(crate) fn connector(cancel: CancelFlag) -> impl Connector {
    ().chain(ConnectProxyConnector::default())
        .chain(SocketConnector { cancel })
        .chain(RustlsConnector::default())
}

/// ureq's resolver on a worker thread, so a slow name lookup can be abandoned.
#[derive(Debug)]
pub(crate) struct InterruptibleResolver {
    pub(crate) cancel: CancelFlag,
}

impl Resolver for InterruptibleResolver {
    fn resolve(&self, uri: &Uri, config: &Config, timeout: NextTimeout) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let host = uri.host().unwrap_or_default();
        if host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok() {
            // An address literal needs no lookup.
            return DefaultResolver::default().resolve(uri, config, timeout);
        }
        let (tx, rx) = mpsc::channel();
        let (uri, config) = (uri.clone(), config.clone());
        std::thread::spawn(move || {
            let _ = tx.send(DefaultResolver::default().resolve(&uri, &config, timeout));
        });
        self.cancel.wait(&rx, deadline(&timeout), timeout.reason)?
    }
}

/// When `timeout` runs out, or None if it never does.
fn deadline(timeout: &NextTimeout) -> Option<Instant> {
    timeout.not_zero().and_then(|after| Instant::now().checked_add(*after))
}

/// Opens TCP connections on a worker thread (a connect to a host that
/// never answers blocks until its timeout), waiting for it in slices.
#[derive(Debug)]
struct SocketConnector {
    cancel: CancelFlag,
}

impl<In: Transport> Connector<In> for SocketConnector {
    type Out = Either<In, Socket>;

    fn connect(&self, details: &ConnectionDetails, chained: Option<In>) -> Result<Option<Self::Out>, ureq::Error> {
        if let Some(chained) = chained {
            // A CONNECT proxy's tunnel: already connected.
            return Ok(Some(Either::A(chained)));
        }
        let addrs: Vec<SocketAddr> = details.addrs.iter().copied().collect();
        let until = deadline(&details.timeout);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(connect_any(&addrs, until));
        });
        let stream = self.cancel.wait(&rx, until, details.timeout.reason)??;
        stream.set_nodelay(details.config.no_delay())?;
        let buffers = LazyBuffers::new(details.config.input_buffer_size(), details.config.output_buffer_size());
        Ok(Some(Either::B(Socket {
            stream,
            buffers,
            cancel: self.cancel.clone(),
            read_timeout: None,
            write_timeout: None,
        })))
    }
}

/// Connects to the first of `addrs` that accepts before `until`.
fn connect_any(addrs: &[SocketAddr], until: Option<Instant>) -> Result<TcpStream, ureq::Error> {
    let mut last = None;
    for addr in addrs {
        let attempt = match until {
            Some(until) => match until.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => TcpStream::connect_timeout(addr, left),
                _ => return Err(ureq::Error::Timeout(Timeout::Connect)),
            },
            None => TcpStream::connect(addr),
        };
        match attempt {
            Ok(stream) => return Ok(stream),
            Err(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => {
                last = Some(ureq::Error::Timeout(Timeout::Connect))
            }
            Err(e) => last = Some(ureq::Error::Io(e)),
        }
    }
    Err(last.unwrap_or(ureq::Error::HostNotFound))
}

/// A TCP connection whose reads and writes block for one slice at a time.
struct Socket {
    stream: TcpStream,
    buffers: LazyBuffers,
    cancel: CancelFlag,
    /// The socket timeouts last set, to skip the syscall when unchanged.
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket").field("peer", &self.stream.peer_addr().ok()).finish()
    }
}

/// The next slice to block for, or the error that ends the wait.
fn next_slice(cancel: &CancelFlag, until: Option<Instant>, reason: Timeout) -> Result<Duration, ureq::Error> {
    if cancel.raised() {
        return Err(cancelled());
    }
    match until {
        None => Ok(SLICE),
        Some(until) => match until.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Ok(left.min(SLICE)),
            _ => Err(ureq::Error::Timeout(reason)),
        },
    }
}

fn is_wait(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

impl Transport for Socket {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let timeout = timeout.for_write();
        let until = deadline(&timeout);
        let mut sent = 0;
        while sent < amount {
            let slice = next_slice(&self.cancel, until, timeout.reason)?;
            if self.write_timeout != Some(slice) {
                self.stream.set_write_timeout(Some(slice))?;
                self.write_timeout = Some(slice);
            }
            match (&self.stream).write(&self.buffers.output()[sent..amount]) {
                Ok(0) => return Err(ureq::Error::Io(io::ErrorKind::WriteZero.into())),
                Ok(n) => sent += n,
                Err(e) if is_wait(&e) => {}
                Err(e) => return Err(ureq::Error::Io(e)),
            }
        }
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        let timeout = timeout.for_read();
        let until = deadline(&timeout);
        loop {
            let slice = next_slice(&self.cancel, until, timeout.reason)?;
            if self.read_timeout != Some(slice) {
                self.stream.set_read_timeout(Some(slice))?;
                self.read_timeout = Some(slice);
            }
            match (&self.stream).read(self.buffers.input_append_buf()) {
                Ok(n) => {
                    self.buffers.input_appended(n);
                    return Ok(n > 0);
                }
                Err(e) if is_wait(&e) => {}
                Err(e) => return Err(ureq::Error::Io(e)),
            }
        }
    }

    /// Whether a pooled connection is still usable: nothing unread and not closed.
    fn is_open(&mut self) -> bool {
        if self.stream.set_nonblocking(true).is_err() {
            return false;
        }
        let mut probe = [0u8; 1];
        let idle = matches!((&self.stream).read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        self.stream.set_nonblocking(false).is_ok() && idle
    }
}

/// Whether `e` is a socket call given up because the pull was cancelled.
#[cfg(test)]
fn is_cancelled(e: &ureq::Error) -> bool {
    matches!(e, ureq::Error::Io(io) if io.get_ref().is_some_and(|inner| inner.is::<Cancelled>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raised_flag_ends_waits_within_a_slice() {
        let flag = Arc::new(AtomicBool::new(false));
        let cancel = CancelFlag(Some(flag.clone()));
        let (_tx, rx) = mpsc::channel::<()>();
        let raiser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            flag.store(true, Ordering::Relaxed);
        });
        let started = Instant::now();
        let error = cancel.wait(&rx, None, Timeout::Connect).unwrap_err();
        assert!(started.elapsed() < Duration::from_millis(100) + 3 * SLICE);
        assert!(is_cancelled(&error));
        raiser.join().unwrap();
        let quiet = CancelFlag::default();
        let started = Instant::now();
        let until = Some(Instant::now() + Duration::from_millis(60));
        assert!(matches!(
            quiet.wait(&rx, until, Timeout::Connect),
            Err(ureq::Error::Timeout(Timeout::Connect))
        ));
        assert!(started.elapsed() < Duration::from_millis(60) + 3 * SLICE);
    }
}
