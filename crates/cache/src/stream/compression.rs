//! Decompression of layers and archives, chosen by the stream's magic bytes
//! (media types and file names lie). gzip goes through ISA-L (zlib-rs on
//! macOS and Windows: [`crate::os::GzipDecoder`] says why), whose inflate
//! is the fastest streaming one available (about 1.6x zlib-rs here); zstd
//! through libzstd.

use std::io::{self, BufRead, Read};

/// A decompressing reader over `T`, or `T` itself for uncompressed data.
pub enum Decoder<T: BufRead> {
    /// gzip, one or more members; CRC and length checked. Boxed: ISA-L's
    /// state is large, and the other variants need not carry its size.
    Gzip(Box<crate::os::GzipDecoder<T>>),
    /// zstd frames.
    Zstd(zstd::stream::read::Decoder<'static, T>),
    /// Not compressed.
    Plain(T),
}

impl<T: BufRead> Decoder<T> {
    /// Peeks at the first bytes of `input` to pick the decoder.
    pub fn sniff(mut input: T) -> io::Result<Self> {
        let head = input.fill_buf()?;
        Ok(if head.starts_with(&[0x1f, 0x8b]) {
            Decoder::Gzip(Box::new(crate::os::gzip_decoder(input)))
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Decoder::Zstd(zstd::stream::read::Decoder::with_buffer(input)?)
        } else {
            Decoder::Plain(input)
        })
    }

    /// Whether the input is compressed at all.
    pub fn is_compressed(&self) -> bool {
        !matches!(self, Decoder::Plain(_))
    }
}

impl<T: BufRead> Read for Decoder<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Gzip(d) => d.read(buf),
            Decoder::Zstd(d) => d.read(buf),
            Decoder::Plain(t) => t.read(buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn decode(bytes: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        Decoder::sniff(bytes)?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn decodes_every_kind_and_refuses_corruption() {
        let data: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        assert_eq!(decode(&gzip(&data)).unwrap(), data);
        assert_eq!(decode(&zstd::encode_all(&data[..], 3).unwrap()).unwrap(), data);
        assert_eq!(decode(&data).unwrap(), data);
        let mut two = gzip(b"first ");
        two.extend(gzip(b"second"));
        assert_eq!(decode(&two).unwrap(), b"first second");
        let mut bad = gzip(&data);
        let mid = bad.len() / 2;
        bad[mid] ^= 0xff;
        assert!(decode(&bad).is_err());
        let good = gzip(&data);
        assert!(decode(&good[..good.len() - 10]).is_err());
    }
}
