//! Docker credential helpers for the tests: Debian's real
//! `docker-credential-pass` over a password store encrypted to a
//! throw-away GnuPG key made here, and small helper scripts that misbehave
//! on purpose. Everything lives in one temporary directory; the GnuPG agent
//! the store starts is stopped when the store is dropped.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

use super::{require_tool, run};

/// A password store and a directory of helper scripts, with the
/// environment helpers run in.
pub struct PassStore {
    pub dir: TempDir,
    gnupg: PathBuf,
    store: PathBuf,
    /// Helper scripts, first on the helpers' `PATH`.
    pub bin: PathBuf,
}

impl PassStore {
    /// A fresh GnuPG home with one passphrase-less key, and `pass init` to it.
    pub fn new() -> PassStore {
        for tool in ["docker-credential-pass", "pass", "gpg", "gpgconf"] {
            require_tool(tool);
        }
        let dir = tempfile::tempdir().unwrap();
        let (gnupg, store, bin) = (dir.path().join("g"), dir.path().join("store"), dir.path().join("bin"));
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&gnupg).unwrap();
        std::fs::set_permissions(&gnupg, std::fs::Permissions::from_mode(0o700)).unwrap();
        let pass = PassStore { dir, gnupg, store, bin };
        let uid = "microsandbox test <test@example.invalid>";
        run(pass
            .command("gpg")
            .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args(["--quick-gen-key", uid, "future-default", "default", "never"]));
        let keys = run(pass.command("gpg").args(["--list-keys", "--with-colons"]));
        let fingerprint = keys
            .lines()
            .find_map(|l| l.strip_prefix("fpr:").map(|rest| rest.trim_matches(':').to_string()))
            .expect("gpg made a key");
        run(pass.command("pass").args(["init", &fingerprint]));
        pass
    }

    /// The environment credential helpers run in.
    pub fn env(&self) -> Vec<(OsString, OsString)> {
        let path = std::env::join_paths(
            std::iter::once(self.bin.clone()).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
        )
        .unwrap();
        vec![
            ("PATH".into(), path),
            ("HOME".into(), self.dir.path().into()),
            ("GNUPGHOME".into(), self.gnupg.clone().into()),
            ("PASSWORD_STORE_DIR".into(), self.store.clone().into()),
        ]
    }

    /// `program` in the helpers' environment.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.env_clear().envs(self.env());
        command
    }

    /// Runs `docker-credential-pass <action>` with `input` on stdin; its stdout.
    pub fn pass(&self, action: &str, input: &str) -> String {
        let mut child = self
            .command("docker-credential-pass")
            .arg(action)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "docker-credential-pass {action}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Stores credentials for `server` with the real helper (registering the secret).
    pub fn store(&self, server: &str, username: &str, secret: &str) {
        super::secrets::register_basic(username, secret);
        let json = serde_json::json!({"ServerURL": server, "Username": username, "Secret": secret});
        self.pass("store", &json.to_string());
    }

    /// `docker-credential-pass list`: server URL → username.
    pub fn list(&self) -> serde_json::Map<String, serde_json::Value> {
        serde_json::from_str(&self.pass("list", "")).unwrap()
    }

    /// Writes `docker-credential-<name>` as a shell script with `body`.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.bin.join(format!("docker-credential-{name}"));
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// A Docker config file here with `json` as its content.
    pub fn docker_config(&self, json: serde_json::Value) -> PathBuf {
        let path = self.dir.path().join("docker-config.json");
        std::fs::write(&path, json.to_string()).unwrap();
        path
    }
}

impl Drop for PassStore {
    fn drop(&mut self) {
        let _ = self.command("gpgconf").args(["--kill", "gpg-agent"]).status();
    }
}

/// Whether the process `pid` is gone (waiting up to 2 s for it to be reaped).
pub fn gone(pid: u32) -> bool {
    let proc = Path::new("/proc").join(pid.to_string());
    for _ in 0..40 {
        let zombie = std::fs::read_to_string(proc.join("stat")).is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"));
        if !proc.exists() || zombie {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}
