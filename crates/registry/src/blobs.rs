//! Blob streaming for the ingest pipeline. The reader hands out exactly the
//! blob's bytes: when a connection breaks or stalls it reconnects and asks
//! for the rest with `Range` (or skips what it already has when the server
//! ignores ranges); it never returns more than the descriptor's size, and a
//! stream that keeps ending early is an error, never an early EOF.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use ureq::http::Response;
use ureq::{Body, BodyReader};

use oci::progress::Progress;
use oci::Descriptor;

use crate::client::{Client, Need};
use crate::error::{Error, Result};
use crate::response::header;
use crate::transport::{classify, Failure};

/// Shortest interval between two progress events of one blob.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);
/// Most reconnections for one blob, however much each one progressed.
const MAX_RESUMES: u32 = 64;

impl Client {
    /// Streams `blob` from the first endpoint that serves it (mirrors, then
    /// the origin). The caller verifies digest and size while reading.
    pub fn open_blob(&self, blob: &Descriptor) -> Result<BlobReader<'_>> {
        let mut reader = BlobReader {
            client: self,
            blob: blob.clone(),
            endpoint: 0,
            body: None,
            offset: 0,
            failures: 0,
            resumes: 0,
            reported: Instant::now(),
            done: false,
        };
        reader.connect()?;
        self.http.emit(Progress::Download {
            digest: blob.digest.clone(),
            downloaded: 0,
            total: blob.size,
        });
        Ok(reader)
    }

    /// The typed error a failed read of `blob` carried, else one naming the
    /// blob's registry, repository and digest.
    pub fn read_error(&self, blob: &Descriptor, error: io::Error) -> Error {
        if error.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            if let Ok(typed) = error.into_inner().expect("checked above").downcast::<Error>() {
                return *typed;
            }
            return Error::Internal("lost a registry error".into());
        }
        let origin = self.endpoints.last().expect("the origin is always an endpoint");
        self.registry_error(origin, Some(&blob.digest), None, format!("reading the blob failed: {error}"))
    }
}

/// One blob's bytes, exactly: reconnects and resumes with `Range` when the
/// stream breaks; its read errors carry the typed [`Error`] (see
/// [`Client::read_error`]).
pub struct BlobReader<'a> {
    client: &'a Client,
    blob: Descriptor,
    /// Index of the endpoint serving the stream.
    endpoint: usize,
    body: Option<BodyReader<'static>>,
    /// Bytes handed out so far.
    offset: u64,
    /// Breaks in a row without progress.
    failures: u32,
    /// Breaks in all.
    resumes: u32,
    reported: Instant,
    done: bool,
}

impl BlobReader<'_> {
    /// (Re)opens the stream at `offset`, from the current endpoint onward.
    fn connect(&mut self) -> Result<()> {
        let (client, blob, offset) = (self.client, &self.blob, self.offset);
        let path = format!("blobs/{}", blob.digest);
        let (endpoint, body) = client.each_endpoint(self.endpoint, Need::Pull, |_, endpoint| {
            let authority = endpoint.target.authority.as_str();
            let what = format!("blob {} from {}/{}", blob.digest, endpoint.target.label, client.reference.path());
            client.get(endpoint, &path, None, offset, Some(&blob.digest), |response| {
                body_at(response, blob, offset, authority, &what)
            })
        })?;
        self.endpoint = endpoint;
        self.body = Some(body);
        Ok(())
    }

    /// A break in the stream: reconnects after a pause, unless breaks keep
    /// coming without progress or too many came in all.
    fn broken(&mut self, reason: String) -> Result<()> {
        self.body = None;
        self.failures += 1;
        self.resumes += 1;
        let policy = &self.client.http.config.retry;
        if self.failures >= policy.attempts.max(1) || self.resumes > MAX_RESUMES {
            let endpoint = &self.client.endpoints[self.endpoint];
            let message = format!(
                "the download broke {} times, at byte {} of {}: {reason}",
                self.resumes, self.offset, self.blob.size
            );
            return Err(self.client.registry_error(endpoint, Some(&self.blob.digest), None, message));
        }
        let wait = policy.delay(self.failures);
        let event = Progress::Retry {
            digest: Some(self.blob.digest.clone()),
            attempt: self.resumes,
            reason,
            wait,
        };
        self.client.http.emit(event);
        self.client.http.pause(wait)?;
        self.connect()
    }

    fn report(&mut self, force: bool) {
        if force || self.reported.elapsed() >= PROGRESS_INTERVAL {
            self.reported = Instant::now();
            let event = Progress::Download {
                digest: self.blob.digest.clone(),
                downloaded: self.offset,
                total: self.blob.size,
            };
            self.client.http.emit(event);
        }
    }

    /// At the blob's end: a body with more to give is the wrong blob.
    fn finish(&mut self) -> Result<()> {
        if let Some(mut body) = self.body.take() {
            let mut probe = [0u8; 1];
            if matches!(body.read(&mut probe), Ok(n) if n > 0) {
                let endpoint = &self.client.endpoints[self.endpoint];
                return Err(Error::DigestMismatch {
                    what: format!(
                        "blob {} from {}/{}",
                        self.blob.digest,
                        endpoint.target.label,
                        self.client.reference.path()
                    ),
                    expected: format!("{} bytes", self.blob.size),
                    actual: "more bytes".into(),
                });
            }
        }
        self.done = true;
        self.report(true);
        Ok(())
    }

    fn read_inner(&mut self, buf: &mut [u8]) -> Result<usize> {
        loop {
            self.client.http.check_cancel()?;
            if buf.is_empty() || self.done {
                return Ok(0);
            }
            if self.offset == self.blob.size {
                self.finish()?;
                return Ok(0);
            }
            let Some(body) = self.body.as_mut() else {
                return Err(Error::Internal("blob stream read after a failure".into()));
            };
            let want = buf.len().min((self.blob.size - self.offset).try_into().unwrap_or(usize::MAX));
            match body.read(&mut buf[..want]) {
                Ok(0) => {
                    self.client.http.check_cancel()?;
                    self.broken("the connection closed early".into())?
                }
                Ok(n) => {
                    self.offset += n as u64;
                    self.failures = 0;
                    self.report(false);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // A read the abort cut short.
                    self.client.http.check_cancel()?;
                    let endpoint = &self.client.endpoints[self.endpoint];
                    match classify(ureq::Error::from(e), &endpoint.target.authority) {
                        Ok(reason) => self.broken(reason)?,
                        Err(message) => return Err(self.client.registry_error(endpoint, Some(&self.blob.digest), None, message)),
                    }
                }
            }
        }
    }
}

impl Read for BlobReader<'_> {
    /// Errors carry the typed `Error` for [`BlobSource::read_error`].
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_inner(buf).map_err(io::Error::other)
    }
}

/// Checks a blob response for a stream starting at `offset` and returns
/// its body positioned there: a 206 must cover exactly the rest; a 200 is
/// the whole blob (the server ignored `Range`), so the head is skipped.
fn body_at(response: Response<Body>, blob: &Descriptor, offset: u64, authority: &str, what: &str) -> Result<BodyReader<'static>, Failure> {
    let fatal = |message: String| Failure::Fatal {
        status: Some(response.status().as_u16()),
        message,
    };
    let skip = match (response.status().as_u16(), offset) {
        (200, offset) => offset,
        (206, offset) if offset > 0 => {
            let range = header(&response, "content-range").unwrap_or_default();
            if !content_range_matches(range, offset, blob.size) {
                return Err(fatal(format!(
                    "{authority} answered a range request with Content-Range {range:?}, expected bytes {offset}-{}/{}",
                    blob.size - 1,
                    blob.size
                )));
            }
            0
        }
        (status, _) => return Err(fatal(format!("{authority} answered HTTP {status} for a blob"))),
    };
    let expected = blob.size - (offset - skip);
    if let Some(length) = header(&response, "content-length").and_then(|v| v.trim().parse::<u64>().ok()) {
        if length != expected {
            return Err(Failure::Stop(Error::DigestMismatch {
                what: what.to_string(),
                expected: format!("{expected} bytes from byte {}", offset - skip),
                actual: format!("{length} bytes (Content-Length)"),
            }));
        }
    }
    let mut body = response.into_body().into_reader();
    if skip > 0 {
        let skipped =
            io::copy(&mut (&mut body).take(skip), &mut io::sink()).map_err(|e| Failure::transport(ureq::Error::from(e), authority))?;
        if skipped < skip {
            return Err(Failure::Transient {
                status: None,
                reason: format!("{authority}: the connection closed early"),
                retry_after: None,
            });
        }
    }
    Ok(body)
}

/// Whether `Content-Range: bytes <offset>-<size-1>/<size or *>`.
fn content_range_matches(range: &str, offset: u64, size: u64) -> bool {
    let Some(rest) = range.trim().strip_prefix("bytes ") else {
        return false;
    };
    let Some((span, total)) = rest.split_once('/') else { return false };
    let Some((start, end)) = span.split_once('-') else { return false };
    let total_ok = total == "*" || total.parse::<u64>() == Ok(size);
    start.parse::<u64>() == Ok(offset) && end.parse::<u64>() == Ok(size - 1) && total_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_content_range() {
        assert!(content_range_matches("bytes 10-99/100", 10, 100));
        assert!(content_range_matches("bytes 10-99/*", 10, 100));
        assert!(!content_range_matches("bytes 0-99/100", 10, 100));
        assert!(!content_range_matches("bytes 10-98/100", 10, 100));
        assert!(!content_range_matches("bytes 10-99/101", 10, 100));
        assert!(!content_range_matches("items 10-99/100", 10, 100));
    }
}
