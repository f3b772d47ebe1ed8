//! Docker credential helpers (`docker-credential-<name>`), run as Docker
//! runs them: the action (`get`, `store`, `erase`) as the argument, the
//! server URL (or the credentials JSON) on stdin, the answer as JSON on
//! stdout, "credentials not found in native keychain" when there is none.
//! Each run is bounded: past [`HELPER_TIMEOUT`] the helper, and whatever it
//! started (it runs in its own process group), is killed, and a raised
//! cancel flag does the same at once.

use std::ffi::OsString;
use std::fmt;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::net::CancelFlag;

/// Longest a helper may take to answer.
pub(crate) const HELPER_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a running helper is checked on.
const POLL: Duration = Duration::from_millis(10);
/// Most output read from a helper (an answer is a few hundred bytes).
const MAX_OUTPUT: u64 = 1 << 20;
/// What helpers print when they hold nothing for the server (Docker's
/// `credentials.errCredentialsNotFoundMessage`).
const NOT_FOUND: &str = "credentials not found in native keychain";
/// Longest helper message quoted in an error.
const MAX_MESSAGE: usize = 200;

/// The helper's executable name.
pub(crate) fn program(name: &str) -> String {
    format!("docker-credential-{name}")
}

/// What a `get` found.
pub(crate) enum Answer {
    Found { username: String, secret: String },
    NotFound,
}

/// Why a helper gave no usable answer. Its text never quotes what the
/// helper printed on success, only its error message on failure.
#[derive(Debug)]
pub(crate) enum Trouble {
    NotInstalled(String),
    CannotRun(String, std::io::Error),
    TimedOut(String),
    Failed {
        program: String,
        status: ExitStatus,
        message: String,
    },
    Garbage(String),
    Aborted,
}

impl fmt::Display for Trouble {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trouble::NotInstalled(p) => write!(f, "the credential helper {p} is not installed (not found on PATH)"),
            Trouble::CannotRun(p, e) => write!(f, "the credential helper {p} could not be run: {e}"),
            Trouble::TimedOut(p) => write!(
                f,
                "the credential helper {p} did not answer within {} s and was killed",
                HELPER_TIMEOUT.as_secs()
            ),
            Trouble::Failed { program, status, message } if message.is_empty() => {
                write!(f, "the credential helper {program} failed ({status})")
            }
            Trouble::Failed { program, status, message } => write!(f, "the credential helper {program} failed ({status}): {message}"),
            Trouble::Garbage(p) => write!(f, "the credential helper {p} answered something that is not credentials JSON"),
            Trouble::Aborted => f.write_str("operation aborted"),
        }
    }
}

/// How helpers are found and run: the environment they get (and whose
/// `PATH` finds them), None for this process's.
#[derive(Clone, Default)]
pub(crate) struct Helpers {
    env: Option<Arc<Vec<(OsString, OsString)>>>,
}

struct Output {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Helpers {
    pub(crate) fn new(env: Option<Vec<(OsString, OsString)>>) -> Helpers {
        Helpers { env: env.map(Arc::new) }
    }

    /// `get` for `server`.
    pub(crate) fn get(&self, name: &str, server: &str, cancel: &CancelFlag) -> Result<Answer, Trouble> {
        let out = self.run(name, "get", server.as_bytes(), cancel)?;
        if !out.status.success() {
            return match failure(name, &out) {
                Trouble::Failed { message, .. } if message.eq_ignore_ascii_case(NOT_FOUND) => Ok(Answer::NotFound),
                trouble => Err(trouble),
            };
        }
        let value: Value = serde_json::from_slice(&out.stdout).map_err(|_| Trouble::Garbage(program(name)))?;
        let field = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_string);
        match (field("Username"), field("Secret")) {
            (_, Some(secret)) if secret.is_empty() => Ok(Answer::NotFound),
            (username, Some(secret)) => Ok(Answer::Found {
                username: username.unwrap_or_default(),
                secret,
            }),
            _ => Err(Trouble::Garbage(program(name))),
        }
    }

    /// `store` of `username`/`secret` for `server`.
    pub(crate) fn store(&self, name: &str, server: &str, username: &str, secret: &str) -> Result<(), Trouble> {
        let input = serde_json::json!({"ServerURL": server, "Username": username, "Secret": secret}).to_string();
        let out = self.run(name, "store", input.as_bytes(), &CancelFlag::default())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(failure(name, &out))
        }
    }

    /// `erase` for `server`: whether the helper held anything.
    pub(crate) fn erase(&self, name: &str, server: &str) -> Result<bool, Trouble> {
        let out = self.run(name, "erase", server.as_bytes(), &CancelFlag::default())?;
        if out.status.success() {
            return Ok(true);
        }
        match failure(name, &out) {
            Trouble::Failed { message, .. } if message.eq_ignore_ascii_case(NOT_FOUND) => Ok(false),
            trouble => Err(trouble),
        }
    }

    /// The helper's path, searched on the helpers' `PATH`.
    fn locate(&self, program: &str) -> Option<PathBuf> {
        let path = match &self.env {
            Some(env) => env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.clone()),
            None => std::env::var_os("PATH"),
        }?;
        let names: Vec<String> = if cfg!(windows) {
            [".exe", ".cmd", ".bat"].iter().map(|ext| format!("{program}{ext}")).collect()
        } else {
            vec![program.to_string()]
        };
        std::env::split_paths(&path)
            .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
            .find(|p| executable(p))
    }

    fn run(&self, name: &str, action: &str, input: &[u8], cancel: &CancelFlag) -> Result<Output, Trouble> {
        let program = program(name);
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
            return Err(Trouble::NotInstalled(program));
        }
        let path = self.locate(&program).ok_or_else(|| Trouble::NotInstalled(program.clone()))?;
        let mut command = Command::new(path);
        command
            .arg(action)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(env) = &self.env {
            command.env_clear().envs(env.iter().map(|(k, v)| (k, v)));
        }
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command.spawn().map_err(|e| Trouble::CannotRun(program.clone(), e))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A helper that exits without reading its input is judged by its answer.
            let _ = stdin.write_all(input);
        }
        let stdout = collect(child.stdout.take());
        let stderr = collect(child.stderr.take());
        let deadline = Instant::now() + HELPER_TIMEOUT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => {}
                Err(e) => {
                    kill(&mut child);
                    return Err(Trouble::CannotRun(program, e));
                }
            }
            if cancel.raised() {
                kill(&mut child);
                return Err(Trouble::Aborted);
            }
            if Instant::now() >= deadline {
                kill(&mut child);
                return Err(Trouble::TimedOut(program));
            }
            std::thread::sleep(POLL);
        };
        Ok(Output {
            status,
            stdout: stdout.take(),
            stderr: stderr.take(),
        })
    }
}

/// The failure a helper's non-zero exit reports: its first line of output
/// (helpers print their error on stdout), shortened, control characters out.
fn failure(name: &str, out: &Output) -> Trouble {
    let text = if out.stdout.iter().any(|b| !b.is_ascii_whitespace()) {
        &out.stdout
    } else {
        &out.stderr
    };
    let text = String::from_utf8_lossy(text);
    let line = text.trim().lines().next().unwrap_or_default().trim();
    let mut message: String = line.chars().filter(|c| !c.is_control()).take(MAX_MESSAGE).collect();
    if line.chars().count() > MAX_MESSAGE {
        message.push('…');
    }
    Trouble::Failed {
        program: program(name),
        status: out.status,
        message,
    }
}

/// A pipe read to its end (or [`MAX_OUTPUT`]) on a thread, so a chatty
/// helper never blocks on a full pipe.
struct Collected {
    bytes: Arc<Mutex<Vec<u8>>>,
    done: mpsc::Receiver<()>,
}

impl Collected {
    /// What was read, waiting a moment for the end: something the helper
    /// started may hold the pipe open after it exited.
    fn take(self) -> Vec<u8> {
        let _ = self.done.recv_timeout(Duration::from_secs(1));
        std::mem::take(&mut *self.bytes.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}

fn collect(pipe: Option<impl Read + Send + 'static>) -> Collected {
    let bytes = Arc::new(Mutex::new(Vec::new()));
    let (tx, done) = mpsc::channel();
    if let Some(pipe) = pipe {
        let bytes = bytes.clone();
        std::thread::spawn(move || {
            let mut pipe = pipe.take(MAX_OUTPUT);
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                bytes
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .extend_from_slice(&buf[..n]);
            }
            let _ = tx.send(());
        });
    }
    Collected { bytes, done }
}

/// Kills the helper and everything in its process group, and reaps it.
fn kill(child: &mut Child) {
    #[cfg(unix)]
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) on the group the helper leads (process_group(0) above).
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn executable(path: &std::path::Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}
