//! Recently read windows of an image, for reads outside its preloaded
//! metadata area: a layer whose records lie among its data is read
//! through them, with memory bounded whatever the layer's size.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

/// Size and number of the windows kept.
const WINDOW: u64 = 128 << 10;
const WINDOWS: usize = 8;

/// The most recently used windows, newest last: records of a packed layer
/// are read in directory order, which is mostly the order they were
/// written in.
#[derive(Default)]
pub struct Windows(Vec<(u64, Box<[u8]>)>);

impl Windows {
    /// The `len` bytes at `off` of `file` (of `file_len` bytes, which the
    /// range lies within), or `None` when they do not lie in one window.
    pub fn read(&mut self, file: &File, file_len: u64, off: u64, len: usize) -> std::io::Result<Option<Vec<u8>>> {
        let window = off - off % WINDOW;
        if off + len as u64 > window + WINDOW {
            return Ok(None);
        }
        let i = match self.0.iter().position(|w| w.0 == window) {
            Some(i) => i,
            None => {
                let mut buf = vec![0u8; WINDOW.min(file_len - window) as usize];
                let mut f = file;
                f.seek(SeekFrom::Start(window))?;
                f.read_exact(&mut buf)?;
                if self.0.len() == WINDOWS {
                    self.0.remove(0);
                }
                self.0.push((window, buf.into()));
                self.0.len() - 1
            }
        };
        let w = self.0.remove(i);
        let s = (off - window) as usize;
        let out = w.1[s..s + len].to_vec();
        self.0.push(w);
        Ok(Some(out))
    }
}
