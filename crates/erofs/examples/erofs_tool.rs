//! Command-line front end for trying the crate by hand and timing it:
//!
//! ```text
//! erofs_tool layer IN.tar OUT.erofs [OUT.framing]   (IN.tar may be - for stdin)
//! erofs_tool tar LAYER.erofs LAYER.framing OUT.tar  (OUT.tar may be - for stdout)
//! erofs_tool fsmeta OUT.erofs LAYER.erofs...
//! ```
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let start = Instant::now();
    match args.first().map(String::as_str) {
        Some("layer") if args.len() == 3 || args.len() == 4 => {
            let input: Box<dyn Read> = if args[1] == "-" {
                Box::new(std::io::stdin().lock())
            } else {
                Box::new(File::open(&args[1])?)
            };
            let mut framing: Box<dyn Write> = match args.get(3) {
                Some(p) => Box::new(BufWriter::new(File::create(p)?)),
                None => Box::new(std::io::sink()),
            };
            let s = erofs::build_layer(std::io::BufReader::with_capacity(1 << 20, input), &File::create(&args[2])?, &mut framing)?;
            println!("{s:?}");
        }
        Some("tar") if args.len() == 4 => {
            let mut out: Box<dyn Write> = if args[3] == "-" {
                Box::new(std::io::stdout().lock())
            } else {
                Box::new(File::create(&args[3])?)
            };
            let n = erofs::write_tar(&File::open(&args[1])?, &std::fs::read(&args[2])?, &mut out)?;
            eprintln!("{n} tar bytes");
        }
        Some("fsmeta") if args.len() >= 3 => {
            let layers: Vec<erofs::FsmetaLayer> = args[2..]
                .iter()
                .map(|p| erofs::FsmetaLayer {
                    path: Path::new(p),
                    tag: p.as_bytes(),
                })
                .collect();
            let s = erofs::build_fsmeta(&layers, &File::create(&args[1])?)?;
            println!("{s:?}");
        }
        _ => {
            return Err(
                "usage: erofs_tool layer IN.tar OUT.erofs [OUT.framing] | tar LAYER.erofs LAYER.framing OUT.tar | fsmeta OUT.erofs LAYER.erofs..."
                    .into(),
            )
        }
    }
    eprintln!("took {:?}", start.elapsed());
    Ok(())
}
