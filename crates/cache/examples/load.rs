//! Loads an image archive into a cache and reports the time and the peak
//! resident memory of the whole process, so benchmarks can measure the
//! engine without a JavaScript runtime around it.
//!
//!     cargo run --release --example load -- <archive> <cache-dir>

use std::time::Instant;

fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(archive), Some(home)) = (args.next(), args.next()) else {
        eprintln!("usage: load <archive> <cache-dir>");
        std::process::exit(2);
    };
    let started = Instant::now();
    let result = cache::Cache::open(home.as_ref()).and_then(|c| c.load(archive.as_ref(), &cache::LoadOptions::default()));
    let seconds = started.elapsed().as_secs_f64();
    match result {
        Ok(images) => println!(
            "{{\"seconds\":{seconds},\"peakRssBytes\":{},\"references\":{}}}",
            peak_rss_bytes().unwrap_or(0),
            images.len()
        ),
        Err(e) => {
            eprintln!("{}: {e}", e.code());
            std::process::exit(1);
        }
    }
}
