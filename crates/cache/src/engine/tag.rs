//! `tag`: a second reference to the manifest another names, as `docker
//! tag`. A target that already names another image is moved to this one,
//! as Docker does; the image it named stays until a prune finds nothing
//! names it any more.

use super::{parse_reference, Cache};
use crate::error::{Error, Result};
use crate::index::{now_ms, read, write};
use crate::model::ImageSummary;

impl Cache {
    /// Points `target` at the manifest `source` names; returns `target`'s summary.
    pub fn tag(&self, source: &str, target: &str) -> Result<ImageSummary> {
        let from = parse_reference(source)?;
        let to = parse_reference(target)?;
        if to.digest().is_some() {
            return Err(Error::InvalidArgument(format!(
                "target {target:?} names a digest; a tag is a name, such as {}:latest",
                to.repository()
            )));
        }
        // One transaction: a prune deleting the manifest meanwhile either
        // sees the new reference or makes the source not found.
        self.index.write(|tx| {
            let manifest = read::find(tx, &from)?.ok_or_else(|| Error::not_cached(source))?.manifest_digest;
            write::add_reference(tx, &to, &manifest, now_ms())?;
            read::find(tx, &to)?.ok_or_else(|| Error::Internal(format!("{to} vanished while being tagged")))
        })
    }
}
