//! Recently read windows of an image, for reads outside its preloaded
//! metadata area: a layer whose records lie among its data is read
//! through them, with memory bounded whatever the layer's size.

use std::fs::File;

use crate::sequential::read_exact_at;

/// Size and number of the windows kept. A sorted archive puts a
/// directory's subdirectories between its files, so a walk comes back to
/// regions it left: fsmeta's merge of a layer of 30,000 small files read
/// its 68 MiB twice over through 8 windows of 128 KiB (117 ms), 1.3 times
/// through 32 of 64 KiB (78 ms); more or smaller windows gained nothing.
const WINDOW: u64 = 64 << 10;
const WINDOWS: usize = 32;

/// The most recently used windows, newest last: records of a packed layer
/// are read in directory order, which is mostly the order they were
/// written in, so a walk reads nearly the whole image through them. The
/// oldest window's buffer is reused for the next: a fresh buffer per
/// window (at 128 KiB an `mmap`) meant page faults and zeroing every
/// time, a fifth of a walk of a layer of small files.
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
        let w = match self.0.iter().position(|w| w.0 == window) {
            Some(i) => self.0.remove(i),
            None => {
                let mut buf = if self.0.len() == WINDOWS {
                    self.0.remove(0).1
                } else {
                    vec![0u8; WINDOW as usize].into()
                };
                let size = WINDOW.min(file_len - window) as usize;
                read_exact_at(file, &mut buf[..size], window)?;
                (window, buf)
            }
        };
        let s = (off - window) as usize;
        let out = w.1[s..s + len].to_vec();
        self.0.push(w);
        Ok(Some(out))
    }
}
