//! Manifest negotiation: ask for any manifest or index type the cache
//! understands, verify what came back against every digest that vouches
//! for it, and descend from an index to the wanted platform's manifest.

use ureq::http::Response;
use ureq::Body;

use oci::digest::{self, Digest, ReadError};
use oci::manifest::{self, Descriptor, Document, Manifest, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};

use crate::client::{Client, Endpoint, Need};
use crate::error::{Error, Result};
use crate::response::header;
use crate::transport::Failure;

/// Every manifest and index media type, for `Accept`.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Content types that say nothing about the manifest kind; the document decides.
const GENERIC_TYPES: [&str; 3] = ["application/json", "application/octet-stream", "text/plain"];

impl Client {
    /// GETs the manifest the reference names (its digest when pinned, else
    /// its tag), verifies it (pinned digest, `Docker-Content-Digest`, 4 MiB
    /// cap), and when it is an index picks the options' platform and fetches
    /// that manifest. Returns the chosen manifest's digest, bytes and parsed
    /// form. Mirrors are tried first; a 404 is `Error::ImageNotFound`.
    pub fn resolve_manifest(&self) -> Result<(Digest, Vec<u8>, Manifest)> {
        let pinned = self.reference.digest();
        let target = match (pinned, self.reference.tag()) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.to_string(),
            (None, None) => return Err(Error::Internal(format!("reference {} has neither tag nor digest", self.reference))),
        };
        let (digest, bytes, document) = self.fetch_manifest(&target, pinned, None)?;
        let entries = match document {
            Document::Manifest(manifest) => return Ok((digest, bytes, manifest)),
            Document::Index(entries) => entries,
        };
        let origin = self.endpoints.last().expect("the origin is always an endpoint");
        let entry = manifest::select_platform(&entries, &self.platform)
            .map_err(|message| self.registry_error(origin, Some(&digest), None, message))?;
        let child = entry.descriptor.clone();
        match self.fetch_manifest(child.digest.as_str(), Some(&child.digest), Some(&child))? {
            (digest, bytes, Document::Manifest(manifest)) => Ok((digest, bytes, manifest)),
            (digest, _, Document::Index(_)) => Err(self.registry_error(
                origin,
                Some(&digest),
                None,
                "the index points at another index for this platform (nested indexes are not supported)".into(),
            )),
        }
    }

    /// Fetches and verifies the config blob `manifest` points at.
    pub fn fetch_config(&self, manifest: &Manifest) -> Result<Vec<u8>> {
        let config = &manifest.config;
        let fail = |message: String| {
            let origin = self.endpoints.last().expect("the origin is always an endpoint");
            self.registry_error(origin, Some(&config.digest), None, message)
        };
        let limit = manifest::MAX_CONFIG_BYTES;
        let reader = self.open_blob(config)?;
        digest::read_verified(reader, &config.digest, config.size, limit, &format!("config {}", config.digest)).map_err(|e| match e {
            ReadError::TooLarge { limit } => fail(format!("the config is {} bytes, more than the {limit} allowed", config.size)),
            ReadError::Io(e) => self.read_error(config, e),
            ReadError::Mismatch(m) => m.into(),
        })
    }

    /// One manifest or index by tag or digest, from the first endpoint that
    /// serves a valid one. `descriptor` is the index entry that points at it.
    fn fetch_manifest(
        &self,
        target: &str,
        pinned: Option<&Digest>,
        descriptor: Option<&Descriptor>,
    ) -> Result<(Digest, Vec<u8>, Document)> {
        let path = format!("manifests/{target}");
        // By tag only mirrors that may resolve; by digest those that may pull.
        let need = if pinned.is_some() { Need::Pull } else { Need::Resolve };
        let (_, fetched) = self.each_endpoint(0, need, |_, endpoint| {
            self.get(endpoint, &path, Some(MANIFEST_ACCEPT), 0, pinned, |response| {
                self.read_manifest(endpoint, response, pinned, descriptor)
            })
            .map_err(|e| match e {
                Error::Registry { status: Some(404), .. } => Error::ImageNotFound {
                    reference: self.reference.to_string(),
                    location: format!("registry {}", self.reference.domain()),
                },
                e => e,
            })
        })?;
        Ok(fetched)
    }

    fn read_manifest(
        &self,
        endpoint: &Endpoint,
        response: Response<Body>,
        pinned: Option<&Digest>,
        descriptor: Option<&Descriptor>,
    ) -> Result<(Digest, Vec<u8>, Document), Failure> {
        let authority = endpoint.target.authority.as_str();
        let fatal = |message: String| Failure::Fatal { status: None, message };
        let content_type = header(&response, "content-type").map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
        let vouched = header(&response, "docker-content-digest").and_then(|v| Digest::parse(v.trim()).ok());
        let too_big = || {
            fatal(format!(
                "the manifest is larger than the {} MiB allowed",
                manifest::MAX_MANIFEST_BYTES >> 20
            ))
        };
        if header(&response, "content-length")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n > manifest::MAX_MANIFEST_BYTES)
        {
            return Err(too_big());
        }
        let bytes = match response
            .into_body()
            .into_with_config()
            .limit(manifest::MAX_MANIFEST_BYTES)
            .read_to_vec()
        {
            Ok(bytes) => bytes,
            Err(ureq::Error::BodyExceedsLimit(_)) => return Err(too_big()),
            Err(e) => return Err(Failure::transport(e, authority)),
        };
        let actual = Digest::of(&bytes);
        let what = format!("manifest of {}/{} from {}", endpoint.target.label, self.reference.path(), authority);
        let mismatch = |expected: &Digest| {
            digest::verify(&what, expected, descriptor.map(|d| d.size), &actual, bytes.len() as u64).map_err(|m| Failure::Stop(m.into()))
        };
        if let Some(expected) = pinned {
            mismatch(expected)?;
        }
        if let Some(vouched) = &vouched {
            mismatch(vouched)?;
        }
        let known = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST];
        let served = match content_type.as_deref() {
            Some(t) if known.contains(&t) => Some(t),
            None | Some("") => None,
            Some(t) if GENERIC_TYPES.contains(&t) => None,
            Some(t) => return Err(fatal(format!("unsupported manifest media type {t}"))),
        };
        let declared = match (descriptor, served) {
            (Some(d), Some(served)) if d.media_type != served => {
                return Err(fatal(format!(
                    "the index lists a {} but the registry served a {served}",
                    d.media_type
                )))
            }
            (Some(d), _) => Some(d.media_type.as_str()),
            (None, served) => served,
        };
        let document = manifest::parse_document(&bytes, declared).map_err(fatal)?;
        Ok((actual, bytes, document))
    }
}
