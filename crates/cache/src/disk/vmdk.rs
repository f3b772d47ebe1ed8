//! VMDK descriptors: a text file that makes a VMM see fsmeta followed by the
//! layer images as one disk, without copying a byte. Extents are flat and
//! split so that none exceeds 2 GiB (`twoGbMaxExtentFlat`). They are marked
//! `RW` because QEMU drops extents with any other access mode (the disk then
//! reads as empty); read-only-ness comes from attaching the disk read-only.

use std::fmt::Write as _;
use std::path::Path;

use crate::error::{Error, Result};

const SECTOR: u64 = 512;
/// The largest extent a `twoGbMaxExtentFlat` descriptor may hold.
pub const MAX_EXTENT_BYTES: u64 = 2 << 30;

/// One file of the disk, in disk order.
#[derive(Debug, Clone, Copy)]
pub struct Extent<'a> {
    /// Absolute path of the file.
    pub path: &'a Path,
    /// Its size; a multiple of 512.
    pub size: u64,
}

/// Writes the descriptor for `extents`. `cid` identifies the disk content;
/// deriving it from the manifest digest keeps descriptors reproducible.
pub fn descriptor(extents: &[Extent<'_>], cid: u32) -> Result<String> {
    let mut out = String::new();
    let mut total_sectors = 0u64;
    out.push_str("# Disk DescriptorFile\nversion=1\n");
    let _ = writeln!(
        out,
        "CID={cid:08x}\nparentCID=ffffffff\ncreateType=\"twoGbMaxExtentFlat\"\n\n# Extent description"
    );
    for extent in extents {
        let path = extent
            .path
            .to_str()
            .filter(|p| !p.contains(['"', '\n', '\r']))
            .ok_or_else(|| Error::Internal(format!("{} cannot be named in a VMDK descriptor", extent.path.display())))?;
        if extent.size % SECTOR != 0 {
            return Err(Error::Internal(format!(
                "{path} is {} bytes, not a whole number of sectors",
                extent.size
            )));
        }
        let mut offset = 0;
        while offset < extent.size {
            let len = (extent.size - offset).min(MAX_EXTENT_BYTES);
            let _ = writeln!(out, "RW {} FLAT \"{path}\" {}", len / SECTOR, offset / SECTOR);
            offset += len;
        }
        total_sectors += extent.size / SECTOR;
    }
    let cylinders = (total_sectors / (16 * 63)).clamp(1, 16383);
    let _ = write!(
        out,
        "\n# The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = \"4\"\nddb.adapterType = \"lsilogic\"\n\
         ddb.geometry.cylinders = \"{cylinders}\"\nddb.geometry.heads = \"16\"\nddb.geometry.sectors = \"63\"\n"
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_extents_at_two_gib() {
        let a = Path::new("/c/fsmeta.erofs");
        let b = Path::new("/c/layer.erofs");
        let text = descriptor(
            &[
                Extent { path: a, size: 8192 },
                Extent {
                    path: b,
                    size: MAX_EXTENT_BYTES + 4096,
                },
            ],
            0xabc,
        )
        .unwrap();
        let extents: Vec<&str> = text.lines().filter(|l| l.starts_with("RW ")).collect();
        assert_eq!(
            extents,
            [
                "RW 16 FLAT \"/c/fsmeta.erofs\" 0",
                "RW 4194304 FLAT \"/c/layer.erofs\" 0",
                "RW 8 FLAT \"/c/layer.erofs\" 4194304",
            ]
        );
        assert!(text.contains("CID=00000abc"));
    }

    #[test]
    fn refuses_unnameable_paths() {
        let p = Path::new("/c/a\"b");
        assert!(descriptor(&[Extent { path: p, size: 512 }], 1).is_err());
        assert!(descriptor(
            &[Extent {
                path: Path::new("/c/x"),
                size: 100
            }],
            1
        )
        .is_err());
    }
}
