//! TLS material made with openssl for 127.0.0.1 (a CA and a server
//! certificate it signs), a self-signed token-signing key, and htpasswd files.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{require_tool, run};

/// A CA and a server certificate for 127.0.0.1/localhost signed by it.
pub struct Certs {
    /// Holds `ca.crt` (for skopeo's `--dest-cert-dir`).
    pub ca_dir: PathBuf,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    run(Command::new(require_tool("openssl")).current_dir(dir).args(args));
}

/// Makes, in `work`, a P-256 CA (`ca.crt`, `ca.key`, subject `ca_subject`)
/// and a certificate it signs, `<leaf>.crt` and `<leaf>.key`, with subject
/// `leaf_subject` and the X.509 extensions `extensions`.
fn ca_and_leaf(work: &Path, ca_subject: &str, leaf: &str, leaf_subject: &str, extensions: &str) {
    std::fs::create_dir_all(work).unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut args = vec!["req", "-x509", "-days", "2", "-subj", ca_subject];
    args.extend(ec);
    args.extend(["-keyout", "ca.key", "-out", "ca.crt"]);
    args.extend([
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(work, &args);
    let (key, csr, crt, ext) = (
        format!("{leaf}.key"),
        format!("{leaf}.csr"),
        format!("{leaf}.crt"),
        format!("{leaf}.ext"),
    );
    let mut args = vec!["req", "-subj", leaf_subject, "-keyout", &key, "-out", &csr];
    args.extend(ec);
    openssl(work, &args);
    std::fs::write(work.join(&ext), extensions).unwrap();
    openssl(
        work,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &crt,
        ],
    );
}

/// Makes a CA named `name` and a server certificate under `dir`.
pub fn certs(dir: &Path, name: &str) -> Certs {
    let work = dir.join(format!("{name}-work"));
    ca_and_leaf(
        &work,
        &format!("/CN={name} test CA"),
        "server",
        "/CN=127.0.0.1",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    );
    // skopeo's cert dir must hold only the CA (a *.key there is a client key).
    let ca_dir = dir.join(format!("{name}-ca"));
    std::fs::create_dir_all(&ca_dir).unwrap();
    std::fs::copy(work.join("ca.crt"), ca_dir.join("ca.crt")).unwrap();
    Certs {
        ca: ca_dir.join("ca.crt"),
        server_cert: work.join("server.crt"),
        server_key: work.join("server.key"),
        ca_dir,
    }
}

/// A client certificate for mutual TLS: a CA (for the registry's
/// `clientcas`) and a certificate it signs for client authentication, with
/// its key. `cert_dir` holds `ca.crt` of `server_ca` and the client pair as
/// skopeo's `--dest-cert-dir` wants them (`client.cert`, `client.key`).
pub struct ClientCerts {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cert_dir: PathBuf,
}

/// Makes a client CA named `name` and a client certificate under `dir`;
/// `server_ca` is the registry's CA, copied into the skopeo directory.
pub fn client_certs(dir: &Path, name: &str, server_ca: &Path) -> ClientCerts {
    let work = dir.join(format!("{name}-client"));
    ca_and_leaf(
        &work,
        &format!("/CN={name} client CA"),
        "client",
        "/CN=puller",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
    );
    let cert_dir = dir.join(format!("{name}-skopeo"));
    std::fs::create_dir_all(&cert_dir).unwrap();
    std::fs::copy(server_ca, cert_dir.join("ca.crt")).unwrap();
    std::fs::copy(work.join("client.crt"), cert_dir.join("client.cert")).unwrap();
    std::fs::copy(work.join("client.key"), cert_dir.join("client.key")).unwrap();
    ClientCerts {
        ca: work.join("ca.crt"),
        cert: work.join("client.crt"),
        key: work.join("client.key"),
        cert_dir,
    }
}

/// A self-signed P-256 key for signing tokens: (PKCS#8 DER key, DER
/// certificate, PEM certificate path for the registry's rootcertbundle).
pub fn signing_key(dir: &Path) -> (Vec<u8>, Vec<u8>, PathBuf) {
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "signer.key",
        ],
    );
    openssl(
        dir,
        &[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            "signer.key",
            "-outform",
            "DER",
            "-out",
            "signer.pk8",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-key",
            "signer.key",
            "-subj",
            "/CN=token signer",
            "-days",
            "2",
            "-out",
            "signer.pem",
        ],
    );
    openssl(dir, &["x509", "-in", "signer.pem", "-outform", "DER", "-out", "signer.der"]);
    (
        std::fs::read(dir.join("signer.pk8")).unwrap(),
        std::fs::read(dir.join("signer.der")).unwrap(),
        dir.join("signer.pem"),
    )
}

/// An htpasswd file (bcrypt) with one user, whose password is registered as a secret.
pub fn htpasswd(dir: &Path, user: &str, password: &str) -> PathBuf {
    super::secrets::register_basic(user, password);
    let path = dir.join("htpasswd");
    let line = run(Command::new(require_tool("htpasswd")).args(["-Bbn", user, password]));
    std::fs::write(&path, line.trim()).unwrap();
    path
}
