//! Names of the per-service chains and sets, as upstream's nftables proxier forms them:
//! a prefix (`service-`, `local-`, `external-`, `endpoint-`, `affinity-`), eight base32
//! characters of the SHA-256 of the rest, then the readable rest
//! (`ns/svc/proto/port` or `ns/svc/proto/port__ip/port`). The hash keeps names distinct if
//! they are ever cut, and stable across restarts (the same inputs give the same names).

use sha2::{Digest, Sha256};

/// nftables' limit on a chain or set name (NFT_NAME_MAXLEN, less the NUL).
const NAME_MAX: usize = 255;
/// The longest prefix we use, hyphen included (upstream keeps room for 16).
const PREFIX_MAX: usize = 16;

/// `HASH-name`, cut (with `...`) to what leaves room for a prefix.
fn hash_and_truncate(name: &str) -> String {
    let digest = Sha256::digest(name.as_bytes());
    let encoded = data_encoding::BASE32.encode(&digest);
    let mut out = format!("{}-{}", &encoded[..8], name);
    let max = NAME_MAX - PREFIX_MAX;
    if out.len() > max {
        // Every character is ASCII (names, protocol, digits, punctuation).
        out.truncate(max - 3);
        out.push_str("...");
    }
    out
}

/// `HASH-ns/svc/proto/port` for a service port (the port's name, empty when unnamed).
pub fn service_port_base(namespace: &str, service: &str, protocol: &str, port: &str) -> String {
    hash_and_truncate(&format!("{namespace}/{service}/{protocol}/{port}"))
}

/// `HASH-ns/svc/proto/port__ip/port` for one endpoint of a service port.
pub fn endpoint_base(
    namespace: &str,
    service: &str,
    protocol: &str,
    port: &str,
    endpoint_ip: &str,
    endpoint_port: u16,
) -> String {
    let ip = endpoint_ip.replace(':', ".");
    hash_and_truncate(&format!(
        "{namespace}/{service}/{protocol}/{port}__{ip}/{endpoint_port}"
    ))
}

/// True for names this module makes (the fixed chains have no `/`).
pub fn is_service_chain(name: &str) -> bool {
    name.contains('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_upstream() {
        // Names from upstream's nftables proxier tests.
        let cases = [
            (
                service_port_base("ns1", "svc1", "tcp", "p80"),
                "ULMVA6XW-ns1/svc1/tcp/p80",
            ),
            (
                endpoint_base("ns1", "svc1", "tcp", "p80", "10.180.0.1", 80),
                "5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn long_names_are_cut_with_an_ellipsis() {
        let long = "a".repeat(63);
        let name = endpoint_base(&long, &long, "sctp", &long, "10.0.0.1", 65535);
        assert!(name.len() <= NAME_MAX - PREFIX_MAX, "{}", name.len());
        let short = service_port_base(&long, &long, "sctp", &long);
        assert!(!short.ends_with("..."));
    }
}
