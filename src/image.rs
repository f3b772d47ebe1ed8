//! The `Image` class: static methods over the local image cache. Each one
//! validates its arguments, runs the engine off the event loop, and
//! converts the answer.

use napi::bindgen_prelude::*;
use napi_derive::napi;

use std::sync::Arc;

use cache::backend::Backend;
use cache::{parse_reference, Cache, Format, LoadOptions, PullRequest};

use crate::args;
use crate::callbacks;
use crate::login;
use crate::prune;
use crate::pull;
use crate::task::{run, run_then};
use crate::types::{AcquiredImage, ImageCheckReport, ImageDetail, ImageDiskUsage, ImageHandle, ImagePruneReport};

/// Reads the backend configuration now, on the JavaScript thread (where
/// `process.env` is written), and opens the cache later, on the worker.
fn configured(operation: &'static str) -> impl FnOnce() -> cache::Result<Arc<Cache>> + Send {
    let backend = Backend::from_env();
    move || Cache::for_backend(&backend?, operation)
}

/// Inspect, remove and prune the local OCI image cache. Requires the local
/// backend (`MSB_BACKEND` unset or `local`); under a cloud backend every
/// method rejects with `UnsupportedError`. The cache lives in `$MSB_HOME`,
/// or `~/.microsandbox` when unset.
#[napi]
pub struct Image;

#[napi]
impl Image {
    /// Fetch one cached image by reference. Rejects with `ImageNotFoundError`
    /// when the reference is not present in the local cache.
    #[napi(ts_args_type = "reference: string", ts_return_type = "Promise<ImageHandle>")]
    pub fn get<'env>(env: &'env Env, reference: Option<Unknown<'env>>) -> Result<PromiseRaw<'env, ImageHandle>> {
        let cache = configured("get");
        let reference = args::string(reference, "reference");
        run(env, move || cache()?.get(&reference?), ImageHandle::from)
    }

    /// Return every cached image, sorted by reference.
    #[napi(ts_return_type = "Promise<ImageHandle[]>")]
    pub fn list(env: &Env) -> Result<PromiseRaw<'_, Vec<ImageHandle>>> {
        let cache = configured("list");
        run(env, move || cache()?.list(), |all| all.into_iter().map(ImageHandle::from).collect())
    }

    /// Return full detail for a cached image: handle metadata, parsed OCI
    /// config fields, and layer metadata.
    #[napi(ts_args_type = "reference: string", ts_return_type = "Promise<ImageDetail>")]
    pub fn inspect<'env>(env: &'env Env, reference: Option<Unknown<'env>>) -> Result<PromiseRaw<'env, ImageDetail>> {
        let cache = configured("inspect");
        let reference = args::string(reference, "reference");
        run(env, move || cache()?.inspect(&reference?), ImageDetail::from)
    }

    /// Delete a cached image reference, and whatever only it kept in the
    /// cache. When `force` is not set, an image still used by one or more
    /// sandboxes makes the call reject with `ImageInUseError`; with `force`
    /// the reference goes but the files those sandboxes use stay.
    #[napi(ts_args_type = "reference: string, opts?: { force?: boolean }", ts_return_type = "Promise<void>")]
    pub fn remove<'env>(env: &'env Env, reference: Option<Unknown<'env>>, opts: Option<Unknown<'env>>) -> Result<PromiseRaw<'env, ()>> {
        let cache = configured("remove");
        let parsed = (|| -> cache::Result<_> {
            let reference = args::string(reference, "reference")?;
            let opts = args::options(opts, "opts")?;
            args::known_keys(&opts, &["force"], "opts")?;
            let force = args::opt_bool(&opts, "force")?.unwrap_or(false);
            Ok((reference, force))
        })();
        run(
            env,
            move || {
                let (reference, force) = parsed?;
                cache()?.remove(&reference, force).map(drop)
            },
            |()| (),
        )
    }

    /// Remove cached image data that is not used by any sandbox or indexed
    /// snapshot: unused references, manifests that become unreachable,
    /// orphaned layers, layer EROFS, fsmeta and VMDK artifacts, and any file
    /// in the cache no index row reaches (crash leftovers, stale temp files).
    /// Options narrow what goes (an image goes only if every given filter
    /// selects it): `unusedFor` (no sandbox acquired it for that long; never
    /// acquired: since it was cached) and `olderThan` (cached longer ago),
    /// as milliseconds or `"90s"`, `"1.5h"`, `"7d"` (units ms, s, m, h, d,
    /// w); `references` (globs on the normalized reference, SQLite GLOB:
    /// `*` spans `/`; without `*?[` a reference matched exactly); `labels`
    /// (config labels equal to a string, or present for `true`); `keep`
    /// (references or globs never pruned); `maxBytes` (evict least recently
    /// used images until the cache is at most that big; roots never go).
    /// `dryRun` reports exactly what would go and changes nothing. An
    /// unknown option rejects with `InvalidArgumentError`.
    #[napi(
        ts_args_type = "opts?: { dryRun?: boolean; unusedFor?: number | string; olderThan?: number | string; references?: string | readonly string[]; labels?: Record<string, string | true>; keep?: string | readonly string[]; maxBytes?: number }",
        ts_return_type = "Promise<ImagePruneReport>"
    )]
    pub fn prune<'env>(env: &'env Env, opts: Option<Unknown<'env>>) -> Result<PromiseRaw<'env, ImagePruneReport>> {
        let cache = configured("prune");
        let options = prune::parse(opts);
        run(env, move || cache()?.prune_with(&options?), ImagePruneReport::from)
    }

    /// What the cache holds on disk, as `docker system df -v` shows it:
    /// every file's apparent size (`totalBytes`: all of `$MSB_HOME` but
    /// `locks/` and `tmp/`), what `prune()` would free, the index, each kind
    /// of artifact, and per reference its files, what removing it alone
    /// would free (`uniqueBytes`) and what other images share.
    #[napi(ts_return_type = "Promise<ImageDiskUsage>")]
    pub fn disk_usage(env: &Env) -> Result<PromiseRaw<'_, ImageDiskUsage>> {
        let cache = configured("diskUsage");
        run(env, move || cache()?.disk_usage(), ImageDiskUsage::from)
    }

    /// Check the cache against its index, as `podman system check` does:
    /// index integrity, every file present with its recorded size, root
    /// disks consistent with their layers, files no row reaches, stale temp
    /// files; `full` also re-hashes every artifact against what was
    /// recorded when it was published. `repair` rebuilds a bad fsmeta or
    /// VMDK, drops a lost or corrupt layer image (and its disks: the next
    /// load or pull converts only that layer again) and deletes strays.
    #[napi(
        ts_args_type = "opts?: { full?: boolean; repair?: boolean }",
        ts_return_type = "Promise<ImageCheckReport>"
    )]
    pub fn check<'env>(env: &'env Env, opts: Option<Unknown<'env>>) -> Result<PromiseRaw<'env, ImageCheckReport>> {
        let cache = configured("check");
        let parsed = (|| -> cache::Result<_> {
            let opts = args::options(opts, "opts")?;
            args::known_keys(&opts, &["full", "repair"], "opts")?;
            Ok((
                args::opt_bool(&opts, "full")?.unwrap_or(false),
                args::opt_bool(&opts, "repair")?.unwrap_or(false),
            ))
        })();
        run(
            env,
            move || {
                let (full, repair) = parsed?;
                cache()?.check(full, repair)
            },
            ImageCheckReport::from,
        )
    }

    /// Give the image `source` names a second reference, `target`, as
    /// `docker tag`; a target that named another image is moved to this one.
    #[napi(ts_args_type = "source: string, target: string", ts_return_type = "Promise<ImageHandle>")]
    pub fn tag<'env>(
        env: &'env Env,
        source: Option<Unknown<'env>>,
        target: Option<Unknown<'env>>,
    ) -> Result<PromiseRaw<'env, ImageHandle>> {
        let cache = configured("tag");
        let parsed = args::string(source, "source").and_then(|s| Ok((s, args::string(target, "target")?)));
        run(
            env,
            move || {
                let (source, target) = parsed?;
                cache()?.tag(&source, &target)
            },
            ImageHandle::from,
        )
    }

    /// Import the images of an archive: a `docker save` tarball, an OCI
    /// image layout directory, or an OCI layout tarball (optionally gzip- or
    /// zstd-compressed). Every blob is verified. `tag` names the archive's
    /// single image; `platform` (`os/arch[/variant]`, default the host's)
    /// picks from multi-platform indexes. Progress (`archive` bytes read,
    /// then `layer` steps) goes to `onProgress`; `signal` aborts with
    /// `AbortError`, leaving the cache as it was. Resolves to one handle per
    /// reference.
    #[napi(
        ts_args_type = "path: string, opts?: { tag?: string; platform?: string; onProgress?: (event: PullProgressEvent) => void; signal?: AbortSignal }",
        ts_return_type = "Promise<ImageHandle[]>"
    )]
    pub fn load<'env>(
        env: &'env Env,
        path: Option<Unknown<'env>>,
        opts: Option<Unknown<'env>>,
    ) -> Result<PromiseRaw<'env, Vec<ImageHandle>>> {
        let cache = configured("load");
        let mut hook = None;
        let parsed = (|| -> cache::Result<_> {
            let path = args::string(path, "path")?;
            let opts = args::options(opts, "opts")?;
            let tag = args::opt_string(&opts, "tag")?.map(|t| parse_reference(&t)).transpose()?;
            let platform = args::opt_string(&opts, "platform")?
                .map(|p| oci::Platform::parse(&p).map_err(cache::Error::InvalidArgument))
                .transpose()?;
            let progress = Some(callbacks::progress(&opts)?);
            let (cancel, abort) = callbacks::signal(env, &opts)?;
            hook = abort;
            let cancel = Some(cancel);
            Ok((
                path,
                LoadOptions {
                    tag,
                    platform,
                    progress,
                    cancel,
                },
            ))
        })();
        run_then(
            env,
            move || {
                let (path, options) = parsed?;
                cache()?.load(std::path::Path::new(&path), &options)
            },
            move |env, result| {
                if let Some(hook) = hook {
                    hook.detach(env);
                }
                result.map(|all| all.into_iter().map(ImageHandle::from).collect())
            },
        )
    }

    /// Pull an image from its registry into the cache (OCI distribution:
    /// anonymous, Basic or Bearer auth, credentials from `auth` or Docker's
    /// `~/.docker/config.json`, mirrors and CA bundles from `registries.json`
    /// in the cache directory and from the options). Verifies every digest,
    /// converts each layer to EROFS as it downloads, writes fsmeta and VMDK.
    /// `pullPolicy`: `"if-missing"` (default), `"always"` (re-resolve the
    /// tag, reuse cached layers) or `"never"`. Progress goes to `onProgress`;
    /// `signal` aborts with `AbortError`.
    #[napi(
        ts_args_type = "reference: string, opts?: { platform?: string; pullPolicy?: 'if-missing' | 'always' | 'never'; auth?: { username: string; password: string } | { token: string }; insecure?: boolean; mirrors?: Record<string, readonly string[]>; caBundles?: readonly string[]; onProgress?: (event: PullProgressEvent) => void; signal?: AbortSignal }",
        ts_return_type = "Promise<ImageHandle>"
    )]
    pub fn pull<'env>(
        env: &'env Env,
        reference: Option<Unknown<'env>>,
        opts: Option<Unknown<'env>>,
    ) -> Result<PromiseRaw<'env, ImageHandle>> {
        let cache = configured("pull");
        let mut call = pull::parse(env, reference, opts);
        let hook = call.as_mut().ok().and_then(|c| c.abort.take());
        run_then(
            env,
            move || {
                let c = call?;
                let request = PullRequest {
                    policy: c.policy,
                    platform: c.platform.as_ref(),
                    options: &c.options,
                    progress: &c.progress,
                };
                cache()?.pull(&c.reference, &request)
            },
            move |env, result| {
                if let Some(hook) = hook {
                    hook.detach(env);
                }
                result.map(ImageHandle::from)
            },
        )
    }

    /// Log in to `registry` (`host[:port]`, or `docker.io`) as `docker login`
    /// does: the credentials are checked against the registry, then stored
    /// where Docker keeps them (the credential helper its `config.json`
    /// names for that host, else `auths` in that file), so pulls here and
    /// Docker's both find them. Refused credentials reject with
    /// `AuthenticationError` and store nothing. `insecure` allows plain
    /// HTTP and unverified TLS for this host, as for a pull.
    #[napi(
        ts_args_type = "registry: string, credentials: { username: string; password: string; insecure?: boolean }",
        ts_return_type = "Promise<void>"
    )]
    pub fn login<'env>(
        env: &'env Env,
        registry: Option<Unknown<'env>>,
        credentials: Option<Unknown<'env>>,
    ) -> Result<PromiseRaw<'env, ()>> {
        let cache = configured("login");
        let call = login::parse_login(registry, credentials);
        run(
            env,
            move || {
                let c = call?;
                cache()?.login(&c.registry, &c.username, &c.password, &c.config).map(drop)
            },
            |()| (),
        )
    }

    /// Forget what `login` (or `docker login`) stored for `registry`: erased
    /// from its credential helper and removed from `config.json`. Resolves
    /// to whether anything was stored.
    #[napi(ts_args_type = "registry: string", ts_return_type = "Promise<boolean>")]
    pub fn logout<'env>(env: &'env Env, registry: Option<Unknown<'env>>) -> Result<PromiseRaw<'env, bool>> {
        let cache = configured("logout");
        let registry = args::string(registry, "registry");
        let config = pull::from_environment();
        run(env, move || cache()?.logout(&registry?, &config), |removed| removed)
    }

    /// Write cached images to an archive at `outputPath`: `"docker"` (the
    /// `docker save` format, the default) or `"oci"` (an OCI layout tarball).
    /// skopeo, Docker and `Image.load` read either back.
    #[napi(
        ts_args_type = "references: string | readonly string[], opts: { outputPath: string; format?: 'docker' | 'oci' }",
        ts_return_type = "Promise<void>"
    )]
    pub fn save<'env>(env: &'env Env, references: Option<Unknown<'env>>, opts: Option<Unknown<'env>>) -> Result<PromiseRaw<'env, ()>> {
        let cache = configured("save");
        let parsed = (|| -> cache::Result<_> {
            let references = args::strings(references, "references")?;
            let opts = args::options(opts, "opts")?;
            let output =
                args::opt_string(&opts, "outputPath")?.ok_or_else(|| cache::Error::InvalidArgument("outputPath is required".into()))?;
            let format = match args::opt_string(&opts, "format")?.as_deref() {
                None | Some("docker") => Format::Docker,
                Some("oci") => Format::Oci,
                Some(other) => {
                    return Err(cache::Error::InvalidArgument(format!(
                        "format {other:?}: expected \"docker\" or \"oci\""
                    )))
                }
            };
            Ok((references, output, format))
        })();
        run(
            env,
            move || {
                let (references, output, format) = parsed?;
                cache()?.save(&references, std::path::Path::new(&output), format)
            },
            |()| (),
        )
    }

    /// Record that sandbox `sandbox` uses the image (it becomes a GC root:
    /// prune and remove keep its files, and `lastUsedAt` is now), rebuild a
    /// missing fsmeta or VMDK from the layer images, and return what the
    /// sandbox boots from. A missing layer image rejects with `CacheError`:
    /// the compressed layers are not kept, so only loading or pulling the
    /// image again brings it back.
    #[napi(
        ts_args_type = "reference: string, opts: { sandbox: string }",
        ts_return_type = "Promise<AcquiredImage>"
    )]
    pub fn acquire<'env>(
        env: &'env Env,
        reference: Option<Unknown<'env>>,
        opts: Option<Unknown<'env>>,
    ) -> Result<PromiseRaw<'env, AcquiredImage>> {
        let cache = configured("acquire");
        let parsed = (|| -> cache::Result<_> {
            let reference = args::string(reference, "reference")?;
            let opts = args::options(opts, "opts")?;
            let sandbox = args::opt_string(&opts, "sandbox")?.ok_or_else(|| cache::Error::InvalidArgument("sandbox is required".into()))?;
            Ok((reference, sandbox))
        })();
        run(
            env,
            move || {
                let (reference, sandbox) = parsed?;
                cache()?.acquire(&reference, &sandbox)
            },
            AcquiredImage::from,
        )
    }

    /// Drop sandbox `sandbox`'s hold on its image. Resolves to false when it held none.
    #[napi(ts_args_type = "sandbox: string", ts_return_type = "Promise<boolean>")]
    pub fn release<'env>(env: &'env Env, sandbox: Option<Unknown<'env>>) -> Result<PromiseRaw<'env, bool>> {
        let cache = configured("release");
        let sandbox = args::string(sandbox, "sandbox");
        run(env, move || cache()?.release(&sandbox?), |released| released)
    }

    /// Pin the image `reference` names for snapshot `name`: prune keeps it
    /// (and its references) until the snapshot is unpinned.
    #[napi(ts_args_type = "name: string, reference: string", ts_return_type = "Promise<void>")]
    pub fn pin_snapshot<'env>(
        env: &'env Env,
        name: Option<Unknown<'env>>,
        reference: Option<Unknown<'env>>,
    ) -> Result<PromiseRaw<'env, ()>> {
        let cache = configured("pinSnapshot");
        let parsed = args::string(name, "name").and_then(|n| Ok((n, args::string(reference, "reference")?)));
        run(
            env,
            move || {
                let (name, reference) = parsed?;
                cache()?.pin_snapshot(&name, &reference)
            },
            |()| (),
        )
    }

    /// Unpin snapshot `name`. Resolves to false when it pinned nothing.
    #[napi(ts_args_type = "name: string", ts_return_type = "Promise<boolean>")]
    pub fn unpin_snapshot<'env>(env: &'env Env, name: Option<Unknown<'env>>) -> Result<PromiseRaw<'env, bool>> {
        let cache = configured("unpinSnapshot");
        let name = args::string(name, "name");
        run(env, move || cache()?.unpin_snapshot(&name?), |unpinned| unpinned)
    }
}
