//! Image references, parsed and normalised the way Docker and containerd do
//! (`github.com/distribution/reference`'s `ParseNormalizedNamed` + kubelet's default tag).

use std::fmt;

use crate::ImageError;

const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
const NAME_TOTAL_LENGTH_MAX: usize = 255;
const INVALID_FORMAT: &str = "invalid reference format";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Reference {
    /// Normalises like Docker/containerd: `busybox` -> `docker.io/library/busybox:latest`,
    /// `foo/bar` -> `docker.io/foo/bar:latest`, `localhost:5000/x` keeps the registry,
    /// `x@sha256:...` keeps the digest (and gets no default tag).
    pub fn parse(s: &str) -> Result<Reference, ImageError> {
        let invalid = |msg: String| Err(ImageError::InvalidReference(msg));
        if s.is_empty() {
            return invalid(INVALID_FORMAT.to_string());
        }
        if s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return invalid(format!(
                "invalid repository name ({s}), cannot specify 64-byte hexadecimal strings"
            ));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest)),
            None => (s, None),
        };
        if let Some(digest) = digest {
            validate_digest(digest)?;
        }
        let last_slash = rest.rfind('/');
        let (name, tag) = match rest.rfind(':') {
            Some(colon) if last_slash.is_none_or(|slash| colon > slash) => {
                (&rest[..colon], Some(&rest[colon + 1..]))
            }
            _ => (rest, None),
        };
        if let Some(tag) = tag {
            if !is_valid_tag(tag) {
                return invalid(INVALID_FORMAT.to_string());
            }
        }
        let (registry, repository) = split_docker_domain(name);
        if repository.to_ascii_lowercase() != repository {
            return invalid(format!(
                "{INVALID_FORMAT}: repository name ({repository}) must be lowercase"
            ));
        }
        if !is_valid_domain(&registry) || !is_valid_path(&repository) {
            return invalid(INVALID_FORMAT.to_string());
        }
        if registry.len() + 1 + repository.len() > NAME_TOTAL_LENGTH_MAX {
            return invalid(format!(
                "repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
            ));
        }
        let tag = match (tag, digest) {
            (None, None) => Some("latest".to_string()),
            (tag, _) => tag.map(str::to_string),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest: digest.map(str::to_string),
        })
    }

    /// `registry/repository`, e.g. `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// `registry/repository:tag` when the reference has a tag (the image's name in the store).
    pub fn tagged_name(&self) -> Option<String> {
        self.tag
            .as_ref()
            .map(|tag| format!("{}:{tag}", self.name()))
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// distribution's `splitDockerDomain`: the first component is a registry only if it looks like
/// a host (has `.` or `:`, is `localhost`, or has upper case).
fn split_docker_domain(name: &str) -> (String, String) {
    let (mut domain, mut remainder) = match name.find('/') {
        Some(i)
            if name[..i].contains(['.', ':'])
                || &name[..i] == "localhost"
                || name[..i].to_ascii_lowercase() != name[..i] =>
        {
            (name[..i].to_string(), name[i + 1..].to_string())
        }
        _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
    };
    if domain == LEGACY_DEFAULT_DOMAIN {
        domain = DEFAULT_DOMAIN.to_string();
    }
    if domain == DEFAULT_DOMAIN && !remainder.contains('/') {
        remainder = format!("{OFFICIAL_REPO_PREFIX}{remainder}");
    }
    (domain, remainder)
}

fn validate_digest(digest: &str) -> Result<(), ImageError> {
    let invalid = || Err(ImageError::InvalidReference(INVALID_FORMAT.to_string()));
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return invalid();
    };
    // [A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*
    let algorithm_ok = algorithm.split(['-', '_', '+', '.']).all(|part| {
        part.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && part.chars().all(|c| c.is_ascii_alphanumeric())
    });
    if !algorithm_ok || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return invalid();
    }
    let expected_len = match algorithm {
        "sha256" => Some(64),
        "sha384" => Some(96),
        "sha512" => Some(128),
        _ => None,
    };
    if let Some(len) = expected_len {
        if hex.len() != len {
            return Err(ImageError::InvalidReference(format!(
                "{INVALID_FORMAT}: invalid checksum digest length"
            )));
        }
        if hex.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ImageError::InvalidReference(format!(
                "{INVALID_FORMAT}: invalid checksum digest format"
            )));
        }
    }
    Ok(())
}

/// `[\w][\w.-]{0,127}`
fn is_valid_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && word(bytes[0])
        && bytes[1..]
            .iter()
            .all(|&b| word(b) || b == b'.' || b == b'-')
}

/// Host components (`[a-zA-Z0-9]` or `[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`) joined by `.`,
/// or a bracketed IPv6 address, then an optional `:port`.
fn is_valid_domain(domain: &str) -> bool {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let Some((addr, after)) = rest.split_once(']') else {
            return false;
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => ("", Some(port)),
                None => return false,
            },
        }
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (domain, None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    if host.is_empty() {
        return domain.starts_with('[');
    }
    host.split('.').all(|component| {
        let bytes = component.as_bytes();
        !bytes.is_empty()
            && bytes[0].is_ascii_alphanumeric()
            && bytes[bytes.len() - 1].is_ascii_alphanumeric()
            && bytes
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

/// Path components `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*` joined by `/`.
fn is_valid_path(path: &str) -> bool {
    path.split('/').all(is_valid_path_component)
}

fn is_valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__", or one or more "-".
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let ok = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(s: &str) -> String {
        match Reference::parse(s) {
            Ok(r) => r.to_string(),
            Err(e) => panic!("{s}: {e}"),
        }
    }

    fn error(s: &str) -> String {
        match Reference::parse(s) {
            Ok(r) => panic!("{s} parsed as {r}"),
            Err(e) => {
                assert_eq!(e.kind(), crate::ErrorKind::InvalidReference);
                e.to_string()
            }
        }
    }

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalises_like_docker() {
        assert_eq!(parsed("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(parsed("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(parsed("foo/bar"), "docker.io/foo/bar:latest");
        assert_eq!(
            parsed("index.docker.io/foo"),
            "docker.io/library/foo:latest"
        );
        assert_eq!(
            parsed("docker.io/library/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(parsed("localhost:5000/x"), "localhost:5000/x:latest");
        assert_eq!(parsed("localhost/x:1"), "localhost/x:1");
        assert_eq!(parsed("127.0.0.1:5000/a/b/c:v1"), "127.0.0.1:5000/a/b/c:v1");
        assert_eq!(
            parsed("registry.k8s.io/pause:3.10"),
            "registry.k8s.io/pause:3.10"
        );
        assert_eq!(parsed("[::1]:5000/x"), "[::1]:5000/x:latest");
        assert_eq!(parsed("localhost:5000"), "docker.io/library/localhost:5000");
        assert_eq!(
            parsed("a_b.c-d__e---f"),
            "docker.io/library/a_b.c-d__e---f:latest"
        );
    }

    #[test]
    fn keeps_digest_without_default_tag() {
        let r = Reference::parse(&format!("busybox@{D}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_deref(), Some(D));
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@{D}"));
        let r = Reference::parse(&format!("localhost:5000/x:v1@{D}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.tagged_name().as_deref(), Some("localhost:5000/x:v1"));
    }

    #[test]
    fn rejects_what_upstream_rejects() {
        assert_eq!(error(""), "invalid reference format");
        assert_eq!(
            error("Busybox"),
            "invalid reference format: repository name (library/Busybox) must be lowercase"
        );
        assert_eq!(error("busybox:"), "invalid reference format");
        assert_eq!(error("busybox:-x"), "invalid reference format");
        assert_eq!(error("busy box"), "invalid reference format");
        assert_eq!(error("foo//bar"), "invalid reference format");
        assert_eq!(error("foo/bar-"), "invalid reference format");
        assert_eq!(error("foo/.bar"), "invalid reference format");
        assert_eq!(error("foo/a..b"), "invalid reference format");
        assert_eq!(error("busybox@sha256:abc"), "invalid reference format");
        assert_eq!(
            error(&format!("busybox@{}", &D[..D.len() - 2])),
            "invalid reference format: invalid checksum digest length"
        );
        assert!(error(&"a".repeat(64)).contains("cannot specify 64-byte hexadecimal strings"));
        assert!(error(&format!("x/{}", "a".repeat(260))).contains("must not be more than 255"));
        assert_eq!(error("host:port/x"), "invalid reference format");
        assert_eq!(error("-host.io/x"), "invalid reference format");
    }
}
