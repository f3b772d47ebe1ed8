//! The faulty registry the fault tests share: a small image served by the
//! handcrafted server, with a hook to answer some requests differently.

use std::sync::atomic::{AtomicUsize, Ordering};

use oci::manifest::Descriptor;
use oci::reference::Reference;
use registry::Error;
use registry::{Client, PullOptions};

use super::fake::{Content, Reply, Request, Server};
use super::image::{self, Image};

/// The repository every fault test pulls.
pub const REPO: &str = "fault/app";

pub fn image() -> Image {
    image::simple("amd64", 30)
}

/// The image's big layer (about 200 kB) and its path on the server.
pub fn big_layer(image: &Image) -> (Descriptor, Vec<u8>, String) {
    let (descriptor, bytes) = image.layers[1].clone();
    let path = format!("/v2/{REPO}/blobs/{}", descriptor.digest);
    (descriptor, bytes, path)
}

/// A registry serving `image` as `v1`, unless `fault` answers first.
pub fn serve(image: &Image, fault: impl Fn(&Request, &Content) -> Option<Reply> + Send + Sync + 'static) -> Server {
    let content = Content::with_image(REPO, "v1", image);
    Server::start(move |request| fault(request, &content).unwrap_or_else(|| content.serve(request)))
}

pub fn reference(server: &Server) -> String {
    format!("{}/{REPO}:v1", server.host())
}

pub fn client(server: &Server, opts: &PullOptions) -> Client {
    Client::new(&Reference::parse(&reference(server)).unwrap(), opts).unwrap()
}

pub fn open_error(client: &Client, blob: &Descriptor) -> Error {
    match client.open_blob(blob) {
        Err(e) => e,
        Ok(_) => panic!("opening {} should fail", blob.digest),
    }
}

/// The first call returns 0, then 1, ...
pub fn next(counter: &AtomicUsize) -> usize {
    counter.fetch_add(1, Ordering::SeqCst)
}

pub fn work() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}
