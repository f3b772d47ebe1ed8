//! How a regular file's data goes into a layer image: streamed into
//! whole blocks (sparse files as chunks with holes), or packed with its
//! inode ([`crate::pack`]), each byte framed at its offset in the image.

use std::io::BufRead;

use super::*;

impl Builder<'_> {
    /// Writes a packed file ([`crate::pack`]): its record goes into an
    /// open pack, or a new one in a block reserved now; its whole blocks,
    /// if any, are streamed next, and its tail read into the record.
    pub(super) fn write_packed<R: BufRead>(
        &mut self,
        tar: &mut TarReader<'_, R>,
        e: &Entry,
        xattrs: &[(Vec<u8>, Vec<u8>)],
        len: usize,
    ) -> Result<Kind, Error> {
        let at = match self.packs.place(len) {
            Some(at) => at,
            None => {
                if self.next_blk + 1 >= MAX_BLOCKS {
                    return Err(too_large("the archive's files do not fit the image".into()));
                }
                let blk = self.next_blk;
                self.zeros(BLOCK_SIZE)?;
                self.next_blk += 1;
                if let Some((blk, bytes)) = self.packs.open(blk) {
                    self.out.patch(blk * BLOCK_SIZE, &bytes)?;
                }
                self.packs.place(len).expect("a record of at most a block fits an empty pack")
            }
        };
        let blocks = e.size / BLOCK_SIZE;
        if self.next_blk + blocks >= MAX_BLOCKS {
            return Err(too_large(format!("file of {} bytes does not fit the image", e.size)));
        }
        let blkaddr = self.next_blk;
        if blocks > 0 {
            self.copy(tar, blocks * BLOCK_SIZE)?;
            self.next_blk += blocks;
        }
        let inode = PackedInode {
            blkaddr,
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            mtime: e.mtime,
            mtime_nsec: e.mtime_nsec,
            size: e.size,
            xattrs,
        };
        let data = self.packs.record(at, &inode);
        let data_at = at + (len - data.len()) as u64;
        let mut got = 0;
        while got < data.len() {
            match tar.read_data(&mut data[got..], data_at + got as u64)? {
                0 => return Err(early_end()),
                n => got += n,
            }
        }
        self.data_bytes += data.len() as u64;
        Ok(Kind::Placed { device_id: 0, pos: at })
    }

    /// Writes out the open packs.
    pub(super) fn close_packs(&mut self) -> Result<(), Error> {
        for (blk, bytes) in self.packs.close_all() {
            self.out.patch(blk * BLOCK_SIZE, &bytes)?;
        }
        Ok(())
    }

    /// Streams a regular file's data into the image.
    pub(super) fn write_data<R: BufRead>(&mut self, tar: &mut TarReader<'_, R>, e: &Entry) -> Result<FileData, Error> {
        let blocks = e.size.div_ceil(BLOCK_SIZE);
        let too_big = || too_large(format!("file of {} bytes does not fit the image", e.size));
        if e.size == 0 {
            return Ok(FileData::Flat { blkaddr: 0 });
        }
        let Some(segs) = &e.sparse else {
            if self.next_blk + blocks >= MAX_BLOCKS {
                return Err(too_big());
            }
            let blkaddr = self.next_blk;
            self.copy(tar, e.size)?;
            self.pad_to_block(e.size)?;
            self.next_blk += blocks;
            debug_assert_eq!(self.pos, self.next_blk * BLOCK_SIZE);
            return Ok(FileData::Flat { blkaddr });
        };
        if e.size > SPARSE_SIZE_MAX {
            return Err(too_large(format!(
                "sparse file of {} bytes is larger than {SPARSE_SIZE_MAX} bytes",
                e.size
            )));
        }
        let plan = plan_sparse(segs, e.size);
        let chunk = BLOCK_SIZE << plan.chunkbits;
        if self.next_blk + plan.stored_blocks >= MAX_BLOCKS {
            return Err(too_big());
        }
        let data: u64 = segs.iter().map(|s| s.1).sum();
        let zeros = plan.zeros(data);
        if self.sparse_zeros + zeros > self.sparse_data + data + SPARSE_ZEROS_MAX {
            return Err(too_large(format!(
                "sparse files would store {} bytes of zeros beside {} bytes of data (at most {SPARSE_ZEROS_MAX} more zeros than data)",
                self.sparse_zeros + zeros,
                self.sparse_data + data
            )));
        }
        self.room_for(alloc_cost((2 * plan.mapped.len() + 1) * std::mem::size_of::<ChunkRun>()))?;
        (self.sparse_data, self.sparse_zeros) = (self.sparse_data + data, self.sparse_zeros + zeros);
        let mut runs = Vec::with_capacity(2 * plan.mapped.len() + 1);
        let mut next_chunk = 0u64;
        let mut seg = segs.iter().peekable();
        for &(first, count) in &plan.mapped {
            if first > next_chunk {
                runs.push(ChunkRun {
                    count: first - next_chunk,
                    blkaddr: None,
                });
            }
            runs.push(ChunkRun {
                count,
                blkaddr: Some(self.next_blk),
            });
            let start = first * chunk;
            let end = ((first + count) * chunk).min(e.size);
            let mut p = start;
            while let Some(&&(off, len)) = seg.peek() {
                if off >= end {
                    break;
                }
                self.zeros(off - p)?;
                self.copy(tar, len)?;
                p = off + len;
                seg.next();
            }
            self.zeros(end - p)?;
            self.pad_to_block(end - start)?;
            self.next_blk += (end - start).div_ceil(BLOCK_SIZE);
            debug_assert_eq!(self.pos, self.next_blk * BLOCK_SIZE);
            next_chunk = first + count;
        }
        let total = e.size.div_ceil(chunk);
        if total > next_chunk {
            runs.push(ChunkRun {
                count: total - next_chunk,
                blkaddr: None,
            });
        }
        if let (
            [(0, n)],
            [ChunkRun {
                blkaddr: Some(blkaddr), ..
            }],
        ) = (&plan.mapped[..], &runs[..])
        {
            if *n == total {
                // Nothing to leave out: an ordinary contiguous file.
                return Ok(FileData::Flat { blkaddr: *blkaddr });
            }
        }
        Ok(FileData::Chunked {
            chunkbits: plan.chunkbits,
            device_id: None,
            runs: runs.into(),
        })
    }

    /// Streams `n` bytes of the entry's data to the image straight from
    /// the reader's buffer: on a layer of large files every copy on the
    /// way is a pass over all its bytes.
    fn copy<R: BufRead>(&mut self, tar: &mut TarReader<'_, R>, n: u64) -> Result<(), Error> {
        self.data_bytes += n;
        let (out, mut pos) = (&mut self.out, self.pos);
        let got = tar.copy_data(n, pos, |bytes| {
            out.write_at(pos, bytes)?;
            pos += bytes.len() as u64;
            Ok(())
        })?;
        self.pos = pos;
        if got < n {
            return Err(early_end());
        }
        Ok(())
    }

    fn zeros(&mut self, mut n: u64) -> Result<(), Error> {
        static ZEROS: [u8; 65536] = [0; 65536];
        while n > 0 {
            let k = n.min(ZEROS.len() as u64) as usize;
            self.out.write_at(self.pos, &ZEROS[..k])?;
            self.pos += k as u64;
            n -= k as u64;
        }
        Ok(())
    }

    fn pad_to_block(&mut self, written: u64) -> Result<(), Error> {
        self.zeros(written.next_multiple_of(BLOCK_SIZE) - written)
    }
}
