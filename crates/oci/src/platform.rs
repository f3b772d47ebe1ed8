//! Platforms (`os/architecture/variant`): which manifest of a multi-platform
//! index a sandbox on this host can boot.

use std::fmt;

/// An OCI platform, normalized (`aarch64` is `arm64`, arm64's default variant is `v8`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    /// e.g. `linux`.
    pub os: String,
    /// GOARCH spelling, e.g. `amd64`, `arm64`.
    pub architecture: String,
    /// e.g. `v8` for arm64, `v7` for arm; none for amd64.
    pub variant: Option<String>,
}

impl Platform {
    /// Builds a normalized platform from its parts.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        let os = os.to_ascii_lowercase();
        let (architecture, default_variant) = match architecture.to_ascii_lowercase().as_str() {
            "x86_64" | "x86-64" | "amd64" => ("amd64".to_string(), None),
            "aarch64" | "arm64" => ("arm64".to_string(), Some("v8")),
            "armhf" | "arm" => ("arm".to_string(), Some("v7")),
            "armel" => ("arm".to_string(), Some("v6")),
            "i386" | "386" => ("386".to_string(), None),
            other => (other.to_string(), None),
        };
        let variant = variant
            .filter(|v| !v.is_empty())
            .map(str::to_ascii_lowercase)
            .or(default_variant.map(String::from));
        Platform { os, architecture, variant }
    }

    /// The platform sandboxes on this machine run: Linux guests of the host's CPU architecture.
    pub fn host() -> Platform {
        Platform::new("linux", std::env::consts::ARCH, None)
    }

    /// Parses `os/arch[/variant]`, e.g. `linux/arm64/v8`.
    pub fn parse(s: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        match parts.as_slice() {
            [os, arch] if [os, arch].iter().all(|p| ok(p)) => Ok(Platform::new(os, arch, None)),
            [os, arch, variant] if [os, arch, variant].iter().all(|p| ok(p)) => Ok(Platform::new(os, arch, Some(variant))),
            _ => Err(format!("invalid platform {s:?}: expected os/architecture[/variant]")),
        }
    }

    /// How well a candidate serves this platform: 0 when it cannot run here
    /// (another OS or architecture, or a newer CPU variant than this one:
    /// `arm/v7` code does not run on `arm/v6`, `amd64/v3` not on plain
    /// `amd64`), 3 for the same variant, 2 for an older variant, 1 for a
    /// candidate that names no variant at all.
    pub fn score(&self, candidate: &Platform) -> u8 {
        if self.os != candidate.os || self.architecture != candidate.architecture {
            return 0;
        }
        let level = |v: &Option<String>| v.as_deref().and_then(|v| v.strip_prefix('v')).and_then(|n| n.parse::<u32>().ok());
        match (&self.variant, &candidate.variant) {
            (want, have) if want == have => 3,
            (_, None) => 1,
            (want, have) => match (level(want).or(want.is_none().then_some(1)), level(have)) {
                (Some(want), Some(have)) if have <= want => 2,
                _ => 0,
            },
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_and_scores() {
        assert_eq!(
            Platform::parse("linux/arm64").unwrap(),
            Platform::parse("linux/aarch64/v8").unwrap()
        );
        assert_eq!(Platform::parse("linux/amd64").unwrap().to_string(), "linux/amd64");
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux//v8").is_err());
        let want = Platform::parse("linux/arm/v7").unwrap();
        assert_eq!(want.score(&Platform::new("linux", "arm", Some("v7"))), 3);
        assert_eq!(want.score(&Platform::new("linux", "arm", Some("v6"))), 2);
        assert_eq!(want.score(&Platform::new("linux", "amd64", None)), 0);
        // Newer variants do not run on older CPUs.
        assert_eq!(
            Platform::parse("linux/arm/v6")
                .unwrap()
                .score(&Platform::new("linux", "arm", Some("v7"))),
            0
        );
        let amd64 = Platform::parse("linux/amd64").unwrap();
        assert_eq!(amd64.score(&Platform::new("linux", "amd64", None)), 3);
        assert_eq!(amd64.score(&Platform::new("linux", "amd64", Some("v1"))), 2);
        assert_eq!(amd64.score(&Platform::new("linux", "amd64", Some("v3"))), 0);
        let host = Platform::host();
        assert_eq!(host.os, "linux");
    }
}
