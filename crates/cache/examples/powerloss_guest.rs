//! The workload of the power-loss harness (__test__/support/powerloss.ts):
//! it runs inside a VM on an ext4 disk, and the host kills the VM (a power
//! cut) while it works, then checks what the disk kept. It exists because
//! a process kill cannot lose what a power cut loses: writes still in the
//! kernel's page cache, renames not yet in the journal.
//!
//!     powerloss_guest <cache-home> <seed> <ops> <archive>...
//!
//! Opens the cache (the recovery a boot after a power cut does), then runs
//! `ops` operations chosen by a seeded PRNG from what the cache holds:
//! load (one of the archives), remove, prune, tag, acquire, release and
//! check with repair. Before and after each it writes a line to stdout,
//! which the harness's init points at the second UART:
//!
//!     VMH-PL begin <n> <operation as JSON>
//!     VMH-PL end <n> ok <references after it, JSON>
//!     VMH-PL end <n> err <code> <references after it, JSON> <message>
//!
//! Operation 0 is `{"op":"open"}`. Operations are spelt as the crash
//! harness's worker runs them (__test__/support/crash-worker.js), so the
//! host can run a killed one again. Each line is drained to the UART
//! (`tcdrain`) before the program goes on, so the host knows which
//! operation a kill landed in. Exits 1 if an operation fails with a code
//! the state does not explain (anything but `image_not_found` or
//! `image_in_use`).

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use cache::{Cache, LoadOptions};
use serde_json::{json, Value};

/// Errors the state of the cache explains: the reference went, or a sandbox holds it.
const LEGITIMATE: &[&str] = &["image_not_found", "image_in_use"];

/// Sandboxes the workload acquires and releases, from a small pool so that
/// boots after a power cut release what an earlier boot acquired.
const SANDBOXES: u64 = 3;

/// splitmix64: a seeded PRNG small enough to live here.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True with probability `percent`/100.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

/// Writes one marker line and waits until the UART has sent it.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // A lost marker only makes the host's accounting coarser; nothing to do about it here.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    // SAFETY: tcdrain only reads the descriptor; on a non-terminal it fails harmlessly.
    unsafe { libc::tcdrain(out.as_raw_fd()) };
}

fn references(cache: &Cache) -> Vec<String> {
    cache
        .list()
        .map(|l| l.iter().map(|s| s.reference.to_string()).collect())
        .unwrap_or_default()
}

/// Chooses operation `n` from what the cache holds.
fn choose(rng: &mut Rng, n: u64, present: &[String], archives: &[PathBuf]) -> Value {
    let sandbox = format!("powerloss-sb-{}", rng.below(SANDBOXES));
    let kind = if present.is_empty() { 0 } else { rng.below(10) };
    match kind {
        0..=2 => json!({ "op": "load", "path": rng.pick(archives).to_string_lossy() }),
        3 | 4 => json!({ "op": "remove", "ref": rng.pick(present), "force": rng.chance(30) }),
        5 => json!({ "op": "prune" }),
        6 => json!({ "op": "tag", "source": rng.pick(present), "target": format!("localhost/powerloss/tag{}:v1", n % 3) }),
        7 => json!({ "op": "acquire", "ref": rng.pick(present), "sandbox": sandbox }),
        8 => json!({ "op": "release", "sandbox": sandbox }),
        _ => json!({ "op": "check", "repair": true, "full": rng.chance(50) }),
    }
}

/// Runs one operation as crash-worker.js would.
fn run(cache: &Cache, op: &Value) -> cache::Result<()> {
    let s = |k: &str| op[k].as_str().unwrap_or_default().to_string();
    match op["op"].as_str().unwrap_or_default() {
        "load" => cache.load(Path::new(&s("path")), &LoadOptions::default()).map(drop),
        "remove" => cache.remove(&s("ref"), op["force"].as_bool().unwrap_or(false)).map(drop),
        "prune" => cache.prune().map(drop),
        "tag" => cache.tag(&s("source"), &s("target")).map(drop),
        "acquire" => cache.acquire(&s("ref"), &s("sandbox")).map(drop),
        "release" => cache.release(&s("sandbox")).map(drop),
        "check" => cache.check(op["full"].as_bool().unwrap_or(false), true).map(drop),
        other => Err(cache::Error::InvalidArgument(format!("unknown operation {other}"))),
    }
}

/// Reports the end of operation `n`; false when it failed for no good reason.
fn report(n: u64, result: &cache::Result<()>, refs: &[String]) -> bool {
    let refs = json!(refs);
    match result {
        Ok(()) => {
            say(&format!("VMH-PL end {n} ok {refs}"));
            true
        }
        Err(e) => {
            let message = e.to_string().replace('\n', " ");
            say(&format!("VMH-PL end {n} err {} {refs} {message}", e.code()));
            LEGITIMATE.contains(&e.code())
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(home), Some(Ok(seed)), Some(Ok(ops))) = (args.first(), args.get(1).map(|s| s.parse()), args.get(2).map(|s| s.parse::<u64>()))
    else {
        eprintln!("usage: powerloss_guest <cache-home> <seed> <ops> <archive>...");
        std::process::exit(2);
    };
    let archives: Vec<PathBuf> = args[3..].iter().map(PathBuf::from).collect();
    if archives.is_empty() {
        eprintln!("powerloss_guest: no archives");
        std::process::exit(2);
    }
    let mut rng = Rng(seed);
    say(&format!("VMH-PL begin 0 {}", json!({ "op": "open" })));
    let cache = match Cache::open(Path::new(home)) {
        Ok(cache) => cache,
        Err(e) => {
            report(0, &Err(e), &[]);
            std::process::exit(1);
        }
    };
    let mut present = references(&cache);
    let mut sound = report(0, &Ok(()), &present);
    for n in 1..=ops {
        let op = choose(&mut rng, n, &present, &archives);
        say(&format!("VMH-PL begin {n} {op}"));
        let result = run(&cache, &op);
        present = references(&cache);
        sound &= report(n, &result, &present);
    }
    std::process::exit(if sound { 0 } else { 1 });
}
