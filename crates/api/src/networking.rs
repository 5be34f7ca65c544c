//! `networking.k8s.io/v1` ServiceCIDR and IPAddress as pure functions (upstream's
//! `pkg/apis/networking/validation` and the registries' strategies), and the address
//! arithmetic of a service range (`Cidr`: parsing, first/last usable address, the
//! KEP-3070 static sub-range offset of `calculateRangeOffset`).
//!
//! Owns: what these objects may hold and how a range is laid out. Does not own: which
//! addresses are taken (the API server's allocator, which stores one IPAddress per
//! allocated ClusterIP).

use std::net::IpAddr;

use k8s_openapi::api::networking::v1::{IPAddress, ServiceCIDR};

use crate::field::{FieldError, FieldErrors, Path};
use crate::meta::{
    is_valid_path_segment_name, validate_object_meta, validate_object_meta_update, NameRule,
};
use crate::validation::{invalid_each, is_dns1123_subdomain, validate_immutable};

/// The label naming an IPAddress's family, and the one naming who manages it.
pub const LABEL_IP_FAMILY: &str = "ipaddress.kubernetes.io/ip-family";
pub const LABEL_MANAGED_BY: &str = "ipaddress.kubernetes.io/managed-by";
/// The API server's ClusterIP allocator, as upstream names it.
pub const IP_ALLOCATOR: &str = "ipallocator.k8s.io";
/// The default ServiceCIDR's name and its finalizer.
pub const DEFAULT_SERVICE_CIDR: &str = "kubernetes";
pub const SERVICE_CIDR_FINALIZER: &str = "networking.k8s.io/service-cidr-finalizer";

/// An IP prefix, e.g. `10.43.0.0/16`, held as a masked base address and a length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    base: u128,
    bits: u8,
    v6: bool,
}

impl Cidr {
    /// Parses `a.b.c.d/n` (or an IPv6 prefix); the address is masked to the prefix.
    pub fn parse(s: &str) -> Option<Cidr> {
        let (ip, bits) = s.split_once('/')?;
        let addr: IpAddr = ip.parse().ok()?;
        let bits: u8 = bits.parse().ok()?;
        let (raw, v6, width) = match addr {
            IpAddr::V4(a) => (u128::from(u32::from(a)), false, 32),
            IpAddr::V6(a) => (u128::from(a), true, 128),
        };
        if bits > width {
            return None;
        }
        let host = u32::from(width - bits);
        let base = if host >= 128 {
            0
        } else {
            (raw >> host) << host
        };
        Some(Cidr { base, bits, v6 })
    }

    /// An IPv4 prefix from its octets (masked), for constants.
    pub fn v4(octets: [u8; 4], bits: u8) -> Cidr {
        let bits = bits.min(32);
        let raw = u128::from(u32::from_be_bytes(octets));
        let host = u32::from(32 - bits);
        Cidr {
            base: (raw >> host) << host,
            bits,
            v6: false,
        }
    }

    pub fn is_ipv6(&self) -> bool {
        self.v6
    }

    pub fn family(&self) -> &'static str {
        if self.v6 {
            crate::service::IPV6
        } else {
            crate::service::IPV4
        }
    }

    fn width(&self) -> u8 {
        if self.v6 {
            128
        } else {
            32
        }
    }

    fn host_bits(&self) -> u32 {
        u32::from(self.width() - self.bits)
    }

    /// Every address in the prefix, network and broadcast included (saturating).
    pub fn size(&self) -> u128 {
        let h = self.host_bits();
        if h >= 128 {
            u128::MAX
        } else {
            1u128 << h
        }
    }

    fn addr_at(&self, raw: u128) -> IpAddr {
        if self.v6 {
            IpAddr::V6(raw.into())
        } else {
            IpAddr::V4((raw as u32).into())
        }
    }

    fn raw(&self, ip: IpAddr) -> Option<u128> {
        match (ip, self.v6) {
            (IpAddr::V4(a), false) => Some(u128::from(u32::from(a))),
            (IpAddr::V6(a), true) => Some(u128::from(a)),
            _ => None,
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.raw(ip)
            .is_some_and(|r| r >= self.base && r - self.base < self.size())
    }

    /// The first address that can be allocated (the network address is not).
    pub fn first(&self) -> IpAddr {
        self.addr_at(self.base + 1)
    }

    /// The address `n` after the network address (`nth(1)` is the first usable one, `nth(10)`
    /// the kube-dns address of a /16).
    pub fn nth(&self, n: u128) -> Option<IpAddr> {
        (n < self.size()).then(|| self.addr_at(self.base + n))
    }

    /// Offset of `ip` from the network address.
    pub fn offset(&self, ip: IpAddr) -> Option<u128> {
        self.raw(ip)
            .filter(|_| self.contains(ip))
            .map(|r| r - self.base)
    }

    /// The last offset that can be allocated: IPv4 skips the broadcast address, IPv6 does
    /// not.
    pub fn last_offset(&self) -> u128 {
        let last = self.size().saturating_sub(1);
        if self.v6 {
            last
        } else {
            last.saturating_sub(1)
        }
    }

    /// Whether `ip` may be allocated from this range (inside it, neither the network nor,
    /// for IPv4, the broadcast address).
    pub fn allocatable(&self, ip: IpAddr) -> bool {
        self.offset(ip)
            .is_some_and(|o| o >= 1 && o <= self.last_offset())
    }

    /// `calculateRangeOffset`: the lower part of the range kept for static allocation,
    /// `min(max(16, size/16), 256)`, none for ranges of 16 addresses or fewer.
    pub fn range_offset(&self) -> u128 {
        let size = self.size();
        if size <= 16 {
            return 0;
        }
        (size / 16).clamp(16, 256)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr_at(self.base), self.bits)
    }
}

/// `IsValidCIDR`'s message for a string that is not a CIDR.
fn cidr_errors(path: &Path, s: &str) -> FieldErrors {
    if Cidr::parse(s).is_some() {
        Vec::new()
    } else {
        vec![FieldError::invalid(
            path,
            s,
            "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
        )]
    }
}

/// `ValidateServiceCIDR`: one or two CIDRs, one per family.
pub fn validate_service_cidr(sc: &ServiceCIDR) -> FieldErrors {
    let mut errs = validate_object_meta(&sc.metadata, false, NameRule::Dns1123Subdomain);
    let path = Path::new("spec").child("cidrs");
    let cidrs = sc
        .spec
        .as_ref()
        .and_then(|s| s.cidrs.clone())
        .unwrap_or_default();
    if cidrs.is_empty() {
        errs.push(FieldError::required(&path, "at least one CIDR required"));
        return errs;
    }
    let spec_value = || serde_json::to_value(&sc.spec).unwrap_or_default();
    if cidrs.len() > 2 {
        errs.push(FieldError::invalid(
            &path,
            spec_value(),
            "may only hold up to 2 values",
        ));
        return errs;
    }
    for (i, c) in cidrs.iter().enumerate() {
        errs.extend(cidr_errors(&path.index(i), c));
    }
    if cidrs.len() == 2 {
        let fams: Vec<Option<bool>> = cidrs
            .iter()
            .map(|c| Cidr::parse(c).map(|c| c.is_ipv6()))
            .collect();
        if fams[0].is_none() || fams[0] == fams[1] {
            errs.push(FieldError::invalid(
                &path,
                spec_value(),
                "may specify no more than one IP for each IP family, i.e 192.168.0.0/24 and 2001:db8::/64",
            ));
        }
    }
    errs
}

/// `ValidateServiceCIDRUpdate`: the CIDRs may only grow from one to two (dual-stack),
/// keeping the first.
pub fn validate_service_cidr_update(new: &ServiceCIDR, old: &ServiceCIDR) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(
        validate_service_cidr(new)
            .into_iter()
            .filter(|e| !e.field.starts_with("metadata.")),
    );
    let cidrs = |s: &ServiceCIDR| {
        s.spec
            .as_ref()
            .and_then(|s| s.cidrs.clone())
            .unwrap_or_default()
    };
    let (n, o) = (cidrs(new), cidrs(old));
    let path = Path::new("spec").child("cidrs");
    if o.len() == 1 && n.len() == 2 {
        errs.extend(validate_immutable(&n[0], &o[0], &path.index(0)));
    } else {
        errs.extend(validate_immutable(&n, &o, &path));
    }
    errs
}

/// The status strategy: everything but status from the old object.
pub fn service_cidr_status_only(new: &mut ServiceCIDR, old: &ServiceCIDR) {
    new.spec = old.spec.clone();
    new.metadata = old.metadata.clone();
}

/// The main resource keeps the status.
pub fn prepare_service_cidr_for_update(new: &mut ServiceCIDR, old: &ServiceCIDR) {
    new.status = old.status.clone();
}

/// Status starts empty.
pub fn prepare_service_cidr_for_create(sc: &mut ServiceCIDR) {
    sc.status = None;
}

/// `ValidateIPAddressName`: the name is an IP address in canonical form.
pub fn ip_address_name_errors(name: &str) -> Vec<String> {
    match name.parse::<IpAddr>() {
        Err(_) => vec![format!("ParseAddr({name:?}): unable to parse IP")],
        Ok(ip) if ip.to_string() != name => {
            vec!["must be a canonical format IP address".to_string()]
        }
        Ok(_) => Vec::new(),
    }
}

/// `ValidateIPAddress`: a canonical IP as name and a parent reference.
pub fn validate_ip_address(ip: &IPAddress) -> FieldErrors {
    let mut errs = validate_object_meta(&ip.metadata, false, NameRule::PathSegment);
    if let Some(name) = ip.metadata.name.as_deref().filter(|n| !n.is_empty()) {
        errs.extend(invalid_each(
            &Path::new("metadata").child("name"),
            name,
            ip_address_name_errors(name),
        ));
    }
    let path = Path::new("spec").child("parentRef");
    let parent = &ip.spec.parent_ref;
    let group = parent.group.as_deref().unwrap_or("");
    if !group.is_empty() {
        errs.extend(invalid_each(
            &path.child("group"),
            group,
            is_dns1123_subdomain(group),
        ));
    }
    for (field, value, required) in [
        ("resource", parent.resource.as_str(), true),
        ("name", parent.name.as_str(), true),
        (
            "namespace",
            parent.namespace.as_deref().unwrap_or(""),
            false,
        ),
    ] {
        if value.is_empty() {
            if required {
                errs.push(FieldError::required(path.child(field), ""));
            }
        } else {
            errs.extend(invalid_each(
                &path.child(field),
                value,
                is_valid_path_segment_name(value, false),
            ));
        }
    }
    errs
}

/// `ValidateIPAddressUpdate`: the parent reference is immutable.
pub fn validate_ip_address_update(new: &IPAddress, old: &IPAddress) -> FieldErrors {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(
        validate_ip_address(new)
            .into_iter()
            .filter(|e| !e.field.starts_with("metadata.")),
    );
    let parent = |ip: &IPAddress| ip.spec.parent_ref.clone();
    errs.extend(validate_immutable(
        &parent(new),
        &parent(old),
        &Path::new("spec").child("parentRef"),
    ));
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_layout_is_upstreams() {
        let c = Cidr::parse("10.43.0.0/16").unwrap_or_else(|| panic!("parse"));
        assert_eq!(c.to_string(), "10.43.0.0/16");
        assert_eq!(c.first().to_string(), "10.43.0.1");
        assert_eq!(
            c.nth(10).map(|i| i.to_string()).as_deref(),
            Some("10.43.0.10")
        );
        assert_eq!(c.range_offset(), 256);
        assert_eq!(c.last_offset(), 65534);
        assert!(c.allocatable("10.43.255.254".parse().unwrap_or(c.first())));
        assert!(!c.allocatable("10.43.255.255".parse().unwrap_or(c.first())));
        assert!(!c.allocatable("10.43.0.0".parse().unwrap_or(c.first())));
        assert!(!c.contains("10.1.1.1".parse().unwrap_or(c.first())));
        let small = Cidr::parse("10.0.0.0/28").unwrap_or(c);
        assert_eq!(small.range_offset(), 0);
        let mid = Cidr::parse("10.0.0.0/24").unwrap_or(c);
        assert_eq!(mid.range_offset(), 16);
        let masked = Cidr::parse("10.43.7.9/16").unwrap_or(c);
        assert_eq!(masked.to_string(), "10.43.0.0/16");
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        let v6 = Cidr::parse("fd00::/112").unwrap_or(c);
        assert_eq!(v6.family(), "IPv6");
        assert_eq!(v6.last_offset(), 65535);
    }

    #[test]
    fn ip_address_names_are_canonical_ips() {
        assert!(ip_address_name_errors("10.43.0.1").is_empty());
        assert_eq!(
            ip_address_name_errors("2001:db8:0::1"),
            vec!["must be a canonical format IP address"]
        );
        assert_eq!(ip_address_name_errors("x").len(), 1);
    }
}
