//! The engine end to end on real archives: load in every format, query,
//! remove, prune, roots, save, failures that must change nothing, and
//! concurrent ingests sharing layers.

mod common;

use std::fs;
use std::path::Path;

use cache::{Cache, Error, Format, LoadOptions};
use common::*;

fn base_layers() -> Vec<Layer> {
    vec![
        layer(
            &[("etc/os-release", b"NAME=test\n"), ("bin/tool", &[7u8; 10_000])],
            Compression::Gzip,
        ),
        layer(&[("app/main.txt", b"hello\n")], Compression::Zstd),
        layer(&[("app/data.bin", &[1u8; 5000])], Compression::None),
    ]
}

fn loaded(home: &Path, archive: &Path) -> Cache {
    let cache = Cache::open(home).unwrap();
    cache.load(archive, &LoadOptions::default()).unwrap();
    cache
}

#[test]
fn loads_every_archive_format_to_the_same_image() {
    let (dir, _) = scratch();
    let image = TestImage::new("example.com/team/app:v1", base_layers());
    let layout = dir.path().join("layout");
    let written = oci_layout(&layout, std::slice::from_ref(&image)).remove(0);
    let oci_tar = dir.path().join("oci.tar");
    tar_dir(&layout, &oci_tar);
    let oci_gz = dir.path().join("oci.tar.gz");
    let mut gz = flate2::write::GzEncoder::new(fs::File::create(&oci_gz).unwrap(), flate2::Compression::fast());
    std::io::copy(&mut fs::File::open(&oci_tar).unwrap(), &mut gz).unwrap();
    gz.finish().unwrap();
    let docker = dir.path().join("docker.tar");
    docker_archive(&docker, std::slice::from_ref(&image));

    for (i, archive) in [&layout, &oci_tar, &oci_gz, &docker].into_iter().enumerate() {
        let home = dir.path().join(format!("home{i}"));
        let cache = Cache::open(&home).unwrap();
        let summaries = cache.load(archive, &LoadOptions::default()).unwrap();
        assert_eq!(summaries.len(), 1, "{archive:?}");
        let s = &summaries[0];
        assert_eq!(s.reference.to_string(), "example.com/team/app:v1");
        assert_eq!(s.layer_count, 3);
        assert_eq!(s.architecture.as_deref(), Some("amd64"));
        assert_eq!(s.os.as_deref(), Some("linux"));
        if archive != &docker {
            assert_eq!(s.manifest_digest.to_string(), written.manifest);
        }
        let details = cache.inspect("example.com/team/app:v1").unwrap();
        let config = details.config.unwrap();
        assert_eq!(config.digest.to_string(), written.config);
        assert_eq!(config.env, vec!["PATH=/bin".to_string()]);
        assert_eq!(config.cmd, Some(vec!["/bin/sh".to_string()]));
        assert_eq!(config.working_dir.as_deref(), Some("/work"));
        assert_eq!(config.entrypoint, None);
        assert_eq!(config.labels.unwrap().get("test").and_then(|v| v.as_str()), Some("yes"));
        let diff_ids: Vec<String> = details.layers.iter().map(|l| l.diff_id.to_string()).collect();
        assert_eq!(diff_ids, written.diff_ids);
        assert_eq!(details.layers.iter().map(|l| l.position).collect::<Vec<_>>(), [0, 1, 2]);
        for layer in &details.layers {
            assert!(layer.erofs_size.unwrap() > 0 && layer.erofs_size.unwrap() % 4096 == 0);
            assert!(layer.compressed_size.unwrap() > 0);
        }
        // Every artifact exists and the size reported is what the image
        // occupies: its files, and its documents and framing in the index.
        let on_disk: u64 = artifacts(&home).iter().map(|f| fs::metadata(home.join(f)).unwrap().len()).sum();
        assert_eq!(s.size_bytes, Some(on_disk + indexed_bytes(&home)), "{archive:?}");
        assert!(files_under(&home.join("tmp")).is_empty());
    }
}

#[test]
fn references_normalize_and_digests_resolve() {
    let (dir, home) = scratch();
    let mut image = TestImage::new("python:3.12", base_layers());
    image.names.push("docker.io/library/python:latest".into());
    let layout = dir.path().join("layout");
    let written = oci_layout(&layout, &[image]).remove(0);
    let cache = loaded(&home, &layout);
    let a = cache.get("python:3.12").unwrap();
    let b = cache.get("docker.io/library/python:3.12").unwrap();
    assert_eq!(a, b);
    assert_eq!(a.reference.to_string(), "docker.io/library/python:3.12");
    assert_eq!(cache.get("python").unwrap().manifest_digest.to_string(), written.manifest);
    let by_digest = cache.get(&format!("python@{}", written.manifest)).unwrap();
    assert_eq!(
        by_digest.reference.to_string(),
        format!("docker.io/library/python@{}", written.manifest)
    );
    assert!(matches!(cache.get("python:3.11"), Err(Error::ImageNotFound { .. })));
    assert!(matches!(cache.get("Not A Ref"), Err(Error::InvalidReference { .. })));
    assert_eq!(cache.list().unwrap().len(), 2);
    // Both tags share one manifest: removing one keeps every file.
    let before = artifacts(&home);
    let report = cache.remove("python:3.12", false).unwrap();
    assert_eq!(
        (report.image_refs_removed, report.manifests_removed, report.bytes_reclaimed),
        (1, 0, 0)
    );
    assert_eq!(artifacts(&home), before);
}

#[test]
fn roots_protect_images_and_prune_counts_exactly() {
    let (dir, home) = scratch();
    let shared = layer(&[("etc/base", b"base")], Compression::Gzip);
    let one = TestImage::new("localhost/one:1", vec![shared.clone(), layer(&[("one", b"1")], Compression::Gzip)]);
    let two = TestImage::new("localhost/two:1", vec![shared.clone(), layer(&[("two", b"2")], Compression::Gzip)]);
    let three = TestImage::new("localhost/three:1", vec![layer(&[("three", b"3")], Compression::None)]);
    let layout = dir.path().join("layout");
    oci_layout(&layout, &[one, two, three]);
    let cache = loaded(&home, &layout);

    let boot = cache.acquire("localhost/one:1", "sandbox-a").unwrap();
    assert!(boot.vmdk.exists() && boot.fsmeta.exists() && boot.layers.iter().all(|l| l.exists()));
    assert!(cache.get("localhost/one:1").unwrap().last_used_at.is_some());
    assert!(cache.get("localhost/two:1").unwrap().last_used_at.is_none());
    cache.pin_snapshot("snap", "localhost/two:1").unwrap();

    match cache.remove("localhost/one:1", false) {
        Err(Error::ImageInUse { sandboxes, .. }) => assert_eq!(sandboxes, ["sandbox-a"]),
        other => panic!("expected ImageInUse, got {other:?}"),
    }
    // Forced: the reference goes, the sandbox's files stay.
    let report = cache.remove("localhost/one:1", true).unwrap();
    assert_eq!(
        (report.image_refs_removed, report.manifests_removed, report.layers_removed),
        (1, 0, 0)
    );
    assert!(boot.vmdk.exists() && boot.fsmeta.exists() && boot.layers.iter().all(|l| l.exists()));
    assert!(cache.get("localhost/one:1").is_err());

    // Crash leftovers: a temp file, a published layer no row names, a stray vmdk.
    fs::write(home.join("tmp/123-0-abc.tmp"), vec![0u8; 1000]).unwrap();
    fs::write(home.join(format!("layers/sha256/{}.erofs", "e".repeat(64))), vec![0u8; 4096]).unwrap();
    fs::write(home.join(format!("vmdk/sha256/{}.vmdk", "f".repeat(64))), vec![0u8; 10]).unwrap();

    let before = artifacts(&home);
    let size_of = |files: &[String]| -> u64 { files.iter().map(|f| fs::metadata(home.join(f)).map(|m| m.len()).unwrap_or(0)).sum() };
    let total_before = size_of(&before) + 1000;
    let report = cache.prune().unwrap();
    // three:1 goes (ref, manifest, 1 layer, fsmeta, vmdk) plus the stray vmdk.
    assert_eq!(report.image_refs_removed, 1);
    assert_eq!(report.manifests_removed, 1);
    assert_eq!(report.layers_removed, 1);
    assert_eq!(report.fsmeta_removed, 1);
    assert_eq!(report.vmdk_removed, 2);
    let after = artifacts(&home);
    assert_eq!(report.bytes_reclaimed, total_before - size_of(&after));
    assert!(files_under(&home.join("tmp")).is_empty());
    assert!(boot.vmdk.exists(), "the sandbox's disk survives prune");
    assert!(cache.get("localhost/two:1").is_ok(), "the snapshot keeps its reference");

    // Dropping the roots lets everything go.
    assert!(cache.release("sandbox-a").unwrap());
    assert!(!cache.release("sandbox-a").unwrap());
    assert!(cache.unpin_snapshot("snap").unwrap());
    let report = cache.prune().unwrap();
    assert_eq!(
        (report.image_refs_removed, report.manifests_removed, report.layers_removed),
        (1, 2, 3)
    );
    assert_eq!((report.fsmeta_removed, report.vmdk_removed), (2, 2));
    assert!(artifacts(&home).is_empty());
    assert!(cache.list().unwrap().is_empty());
}

#[test]
fn acquire_rebuilds_a_lost_disk_and_refuses_a_lost_layer() {
    let (dir, home) = scratch();
    let layout = dir.path().join("layout");
    oci_layout(&layout, &[TestImage::new("localhost/app:1", base_layers())]);
    let cache = loaded(&home, &layout);
    let first = cache.acquire("localhost/app:1", "sb").unwrap();
    let fsmeta = fs::read(&first.fsmeta).unwrap();
    let layer0 = fs::read(&first.layers[0]).unwrap();
    fs::remove_dir_all(&layout).unwrap();
    fs::remove_file(&first.fsmeta).unwrap();
    fs::remove_file(&first.vmdk).unwrap();
    let again = cache.acquire("localhost/app:1", "sb").unwrap();
    assert_eq!(fs::read(&again.fsmeta).unwrap(), fsmeta, "fsmeta is rebuilt byte for byte");
    assert!(again.vmdk.exists());

    // No compressed blob is kept to rebuild a layer image from.
    fs::remove_file(&first.layers[0]).unwrap();
    let err = cache.acquire("localhost/app:1", "sb2").unwrap_err();
    assert_eq!(err.code(), "cache", "{err}");
    assert!(err.to_string().contains("load or pull the image again"), "{err}");
    assert!(!cache.release("sb2").unwrap(), "a failed acquire records no root");

    // Loading the image again converts the lost layer again, byte for byte.
    oci_layout(&layout, &[TestImage::new("localhost/app:1", base_layers())]);
    cache.load(&layout, &LoadOptions::default()).unwrap();
    assert_eq!(fs::read(&first.layers[0]).unwrap(), layer0);
    assert_eq!(cache.acquire("localhost/app:1", "sb2").unwrap().layers, first.layers);
}

#[test]
fn failed_loads_change_nothing() {
    let (dir, home) = scratch();
    let good = dir.path().join("good");
    oci_layout(&good, &[TestImage::new("localhost/good:1", base_layers())]);
    let cache = loaded(&home, &good);
    let before = (artifacts(&home), cache.list().unwrap(), row_counts(&home));

    let mut cases: Vec<(&str, std::path::PathBuf)> = Vec::new();
    // A flipped byte in a layer blob.
    let flipped = dir.path().join("flipped");
    let w = oci_layout(
        &flipped,
        &[TestImage::new(
            "localhost/bad:1",
            vec![layer(&[("x", b"payload")], Compression::Gzip)],
        )],
    )
    .remove(0);
    let blob = flipped.join("blobs/sha256").join(&w.blobs[0][7..]);
    let mut bytes = fs::read(&blob).unwrap();
    let last = bytes.len() - 5;
    bytes[last] ^= 0xff;
    fs::write(&blob, bytes).unwrap();
    cases.push(("digest_mismatch", flipped));
    // A config claiming the wrong diff_id.
    let wrong = dir.path().join("wrong-diff");
    let mut image = TestImage::new("localhost/bad:2", vec![layer(&[("y", b"payload")], Compression::Zstd)]);
    image.wrong_diff_id = true;
    oci_layout(&wrong, &[image]);
    cases.push(("digest_mismatch", wrong));
    // A truncated archive.
    let truncated = dir.path().join("truncated.tar");
    let full = dir.path().join("full.tar");
    let big = TestImage::new("localhost/bad:3", vec![layer(&[("big", &vec![3u8; 200_000])], Compression::None)]);
    let src = dir.path().join("big");
    oci_layout(&src, &[big]);
    tar_dir(&src, &full);
    let bytes = fs::read(&full).unwrap();
    fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    cases.push(("image_archive", truncated));
    // Not an archive at all, and nothing at all.
    let junk = dir.path().join("junk.bin");
    fs::write(&junk, b"this is not a tar archive, not even close...").unwrap();
    cases.push(("image_archive", junk));
    cases.push(("image_archive", dir.path().join("missing.tar")));
    // A member escaping the archive.
    let escaping = dir.path().join("escape.tar");
    let mut builder = tar::Builder::new(fs::File::create(&escaping).unwrap());
    let mut header = tar::Header::new_gnu();
    header.set_size(2);
    header.set_entry_type(tar::EntryType::Regular);
    header.as_gnu_mut().unwrap().name[..12].copy_from_slice(b"../index.jso");
    header.set_cksum();
    builder.append(&header, &b"{}"[..]).unwrap();
    builder.finish().unwrap();
    drop(builder);
    cases.push(("image_archive", escaping));

    for (code, path) in cases {
        let err = cache.load(&path, &LoadOptions::default()).unwrap_err();
        assert_eq!(err.code(), code, "{path:?}: {err}");
        assert_eq!(
            (artifacts(&home), cache.list().unwrap(), row_counts(&home)),
            before,
            "{path:?} changed the cache"
        );
        assert!(files_under(&home.join("tmp")).is_empty(), "{path:?} left temp files");
    }
}

#[test]
fn save_round_trips_through_both_formats() {
    let (dir, home) = scratch();
    let layout = dir.path().join("layout");
    let written = oci_layout(&layout, &[TestImage::new("localhost/app:1", base_layers())]).remove(0);
    let cache = loaded(&home, &layout);
    for (format, name) in [(Format::Docker, "docker.tar"), (Format::Oci, "oci.tar")] {
        let out = dir.path().join(name);
        cache.save(&["localhost/app:1".to_string()], &out, format).unwrap();
        let fresh = Cache::open(&dir.path().join(format!("fresh-{name}"))).unwrap();
        fresh.load(&out, &LoadOptions::default()).unwrap();
        let details = fresh.inspect("localhost/app:1").unwrap();
        assert_eq!(details.config.unwrap().digest.to_string(), written.config, "{name}");
        assert_eq!(
            details.layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>(),
            written.diff_ids,
            "{name}"
        );
        // Layers are written uncompressed (the compressed blobs are not kept),
        // so each is its own diff_id and the OCI manifest is a new one.
        for layer in &details.layers {
            assert_eq!(layer.blob_digest, layer.diff_id, "{name}");
        }
        if format == Format::Oci {
            assert_ne!(details.summary.manifest_digest.to_string(), written.manifest, "{name}");
        }
    }
    assert!(matches!(
        cache.save(&["localhost/nope:1".into()], &dir.path().join("x.tar"), Format::Oci),
        Err(Error::ImageNotFound { .. })
    ));
    assert!(!dir.path().join("x.tar").exists());
}

#[test]
fn concurrent_ingests_share_layers_and_agree() {
    let (dir, home) = scratch();
    let shared = layer(&[("usr/lib/big", &vec![9u8; 300_000])], Compression::Gzip);
    let mut archives = Vec::new();
    for i in 0..4 {
        let layout = dir.path().join(format!("layout{i}"));
        let own = layer(&[(&format!("own/{i}"), format!("image {i}").as_bytes())], Compression::Gzip);
        oci_layout(&layout, &[TestImage::new(&format!("localhost/img:{i}"), vec![shared.clone(), own])]);
        archives.push(layout);
    }
    // Separate Cache values stand in for separate processes (separate
    // connections and file locks); half share one value.
    let shared_cache = Cache::open(&home).unwrap();
    std::thread::scope(|scope| {
        for (i, archive) in archives.iter().enumerate() {
            let home = home.clone();
            let shared_cache = &shared_cache;
            scope.spawn(move || {
                let own;
                let cache = if i % 2 == 0 {
                    own = Cache::open(&home).unwrap();
                    &own
                } else {
                    shared_cache
                };
                cache.load(archive, &LoadOptions::default()).unwrap();
                cache.load(archive, &LoadOptions::default()).unwrap();
            });
        }
        scope.spawn(|| {
            for _ in 0..5 {
                Cache::open(&home).unwrap().prune().unwrap();
            }
        });
    });
    let cache = Cache::open(&home).unwrap();
    let listed = cache.list().unwrap();
    // Prune may have raced the loads; whatever survived is complete.
    for image in &listed {
        let boot = cache
            .acquire(&image.reference.to_string(), &format!("check-{}", image.reference))
            .unwrap();
        assert!(boot.layers.iter().chain([&boot.fsmeta, &boot.vmdk]).all(|p| p.exists()));
    }
    let layer_files = files_under(&home.join("layers"));
    let distinct_layers: std::collections::HashSet<_> = listed
        .iter()
        .flat_map(|i| {
            cache
                .inspect(&i.reference.to_string())
                .unwrap()
                .layers
                .into_iter()
                .map(|l| l.diff_id)
        })
        .collect();
    assert_eq!(layer_files.len(), distinct_layers.len(), "one file per layer, none left over");
    assert!(files_under(&home.join("tmp")).is_empty());
}

#[test]
fn a_relative_cache_path_still_yields_absolute_disk_paths() {
    let (dir, home) = scratch();
    let cwd = std::env::current_dir().unwrap();
    let relative: std::path::PathBuf = cwd
        .components()
        .skip(1)
        .map(|_| "..")
        .collect::<std::path::PathBuf>()
        .join(home.strip_prefix("/").unwrap());
    assert!(relative.is_relative());
    let layout = dir.path().join("layout");
    oci_layout(&layout, &[TestImage::new("localhost/rel:1", base_layers())]);
    let cache = Cache::open(&relative).unwrap();
    cache.load(&layout, &LoadOptions::default()).unwrap();
    let boot = cache.acquire("localhost/rel:1", "sb").unwrap();
    assert!(boot.vmdk.is_absolute() && boot.fsmeta.is_absolute() && boot.layers.iter().all(|l| l.is_absolute()));
    let descriptor = fs::read_to_string(&boot.vmdk).unwrap();
    for line in descriptor.lines().filter(|l| l.starts_with("RW ")) {
        let path = line.split('"').nth(1).unwrap();
        assert!(Path::new(path).is_absolute() && Path::new(path).exists(), "{line}");
    }
}

#[test]
fn a_multi_image_archive_loads_whole_or_not_at_all() {
    let (dir, home) = scratch();
    let good = TestImage::new("localhost/good:1", base_layers());
    let mut bad = TestImage::new("localhost/bad:1", vec![layer(&[("bad", b"bad")], Compression::Gzip)]);
    bad.wrong_diff_id = true;
    let archive = dir.path().join("two.tar");
    docker_archive(&archive, &[good, bad]);
    let cache = Cache::open(&home).unwrap();
    let err = cache.load(&archive, &LoadOptions::default()).unwrap_err();
    assert_eq!(err.code(), "digest_mismatch", "{err}");
    assert!(cache.list().unwrap().is_empty(), "the good image must not enter alone");
    assert!(artifacts(&home).is_empty(), "{:?}", artifacts(&home));
}

#[test]
fn concurrent_saves_to_one_path_leave_a_complete_archive() {
    let (dir, home) = scratch();
    let layout = dir.path().join("layout");
    oci_layout(&layout, &[TestImage::new("localhost/app:1", base_layers())]);
    let cache = loaded(&home, &layout);
    let out = dir.path().join("out.tar");
    std::thread::scope(|scope| {
        for format in [Format::Oci, Format::Docker, Format::Oci, Format::Docker] {
            let (cache, out) = (&cache, &out);
            scope.spawn(move || cache.save(&["localhost/app:1".to_string()], out, format).unwrap());
        }
    });
    let fresh = Cache::open(&dir.path().join("fresh")).unwrap();
    assert_eq!(fresh.load(&out, &LoadOptions::default()).unwrap().len(), 1);
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn a_schema_1_cache_with_blob_files_is_upgraded_on_open() {
    let (dir, home) = scratch();
    let layout = dir.path().join("layout");
    let written = oci_layout(&layout, &[TestImage::new("localhost/app:1", base_layers())]).remove(0);
    let cache = loaded(&home, &layout);
    let boot = cache.acquire("localhost/app:1", "sb").unwrap();
    let size = cache.get("localhost/app:1").unwrap().size_bytes;
    drop(cache);
    let layer_images: Vec<Vec<u8>> = boot.layers.iter().map(|p| fs::read(p).unwrap()).collect();
    let fsmeta = fs::read(&boot.fsmeta).unwrap();
    let vmdk_size = fs::metadata(&boot.vmdk).unwrap().len();
    let upgraded = row_counts(&home);

    // Turn the cache into what schema 1 wrote: documents and compressed
    // layers as files under blobs/, layer blobs as rows of `blobs`, no
    // framing, no documents in the index, sizes counting the blobs, no seals.
    let legacy = home.join("blobs/sha256");
    fs::create_dir_all(&legacy).unwrap();
    for entry in fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), legacy.join(entry.file_name())).unwrap();
    }
    let conn = rusqlite::Connection::open(home.join("db/index.sqlite")).unwrap();
    conn.execute_batch(
        "PRAGMA foreign_keys = OFF;
         BEGIN;
         INSERT OR IGNORE INTO blobs (digest, size, media_type) SELECT blob_digest, blob_size, media_type FROM manifest_layers;
         CREATE TABLE manifest_layers_1 (
             manifest_digest  TEXT NOT NULL REFERENCES manifests(digest) ON DELETE CASCADE,
             position         INTEGER NOT NULL,
             diff_id          TEXT NOT NULL REFERENCES layers(diff_id),
             blob_digest      TEXT NOT NULL REFERENCES blobs(digest),
             media_type       TEXT,
             PRIMARY KEY (manifest_digest, position)
         ) WITHOUT ROWID;
         INSERT INTO manifest_layers_1 SELECT manifest_digest, position, diff_id, blob_digest, media_type FROM manifest_layers;
         DROP TABLE manifest_layers;
         ALTER TABLE manifest_layers_1 RENAME TO manifest_layers;
         CREATE INDEX manifest_layers_diff_id ON manifest_layers(diff_id);
         CREATE INDEX manifest_layers_blob ON manifest_layers(blob_digest);
         DROP TABLE blob_content;
         DROP TABLE layer_framing;
         UPDATE manifests SET size_bytes = 1;
         DROP INDEX layers_unsealed;
         DROP INDEX manifests_unsealed;
         ALTER TABLE layers DROP COLUMN seal;
         ALTER TABLE layers DROP COLUMN lost;
         ALTER TABLE manifests DROP COLUMN fsmeta_sha256;
         ALTER TABLE manifests DROP COLUMN vmdk_sha256;
         COMMIT;
         PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(conn);
    // As if an older converter had written the top layer's image.
    let mut top = layer_images[2].clone();
    top[0] ^= 1;
    fs::write(&boot.layers[2], top).unwrap();

    let cache = Cache::open(&home).unwrap();
    assert!(!home.join("blobs").exists(), "blobs/ is gone");
    assert_eq!(
        row_counts(&home),
        upgraded,
        "documents and framing are in the index, layer blobs out of it"
    );
    let without_disk = size.map(|s| s - fsmeta.len() as u64 - vmdk_size);
    assert_eq!(cache.get("localhost/app:1").unwrap().size_bytes, without_disk);
    for (path, bytes) in boot.layers.iter().zip(&layer_images) {
        assert_eq!(&fs::read(path).unwrap(), bytes, "layer images are the converter's");
    }
    // The disk built on the old top layer went; acquire builds it again.
    assert!(!boot.fsmeta.exists() && !boot.vmdk.exists());
    assert_eq!(cache.acquire("localhost/app:1", "sb").unwrap(), boot);
    assert_eq!(fs::read(&boot.fsmeta).unwrap(), fsmeta);
    assert_eq!(cache.get("localhost/app:1").unwrap().size_bytes, size);

    let out = dir.path().join("saved.tar");
    cache.save(&["localhost/app:1".to_string()], &out, Format::Docker).unwrap();
    let fresh = loaded(&dir.path().join("fresh"), &out);
    let details = fresh.inspect("localhost/app:1").unwrap();
    assert_eq!(details.config.unwrap().digest.to_string(), written.config);
    assert_eq!(
        details.layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>(),
        written.diff_ids
    );
}
