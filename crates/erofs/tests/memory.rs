//! Memory and disk budget of `build_layer` on hostile and on large
//! archives, measured honestly: each archive is built in a child process
//! of its own (this binary, re-run with `--child NAME`) whose peak RSS
//! (VmHWM in /proc/self/status) is compared with the budget
//! `MEMORY_BASE + MEMORY_PER_ENTRY * entries`. Archives are generated
//! while they are read, so the generator costs no memory.
//!
//! `cargo test --release -p msb-erofs --test memory -- --report` prints
//! the numbers of every case.

mod common;

use std::io::Read;
use std::process::Command;
use std::time::Instant;

use common::*;

/// A tar produced entry by entry: `next(i)` returns the bytes of the
/// i-th piece, `None` after the last; end-of-archive blocks follow.
struct Stream<F> {
    next: F,
    index: u64,
    buf: Vec<u8>,
    pos: usize,
    done: bool,
}

impl<F: FnMut(u64) -> Option<Vec<u8>>> Read for Stream<F> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            if self.done {
                return Ok(0);
            }
            self.pos = 0;
            self.buf = match (self.next)(self.index) {
                Some(b) => b,
                None => {
                    self.done = true;
                    vec![0u8; 1024]
                }
            };
            self.index += 1;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn stream<F: FnMut(u64) -> Option<Vec<u8>>>(next: F) -> Stream<F> {
    Stream {
        next,
        index: 0,
        buf: Vec::new(),
        pos: 0,
        done: false,
    }
}

/// A global pax header.
fn global(records: &[String]) -> Vec<u8> {
    let mut g = pax_header(records);
    g[156] = b'g';
    fix_checksum(&mut g[..512]);
    g
}

fn empty_file(name: &str) -> Vec<u8> {
    ustar_header(&Member::file(name, b""), 0).to_vec()
}

/// One case: its tar entries (for the budget) and the stream.
struct Case {
    name: &'static str,
    /// Entries (files, links, directories) the archive holds.
    entries: u64,
    /// What the case is, for the report.
    what: &'static str,
    /// The outcome: "ok", or the error variant.
    expect: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "deep-path",
        entries: 1,
        what: "one pax path of 1,000,000 components",
        expect: "TooLarge",
    },
    Case {
        name: "global-xattrs",
        entries: 4000,
        what: "a global pax header of 4 xattrs of 60,000 bytes, then 4,000 empty files",
        expect: "TooLarge",
    },
    Case {
        name: "global-xattr",
        entries: 4000,
        what: "a global pax header of one 60,000-byte xattr, then 4,000 empty files",
        expect: "ok",
    },
    Case {
        name: "global-comment",
        entries: 400,
        what: "a global pax comment of 60 MiB, then 400 empty files",
        expect: "TooLarge",
    },
    Case {
        name: "sparse-2^50",
        entries: 1,
        what: "a PAX 0.1 sparse file of 2^50 bytes with one data byte at the end",
        expect: "TooLarge",
    },
    Case {
        name: "sparse-2^62",
        entries: 1,
        what: "a PAX 0.1 sparse file of 2^62 bytes with one data byte at the end",
        expect: "TooLarge",
    },
    Case {
        name: "many-files",
        entries: 1_000_000,
        what: "1,000,000 empty files in 1,000 directories",
        expect: "ok",
    },
    Case {
        name: "hardlinks",
        entries: 500_001,
        what: "one file and 500,000 hardlinks to it",
        expect: "ok",
    },
    Case {
        name: "same-path",
        entries: 1_000_000,
        what: "1,000,000 entries of the same path",
        expect: "ok",
    },
    Case {
        name: "long-symlinks",
        entries: 50_000,
        what: "50,000 symlinks with 4,095-byte targets",
        expect: "TooLarge",
    },
    Case {
        name: "deep-trees",
        entries: 2_000,
        what: "2,000 files, each at the end of its own 2,000-deep implicit path",
        expect: "TooLarge",
    },
];

/// The archive of case `name`, streamed.
fn archive(name: &str) -> Box<dyn Read> {
    match name {
        "deep-path" => {
            let path = "a/".repeat(1_000_000) + "f";
            let mut tar = pax_header(&[format!("path={path}")]);
            tar.extend(empty_file("f"));
            Box::new(std::io::Cursor::new([tar, vec![0u8; 1024]].concat()))
        }
        "global-xattrs" => {
            let records: Vec<String> = (0..4).map(|i| format!("SCHILY.xattr.user.x{i}={}", "v".repeat(60_000))).collect();
            let g = global(&records);
            Box::new(stream(move |i| match i {
                0 => Some(g.clone()),
                1..=4000 => Some(empty_file(&format!("f{i}"))),
                _ => None,
            }))
        }
        "global-xattr" => {
            let g = global(&[format!("SCHILY.xattr.user.big={}", "v".repeat(60_000))]);
            Box::new(stream(move |i| match i {
                0 => Some(g.clone()),
                1..=4000 => Some(empty_file(&format!("f{i}"))),
                _ => None,
            }))
        }
        "global-comment" => {
            // "LEN comment=ccc...\n", streamed a MiB at a time.
            let (chunks, prefix) = (60usize, "comment=");
            let mut len = prefix.len() + (chunks << 20) + 1;
            len += format!("{len} ").len();
            let mut header = Member::file("PaxHeader", b"");
            header.typeflag = b'g';
            let head = ustar_header(&header, len as u64).to_vec();
            Box::new(stream(move |i| match i as usize {
                0 => Some([head.clone(), format!("{len} {prefix}").into_bytes()].concat()),
                n if n <= chunks => Some(vec![b'c'; 1 << 20]),
                n if n == chunks + 1 => {
                    let mut tail = b"\n".to_vec();
                    tail.resize(1 + (512 - len % 512) % 512, 0);
                    Some(tail)
                }
                n if n <= chunks + 401 => Some(empty_file(&format!("f{n}"))),
                _ => None,
            }))
        }
        "sparse-2^50" | "sparse-2^62" => {
            let size: u64 = if name == "sparse-2^50" { 1 << 50 } else { 1 << 62 };
            let mut tar = pax_header(&[
                format!("GNU.sparse.size={size}"),
                format!("GNU.sparse.map={},1", size - 1),
                "GNU.sparse.name=sparse".into(),
            ]);
            tar.extend(ustar_members(&[Member::file("GNUSparseFile.0/sparse", b"x")]));
            Box::new(std::io::Cursor::new([tar, vec![0u8; 1024]].concat()))
        }
        "many-files" => Box::new(stream(|i| {
            (i < 1_000_000).then(|| empty_file(&format!("d{:03}/file-{i:07}", i % 1000)))
        })),
        "hardlinks" => Box::new(stream(|i| match i {
            0 => Some(ustar_members(&[Member::file("target", b"data")])),
            1..=500_000 => Some(ustar_header(&Member::hardlink(&format!("link-{i:07}"), "target"), 0).to_vec()),
            _ => None,
        })),
        "same-path" => Box::new(stream(|i| (i < 1_000_000).then(|| empty_file("x")))),
        "long-symlinks" => {
            let target = "t".repeat(4095);
            Box::new(stream(move |i| {
                (i < 50_000).then(|| {
                    let mut tar = pax_header(&[format!("linkpath={target}")]);
                    let mut m = Member::file("", b"");
                    let name = format!("l{i}");
                    m.name = name.as_bytes();
                    m.typeflag = b'2';
                    tar.extend(ustar_header(&m, 0));
                    tar
                })
            }))
        }
        "deep-trees" => Box::new(stream(|i| {
            (i < 2_000).then(|| {
                let path = format!("r{i}/") + &"d/".repeat(1_999) + "f";
                let mut tar = pax_header(&[format!("path={path}")]);
                tar.extend(empty_file("f"));
                tar
            })
        })),
        _ => panic!("unknown case {name}"),
    }
}

/// Peak resident set of this process, in bytes.
fn vm_hwm() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// Child: builds the case's layer, prints `result peak image_bytes seconds`.
fn child(name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let out = std::fs::File::create(&img).unwrap();
    let start = Instant::now();
    let result = erofs::build_layer(
        std::io::BufReader::with_capacity(1 << 20, archive(name)),
        &out,
        &mut std::io::sink(),
    );
    let secs = start.elapsed().as_secs_f64();
    let on_disk = std::fs::metadata(&img).unwrap().len();
    let verdict = match result {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("{e:?}").split([' ', '{', '(']).next().unwrap().to_string(),
    };
    println!("{verdict} {} {on_disk} {secs:.2}", vm_hwm());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        return child(&args[i + 1]);
    }
    let report = args.iter().any(|a| a == "--report");
    let filter = args.iter().skip(1).find(|a| !a.starts_with("--")).cloned();
    let (mut passed, mut failed) = (0, 0);
    for case in CASES.iter().filter(|c| filter.as_ref().is_none_or(|f| c.name.contains(f.as_str()))) {
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--child", case.name])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let fields: Vec<&str> = text.split_whitespace().collect();
        let budget = erofs::limits::MEMORY_BASE + erofs::limits::MEMORY_PER_ENTRY * case.entries;
        let ok = out.status.success()
            && fields.len() == 4
            && fields[0] == case.expect
            && fields[1].parse::<u64>().is_ok_and(|peak| peak <= budget);
        if report || !ok {
            println!(
                "{:<16} {:<8} (expected {:<8}) peak {:>6} MiB of {:>6} MiB budget, image {:>8} KiB, {:>6} s: {}",
                case.name,
                fields.first().unwrap_or(&"crashed"),
                case.expect,
                fields.get(1).and_then(|p| p.parse::<u64>().ok()).map_or(0, |p| p >> 20),
                budget >> 20,
                fields.get(2).and_then(|p| p.parse::<u64>().ok()).map_or(0, |p| p >> 10),
                fields.get(3).unwrap_or(&"-"),
                case.what
            );
        }
        if !ok {
            eprintln!("{}: {}", case.name, String::from_utf8_lossy(&out.stderr));
        }
        if ok {
            passed += 1;
        } else {
            failed += 1;
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
