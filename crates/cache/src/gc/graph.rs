//! The index as the collector plans over it: every reference, manifest and
//! layer row read once into memory ([`super::rows::graph`]), and
//! what follows from a choice of references computed here in one pass:
//! which manifests and layers go with them, which files stay reachable,
//! what a size budget evicts, what each image alone holds. As in
//! containerd, the algorithm lives apart from the storage that reads and
//! deletes the rows. A dry run, a real prune, a budget and `diskUsage`
//! share it, so their numbers cannot drift apart, and none of them costs a
//! statement per question over tens of thousands of rows.

use super::measure::Measured;
use super::policy::PruneOptions;
use crate::index::reach::LiveSet;
use crate::store::{Key, Kind};
use crate::{DigestMap, DigestSet};

/// An image reference row.
#[derive(Debug)]
pub struct RefNode {
    /// The normalized reference.
    pub name: String,
    /// Index of its manifest in [`Graph::manifests`].
    pub manifest: usize,
    /// When it entered the cache (ms since epoch).
    pub created_at: i64,
}

/// A manifest row.
#[derive(Debug)]
pub struct ManifestNode {
    /// Its digest as stored (`sha256:<hex>`).
    pub digest: String,
    /// When a sandbox last acquired it.
    pub last_used_at: Option<i64>,
    /// Recorded size of its fsmeta image (None: none built).
    pub fsmeta_size: Option<u64>,
    /// Recorded size of its VMDK (None: none built).
    pub vmdk_size: Option<u64>,
    /// Whether a sandbox or snapshot holds it: it never goes.
    pub rooted: bool,
    /// Its layers by index in [`Graph::layers`], one per position.
    pub layers: Vec<usize>,
}

/// A layer row.
#[derive(Debug)]
pub struct LayerNode {
    /// Its diff_id as stored.
    pub diff_id: String,
    /// Recorded size of its image.
    pub size: u64,
    /// Whether a repair dropped its image (no file is expected).
    pub lost: bool,
}

/// The rows, linked by position. References are sorted by name.
#[derive(Debug, Default)]
pub struct Graph {
    /// Every reference, sorted by name.
    pub refs: Vec<RefNode>,
    /// Every manifest.
    pub manifests: Vec<ManifestNode>,
    /// Every layer.
    pub layers: Vec<LayerNode>,
    manifest_by_key: DigestMap<Key, usize>,
    /// Each manifest's key, by position (None: not a sha256, so no file).
    manifest_keys: Vec<Option<Key>>,
    /// Each layer's key, by position.
    layer_keys: Vec<Option<Key>>,
    /// Where [`Graph::link`] is in [`Graph::layers`]: links come sorted by
    /// diff_id, as layers do, so each finds its layer by walking forward.
    link_cursor: usize,
    /// Links read, as (manifest, layer), until [`Graph::linked`].
    links: Vec<(usize, usize)>,
}

/// What a prune takes, and what it leaves reachable.
#[derive(Debug, Default)]
pub struct Plan {
    /// References, sorted.
    pub references: Vec<String>,
    /// Digests of the manifest rows that go (each names an fsmeta and a VMDK).
    pub manifests: Vec<String>,
    /// diff_ids of the layer rows that go (each names a layer image).
    pub layers: Vec<String>,
    /// The files the index reaches once the plan is carried out.
    pub live: LiveSet,
}

impl Graph {
    /// Adds a manifest row (before the references and links naming it).
    pub fn add_manifest(&mut self, node: ManifestNode) {
        let key = Key::of_digest(&node.digest);
        if let Some(key) = key {
            self.manifest_by_key.insert(key, self.manifests.len());
        }
        self.manifest_keys.push(key);
        self.manifests.push(node);
    }

    /// Makes room for `links` links at once, and for as many layer rows
    /// (one per link at most, but for layers no manifest uses, which the
    /// next prune removes), so that tens of thousands of rows are not
    /// copied as the tables grow.
    pub fn reserve(&mut self, links: usize) {
        self.layers.reserve(links);
        self.layer_keys.reserve(links);
        self.links.reserve(links);
    }

    /// Adds a layer row (before the links naming it); layers must come
    /// sorted by diff_id.
    pub fn add_layer(&mut self, node: LayerNode) {
        self.layer_keys.push(Key::of_digest(&node.diff_id));
        self.layers.push(node);
    }

    /// Records that `manifest` uses layer `diff_id` (once per position),
    /// both as the bytes of their text. Links must come sorted by diff_id,
    /// as layers do (an index scan, with no sort); a link naming a row the
    /// graph lacks is left out.
    pub fn link(&mut self, manifest: &[u8], diff_id: &[u8]) {
        // Two sha256 digests as stored order as their keys do, which sit
        // side by side in memory; any other pair is compared as text.
        let key = Key::of_digest(diff_id);
        let order = |l: usize| match (self.layer_keys[l], key) {
            (Some(a), Some(b)) => a.cmp(&b),
            _ => self.layers[l].diff_id.as_bytes().cmp(diff_id),
        };
        let mut cursor = self.link_cursor;
        while cursor < self.layers.len() && order(cursor).is_lt() {
            cursor += 1;
        }
        let found = cursor < self.layers.len() && order(cursor).is_eq();
        self.link_cursor = cursor;
        if let (true, Some(&m)) = (found, self.manifest(manifest)) {
            self.links.push((m, cursor));
        }
    }

    /// Hands each manifest the layers its links name, once every link is
    /// read: one pass over the links, not a write into a random
    /// manifest's list between two rows of the scan.
    pub fn linked(&mut self) {
        for (m, l) in std::mem::take(&mut self.links) {
            self.manifests[m].layers.push(l);
        }
    }

    /// Adds a reference row naming `manifest` (its text's bytes);
    /// references must come sorted by name.
    pub fn add_ref(&mut self, name: String, manifest: &[u8], created_at: i64) {
        if let Some(&manifest) = self.manifest(manifest) {
            self.refs.push(RefNode {
                name,
                manifest,
                created_at,
            });
        }
    }

    /// Marks the manifest `digest` (its text's bytes) as held by a sandbox
    /// or snapshot.
    pub fn root(&mut self, digest: &[u8]) {
        if let Some(&m) = self.manifest(digest) {
            self.manifests[m].rooted = true;
        }
    }

    /// The manifest whose digest is `digest` (as stored), by index.
    fn manifest(&self, digest: &[u8]) -> Option<&usize> {
        Key::of_digest(digest).and_then(|key| self.manifest_by_key.get(&key))
    }

    /// The reference named `name`, by index.
    pub fn reference(&self, name: &str) -> Option<usize> {
        self.refs.binary_search_by(|r| r.name.as_str().cmp(name)).ok()
    }

    /// Every artifact file a row names, with the size the row records (a
    /// lost layer names none): what the listed files are sized by.
    pub fn recorded(&self) -> impl Iterator<Item = (Kind, &Key, u64)> {
        let layers = self
            .layers
            .iter()
            .zip(&self.layer_keys)
            .filter(|(l, _)| !l.lost)
            .filter_map(|(l, key)| Some((Kind::Layer, key.as_ref()?, l.size)));
        let disks = self.manifests.iter().zip(&self.manifest_keys).flat_map(|(m, key)| {
            let key = key.as_ref();
            let fsmeta = key.zip(m.fsmeta_size).map(|(key, size)| (Kind::Fsmeta, key, size));
            let vmdk = key.zip(m.vmdk_size).map(|(key, size)| (Kind::Vmdk, key, size));
            fsmeta.into_iter().chain(vmdk)
        });
        layers.chain(disks)
    }

    /// The references a prune may take under `options` at `now` (ms), by
    /// index, least recently used first (the image's `last_used_at`, or
    /// the reference's `created_at` for an image never acquired; ties by
    /// reference): no sandbox or snapshot holds their image, the durations
    /// select them, and `matching` (what the pattern filters selected,
    /// [`super::rows::matching`]; None: no pattern filter) names them.
    pub fn candidates(&self, options: &PruneOptions, now: i64, matching: Option<&[String]>) -> Vec<usize> {
        let cutoff = |ms: Option<u64>| ms.map(|ms| now.saturating_sub(ms as i64));
        let (unused_before, created_before) = (cutoff(options.unused_for), cutoff(options.older_than));
        let matched = matching.map(|names| {
            let mut matched = vec![false; self.refs.len()];
            for r in names.iter().filter_map(|name| self.reference(name)) {
                matched[r] = true;
            }
            matched
        });
        let at = |r: &RefNode| self.manifests[r.manifest].last_used_at.unwrap_or(r.created_at);
        let mut picked: Vec<usize> = (0..self.refs.len())
            .filter(|&i| {
                let r = &self.refs[i];
                !self.manifests[r.manifest].rooted
                    && unused_before.is_none_or(|cutoff| at(r) < cutoff)
                    && created_before.is_none_or(|cutoff| r.created_at < cutoff)
                    && matched.as_ref().is_none_or(|matched| matched[i])
            })
            .collect();
        // Stable: references are sorted by name, which breaks ties.
        picked.sort_by_key(|&i| at(&self.refs[i]));
        picked
    }

    /// References naming each manifest.
    fn ref_counts(&self) -> Vec<u64> {
        let mut counts = vec![0; self.manifests.len()];
        for r in &self.refs {
            counts[r.manifest] += 1;
        }
        counts
    }

    /// Positions at which manifests that stay use each layer.
    fn layer_users(&self, stays: impl Fn(usize) -> bool) -> Vec<u64> {
        let mut users = vec![0; self.layers.len()];
        for m in (0..self.manifests.len()).filter(|&m| stays(m)) {
            for &l in &self.manifests[m].layers {
                users[l] += 1;
            }
        }
        users
    }

    /// The plan that takes the references `taken` (indexes into
    /// [`Graph::refs`]): with them go the manifests no other reference
    /// names and no root holds, and the layers no remaining manifest uses;
    /// so does whatever no root reached already.
    pub fn plan(&self, taken: &[usize]) -> Plan {
        let mut gone_ref = vec![false; self.refs.len()];
        for &r in taken {
            gone_ref[r] = true;
        }
        let mut counts = vec![0u64; self.manifests.len()];
        for (node, _) in self.refs.iter().zip(&gone_ref).filter(|(_, &gone)| !gone) {
            counts[node.manifest] += 1;
        }
        let stays = |m: usize| counts[m] > 0 || self.manifests[m].rooted;
        let users = self.layer_users(stays);
        let mut plan = Plan {
            references: self
                .refs
                .iter()
                .zip(&gone_ref)
                .filter(|(_, &g)| g)
                .map(|(r, _)| r.name.clone())
                .collect(),
            ..Plan::default()
        };
        let (mut fsmeta, mut vmdk) = (DigestSet::default(), DigestSet::default());
        for (m, manifest) in self.manifests.iter().enumerate() {
            if !stays(m) {
                plan.manifests.push(manifest.digest.clone());
                continue;
            }
            let Some(key) = self.manifest_keys[m] else { continue };
            if manifest.fsmeta_size.is_some() {
                fsmeta.insert(key);
            }
            if manifest.vmdk_size.is_some() {
                vmdk.insert(key);
            }
        }
        let mut layers = DigestSet::default();
        for ((layer, &n), key) in self.layers.iter().zip(&users).zip(&self.layer_keys) {
            if n == 0 {
                plan.layers.push(layer.diff_id.clone());
            } else if !layer.lost {
                layers.extend(*key);
            }
        }
        plan.live = LiveSet::new(layers, fsmeta, vmdk);
        plan
    }

    /// Bytes of each manifest's fsmeta and VMDK files, and of each
    /// layer's image (0 for a lost one), as `measured`: looked up once.
    fn sizes(&self, measured: &Measured) -> (Vec<u64>, Vec<u64>) {
        let disks = self
            .manifests
            .iter()
            .zip(&self.manifest_keys)
            .map(|(m, key)| {
                let Some(key) = key else { return 0 };
                let fsmeta = m.fsmeta_size.map_or(0, |_| measured.size(Kind::Fsmeta, key));
                let vmdk = m.vmdk_size.map_or(0, |_| measured.size(Kind::Vmdk, key));
                fsmeta + vmdk
            })
            .collect();
        let layers = self
            .layers
            .iter()
            .zip(&self.layer_keys)
            .map(|(l, key)| match key {
                Some(key) if !l.lost => measured.size(Kind::Layer, key),
                _ => 0,
            })
            .collect();
        (disks, layers)
    }

    /// What a size budget evicts: a prefix of `lru` (candidate references,
    /// least recently used first), taken until the cache as `measured`
    /// fits in `budget` bytes; all of them when even that does not fit.
    /// Bytes are freed as the sweep frees them: first whatever no root
    /// reaches already, then a manifest's fsmeta and VMDK when its last
    /// reference goes (and no root holds it), a layer image when the last
    /// manifest using it goes. The index file does not shrink when rows go
    /// (nothing VACUUMs it; the next ingest reuses its free pages), so it
    /// counts as it is.
    pub fn choose(&self, lru: &[usize], measured: &Measured, budget: u64) -> Vec<usize> {
        let (disks, layer_bytes) = self.sizes(measured);
        let mut counts = self.ref_counts();
        let stays = |m: usize, counts: &[u64]| counts[m] > 0 || self.manifests[m].rooted;
        let mut users = self.layer_users(|m| stays(m, &counts));
        let kept: u64 = (0..self.manifests.len())
            .filter(|&m| stays(m, &counts))
            .map(|m| disks[m])
            .sum::<u64>()
            + (0..self.layers.len())
                .filter(|&l| users[l] > 0)
                .map(|l| layer_bytes[l])
                .sum::<u64>();
        let artifacts: u64 = measured.kinds.iter().map(|k| k.bytes).sum();
        let mut remaining = measured.total - (artifacts - kept.min(artifacts));
        let mut chosen = Vec::new();
        for &r in lru {
            if remaining <= budget {
                break;
            }
            chosen.push(r);
            let m = self.refs[r].manifest;
            counts[m] -= 1;
            if stays(m, &counts) {
                continue;
            }
            remaining = remaining.saturating_sub(disks[m]);
            for &l in &self.manifests[m].layers {
                users[l] -= 1;
                if users[l] == 0 {
                    remaining = remaining.saturating_sub(layer_bytes[l]);
                }
            }
        }
        chosen
    }

    /// Per reference: the bytes of its files, and what removing it alone
    /// would free (its fsmeta and VMDK, and the layers no other live
    /// manifest uses, unless another reference or a root keeps the manifest).
    pub fn usage(&self, measured: &Measured) -> Vec<ImageBytes> {
        let (disks, layer_bytes) = self.sizes(measured);
        let counts = self.ref_counts();
        let users = self.layer_users(|m| counts[m] > 0 || self.manifests[m].rooted);
        let mut own = Vec::new();
        self.refs
            .iter()
            .map(|r| {
                let manifest = &self.manifests[r.manifest];
                let alone = counts[r.manifest] == 1 && !manifest.rooted;
                let disk = disks[r.manifest];
                let (mut size, mut unique) = (disk, if alone { disk } else { 0 });
                // Each distinct layer once, with the positions this manifest uses it at.
                own.clear();
                own.extend_from_slice(&manifest.layers);
                own.sort_unstable();
                for run in own.chunk_by(|a, b| a == b) {
                    let l = run[0];
                    size += layer_bytes[l];
                    if alone && users[l] == run.len() as u64 {
                        unique += layer_bytes[l];
                    }
                }
                ImageBytes { size, unique }
            })
            .collect()
    }
}

/// One reference's bytes, as [`Graph::usage`] counts them.
#[derive(Debug, Clone, Copy)]
pub struct ImageBytes {
    /// Bytes of its files: layer images, fsmeta, VMDK.
    pub size: u64,
    /// What removing it alone would free.
    pub unique: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gc::measure::KindFiles;

    /// The hex of a test digest named by one character.
    fn h(name: &str) -> String {
        format!("{:02x}", name.as_bytes()[0]).repeat(32)
    }

    /// A test digest, as stored, named by one character.
    fn d(name: &str) -> String {
        format!("sha256:{}", h(name))
    }

    fn manifest(digest: String, rooted: bool) -> ManifestNode {
        ManifestNode {
            digest,
            last_used_at: None,
            fsmeta_size: Some(10),
            vmdk_size: Some(1),
            rooted,
            layers: Vec::new(),
        }
    }

    fn layer(diff_id: String) -> LayerNode {
        LayerNode {
            diff_id,
            size: 100,
            lost: false,
        }
    }

    /// Two images sharing layer `s`, one rooted image, one manifest no
    /// reference names, one layer no manifest uses.
    fn graph() -> Graph {
        let mut g = Graph::default();
        for (m, rooted) in [(d("a"), false), (d("b"), false), (d("r"), true), (d("o"), false)] {
            g.add_manifest(manifest(m, rooted));
        }
        for l in [d("1"), d("2"), d("3"), d("s"), d("u")] {
            g.add_layer(layer(l));
        }
        for (m, l) in [
            (d("a"), d("1")),
            (d("b"), d("2")),
            (d("r"), d("3")),
            (d("o"), d("3")),
            (d("a"), d("s")),
            (d("b"), d("s")),
        ] {
            g.link(m.as_bytes(), l.as_bytes());
        }
        g.linked();
        for (name, m) in [("a", d("a")), ("b", d("b")), ("b2", d("b")), ("r", d("r"))] {
            g.add_ref(name.into(), m.as_bytes(), 0);
        }
        g
    }

    #[test]
    fn a_plan_follows_references_to_what_only_they_keep() {
        let g = graph();
        let plan = g.plan(&[g.reference("a").unwrap(), g.reference("b").unwrap()]);
        assert_eq!(plan.references, ["a", "b"]);
        // b2 keeps x:b; x:o is unreached already; x:3 stays for the root.
        assert_eq!(plan.manifests, [d("a"), d("o")]);
        assert_eq!(plan.layers, [d("1"), d("u")]);
        // Links are sorted by diff_id; one naming no layer row is left out.
        let mut g = graph();
        g.link(d("a").as_bytes(), d("t").as_bytes());
        g.linked();
        assert_eq!(g.manifests[0].layers.len(), 2);
        assert!(plan.live.reaches_hex(Kind::Layer, &h("s")) && plan.live.reaches_hex(Kind::Layer, &h("3")));
        assert!(!plan.live.reaches_hex(Kind::Fsmeta, &h("a")) && plan.live.reaches_hex(Kind::Vmdk, &h("b")));
    }

    #[test]
    fn links_find_layers_whose_diff_ids_are_not_keys() {
        // As SQLite sorts them: a digest one digit too long sits between two
        // keys, and another algorithm after every sha256.
        let layers = [d("1"), format!("{}0", d("1")), d("2"), "sha512:aa".to_string()];
        let mut g = Graph::default();
        g.add_manifest(manifest(d("m"), false));
        for l in &layers {
            g.add_layer(layer(l.clone()));
        }
        for l in &layers {
            g.link(d("m").as_bytes(), l.as_bytes());
        }
        g.link(d("m").as_bytes(), b"sha512:ab");
        g.linked();
        assert_eq!(g.manifests[0].layers, [0, 1, 2, 3]);
    }

    #[test]
    fn a_budget_evicts_in_order_and_counts_shared_layers_once() {
        let g = graph();
        let mut measured = Measured::default();
        let files = |names: &[&str], size: u64| KindFiles {
            count: names.len() as u64,
            bytes: size * names.len() as u64,
            by_key: names.iter().map(|n| (Key::from_hex(h(n)).unwrap(), size)).collect(),
            ..KindFiles::default()
        };
        measured.kinds = [
            files(&["s", "1", "2", "3", "u"], 100),
            files(&["a", "b", "r", "o"], 10),
            files(&["a", "b", "r", "o"], 1),
        ];
        measured.total = measured.kinds.iter().map(|k| k.bytes).sum::<u64>() + 5;
        let lru: Vec<usize> = ["a", "b", "b2"].iter().map(|n| g.reference(n).unwrap()).collect();
        // Unreached (x:o's disks, layer u) goes first: 549 - 111 = 438.
        assert_eq!(g.choose(&lru, &measured, 438), Vec::<usize>::new());
        // a frees its disks and layer 1 (111): 327.
        assert_eq!(g.choose(&lru, &measured, 327), lru[..1]);
        // b alone frees nothing while b2 names x:b; b2 then frees x:b's
        // disks, layer 2 and the shared layer s.
        assert_eq!(g.choose(&lru, &measured, 326), lru);
        assert_eq!(g.choose(&lru, &measured, 0), lru);
        let usage = g.usage(&measured);
        let a = &usage[g.reference("a").unwrap()];
        assert_eq!((a.size, a.unique), (211, 111));
        let b = &usage[g.reference("b").unwrap()];
        assert_eq!((b.size, b.unique), (211, 0));
    }
}
