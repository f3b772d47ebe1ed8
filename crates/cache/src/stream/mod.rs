//! The verified layer stream: a blob as its source yields it, hashed as it
//! passes (blob digest and size), decompressed ([`compression`]), its tar
//! hashed (diff_id) and turned into an EROFS image and tar framing
//! ([`convert`]). Nothing a stream produces is published before every
//! digest matches.

pub mod compression;
pub mod convert;
