//! Command-line front end for trying the crate by hand and timing it:
//!
//! ```text
//! erofs_tool layer IN.tar OUT.erofs        (IN.tar may be - for stdin)
//! erofs_tool fsmeta OUT.erofs LAYER.erofs...
//! ```
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let start = Instant::now();
    match args.first().map(String::as_str) {
        Some("layer") if args.len() == 3 => {
            let input: Box<dyn Read> = if args[1] == "-" {
                Box::new(std::io::stdin().lock())
            } else {
                Box::new(File::open(&args[1])?)
            };
            let s = erofs::build_layer(input, &File::create(&args[2])?)?;
            println!("{s:?}");
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
        _ => return Err("usage: erofs_tool layer IN.tar OUT.erofs | fsmeta OUT.erofs LAYER.erofs...".into()),
    }
    eprintln!("took {:?}", start.elapsed());
    Ok(())
}
