//! A tiny HTTP/1.1 server on 127.0.0.1 for faults a real registry never
//! makes: each connection carries one request, answered as the test's
//! handler says (a reply, a cut or reset mid-body, a stall), and every
//! request is recorded. Also a default in-memory registry to build on.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use oci::digest::Digest;
use serde_json::json;

use super::image::Image;

/// How long a connection may sit idle before the server drops it.
const IDLE: Duration = Duration::from_secs(10);
const MAX_HEAD: usize = 64 << 10;

/// One request as received.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body (by Content-Length; empty without one).
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// What to answer.
pub enum Reply {
    /// A complete response; `length` says whether to send Content-Length
    /// (else the body is delimited by closing the connection).
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        length: bool,
    },
    /// Promise `declared` bytes, send `body`, then cut the connection:
    /// with a TCP reset when `reset`, else a plain close.
    Cut {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        declared: usize,
        reset: bool,
    },
    /// Say nothing for this long, then close.
    Stall(Duration),
    /// A complete head (with Content-Length), then the body one byte per
    /// `every`, until it is sent or the client goes away.
    Drip {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        every: Duration,
    },
    /// These raw bytes (a head cut short), then nothing for this long.
    Partial(Vec<u8>, Duration),
}

impl Reply {
    pub fn new(status: u16, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> Reply {
        let headers = headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        Reply::Full {
            status,
            headers,
            body: body.into(),
            length: true,
        }
    }

    /// A registry-style JSON error.
    pub fn error(status: u16, code: &str, message: &str) -> Reply {
        let body = json!({"errors": [{"code": code, "message": message}]}).to_string();
        Reply::new(status, &[("Content-Type", "application/json")], body)
    }
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

/// A running server; stops when dropped.
pub struct Server {
    pub port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let thread = {
            let (requests, stop) = (requests.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (handler, requests) = (handler.clone(), requests.clone());
                    std::thread::spawn(move || serve(stream, &*handler, &requests));
                }
            })
        };
        Server {
            port,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Requests whose path starts with `prefix`.
    pub fn requests_to(&self, prefix: &str) -> Vec<Request> {
        self.requests().into_iter().filter(|r| r.path.starts_with(prefix)).collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(stream: TcpStream, handler: &Handler, requests: &Mutex<Vec<Request>>) {
    stream.set_read_timeout(Some(IDLE)).unwrap();
    let Some(request) = read_request(&stream) else { return };
    requests.lock().unwrap().push(request.clone());
    let mut stream = stream;
    match handler(&request) {
        Reply::Full {
            status,
            headers,
            body,
            length,
        } => {
            let mut head = status_line(status, &headers);
            if length {
                head.push_str(&format!("Content-Length: {}\r\n", body.len()));
            }
            head.push_str("Connection: close\r\n\r\n");
            let _ = stream.write_all(head.as_bytes());
            if request.method != "HEAD" {
                let _ = stream.write_all(&body);
            }
        }
        Reply::Cut {
            status,
            headers,
            body,
            declared,
            reset,
        } => {
            let mut head = status_line(status, &headers);
            head.push_str(&format!("Content-Length: {declared}\r\nConnection: close\r\n\r\n"));
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
            let _ = stream.flush();
            std::thread::sleep(Duration::from_millis(20));
            if reset {
                set_linger_zero(&stream);
            }
            return;
        }
        Reply::Stall(duration) => {
            std::thread::sleep(duration);
            return;
        }
        Reply::Drip {
            status,
            headers,
            body,
            every,
        } => {
            let mut head = status_line(status, &headers);
            head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
            if stream.write_all(head.as_bytes()).is_err() {
                return;
            }
            for byte in body {
                std::thread::sleep(every);
                if stream.write_all(&[byte]).and_then(|()| stream.flush()).is_err() {
                    return;
                }
            }
        }
        Reply::Partial(bytes, duration) => {
            let _ = stream.write_all(&bytes);
            let _ = stream.flush();
            std::thread::sleep(duration);
            return;
        }
    }
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Write);
    // Drain until the client closes, so the close is orderly.
    let _ = std::io::copy(&mut stream.take(1 << 20), &mut std::io::sink());
}

/// Makes the next close send a TCP reset instead of a FIN.
fn set_linger_zero(stream: &TcpStream) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: a valid socket descriptor and a correctly sized option value.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt(SO_LINGER) failed");
}

fn status_line(status: u16, headers: &[(String, String)]) -> String {
    let mut head = format!("HTTP/1.1 {status} Status\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head
}

/// Reads the request head; None for anything that is not HTTP (a TLS
/// handshake, say), which just gets the connection closed.
fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut first = [0u8; 1];
    if stream.peek(&mut first).ok()? == 0 || !first[0].is_ascii_uppercase() {
        return None;
    }
    let mut reader = BufReader::new(stream.take(MAX_HEAD as u64));
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path, version) = (parts.next()?.to_string(), parts.next()?.to_string(), parts.next()?);
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length.min(MAX_HEAD)];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        path,
        headers,
        body,
    })
}

/// An in-memory registry: manifests by tag or digest, blobs with `Range`.
#[derive(Clone, Default)]
pub struct Content {
    pub repository: String,
    /// Tag or digest → (media type, bytes).
    pub manifests: HashMap<String, (String, Vec<u8>)>,
    pub blobs: HashMap<String, Vec<u8>>,
}

impl Content {
    /// `repository` holding `image` under `tag` (and its digest).
    pub fn with_image(repository: &str, tag: &str, image: &Image) -> Content {
        let mut content = Content {
            repository: repository.into(),
            ..Content::default()
        };
        content.add_manifest(tag, oci::manifest::OCI_MANIFEST, &image.manifest);
        for (digest, bytes) in image.blobs() {
            content.blobs.insert(digest.to_string(), bytes);
        }
        content
    }

    /// Serves `bytes` under `tag` and under its digest.
    pub fn add_manifest(&mut self, tag: &str, media_type: &str, bytes: &[u8]) {
        let entry = (media_type.to_string(), bytes.to_vec());
        self.manifests.insert(Digest::of(bytes).to_string(), entry.clone());
        self.manifests.insert(tag.to_string(), entry);
    }

    /// The answer a well-behaved registry gives.
    pub fn serve(&self, request: &Request) -> Reply {
        if request.path == "/v2/" {
            return Reply::new(200, &[("Content-Type", "application/json")], "{}");
        }
        let prefix = format!("/v2/{}/", self.repository);
        let Some(rest) = request.path.strip_prefix(&prefix) else {
            return Reply::error(404, "NAME_UNKNOWN", "repository name not known to registry");
        };
        if let Some(reference) = rest.strip_prefix("manifests/") {
            return match self.manifests.get(reference) {
                Some((media_type, bytes)) => {
                    let digest = Digest::of(bytes).to_string();
                    Reply::new(
                        200,
                        &[("Content-Type", media_type), ("Docker-Content-Digest", &digest)],
                        bytes.clone(),
                    )
                }
                None => Reply::error(404, "MANIFEST_UNKNOWN", "manifest unknown"),
            };
        }
        if let Some(digest) = rest.strip_prefix("blobs/") {
            return match self.blobs.get(digest) {
                Some(bytes) => blob_reply(request, bytes),
                None => Reply::error(404, "BLOB_UNKNOWN", "blob unknown to registry"),
            };
        }
        Reply::error(404, "UNSUPPORTED", "not found")
    }
}

/// A blob, honoring `Range: bytes=N-`.
pub fn blob_reply(request: &Request, bytes: &[u8]) -> Reply {
    let start = request
        .header("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    match start {
        Some(start) if start < bytes.len() => {
            let range = format!("bytes {start}-{}/{}", bytes.len() - 1, bytes.len());
            Reply::new(
                206,
                &[("Content-Type", "application/octet-stream"), ("Content-Range", &range)],
                &bytes[start..],
            )
        }
        _ => Reply::new(
            200,
            &[("Content-Type", "application/octet-stream"), ("Accept-Ranges", "bytes")],
            bytes,
        ),
    }
}

/// A small reverse proxy on the fake server: a request whose path starts
/// with `prefix` goes to `upstream` (`http://host:port`) with the prefix
/// cut off (so `/cache/v2/…` reaches `/v2/…`), and its answer comes back
/// as is; anything else is a 404. What a registry behind a path-routing
/// front end looks like to a client. Every request is recorded.
pub fn rewriting_proxy(upstream: String, prefix: &'static str) -> Server {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    Server::start(move |request| {
        let Some(rest) = request.path.strip_prefix(prefix) else {
            return Reply::error(404, "NOT_FOUND", "outside the proxied prefix");
        };
        let mut forward = agent.get(format!("{upstream}{rest}"));
        for (name, value) in &request.headers {
            if ["accept", "authorization", "range"].contains(&name.as_str()) {
                forward = forward.header(name, value);
            }
        }
        let Ok(response) = forward.call() else {
            return Reply::error(502, "BAD_GATEWAY", "upstream failed");
        };
        let keep = [
            "content-type",
            "docker-content-digest",
            "www-authenticate",
            "content-range",
            "location",
        ];
        let headers = response
            .headers()
            .iter()
            .filter(|(n, _)| keep.contains(&n.as_str()))
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_string()))
            .collect();
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .into_with_config()
            .limit(64 << 20)
            .read_to_vec()
            .unwrap_or_default();
        Reply::Full {
            status,
            headers,
            body,
            length: true,
        }
    })
}
