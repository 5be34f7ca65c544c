//! The range allocator's bookkeeping, pure: the cluster CIDR cut into node-sized subnets
//! (upstream's `ipam/cidrset`), and which node holds which (upstream keeps only the bits; the
//! owners let a second node claiming a taken subnet be told apart from the holder seeing its
//! own again).

use std::collections::BTreeMap;
use std::fmt;

/// Upstream's limit on `node mask - cluster mask` (`clusterSubnetMaxDiff`): at most 65536
/// subnets.
pub const MAX_SUBNET_BITS: u8 = 16;

/// Why a CIDR or a range could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("invalid CIDR address: {0}")]
    Invalid(String),
    #[error("{0}: only IPv4 cluster CIDRs are supported")]
    NotIpv4(String),
    /// upstream's `ErrCIDRSetSubNetTooBig`.
    #[error("New CIDR set failed; the node CIDR size is too big")]
    SubnetTooBig,
    #[error("the node CIDR mask size /{node} is shorter than the cluster CIDR's /{cluster}")]
    SubnetLargerThanCluster { node: u8, cluster: u8 },
    /// upstream's `ErrCIDRRangeNoCIDRsRemaining`.
    #[error("CIDR allocation failed; there are no remaining CIDRs left to allocate in the accepted range")]
    Exhausted,
    #[error("cidr {cidr} is out the range of cluster cidr {cluster}")]
    OutOfRange { cidr: Ipv4Net, cluster: Ipv4Net },
}

/// An IPv4 network, its address masked to the prefix (as Go's `ParseCIDR` returns it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Net {
    addr: u32,
    prefix: u8,
}

fn mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

impl Ipv4Net {
    pub fn new(addr: std::net::Ipv4Addr, prefix: u8) -> Result<Ipv4Net, CidrError> {
        if prefix > 32 {
            return Err(CidrError::Invalid(format!("{addr}/{prefix}")));
        }
        Ok(Ipv4Net {
            addr: u32::from(addr) & mask(prefix),
            prefix,
        })
    }

    /// `ADDRESS/BITS`; an IPv6 one is [`CidrError::NotIpv4`].
    pub fn parse(s: &str) -> Result<Ipv4Net, CidrError> {
        let s = s.trim();
        let (addr, bits) = s
            .split_once('/')
            .ok_or_else(|| CidrError::Invalid(s.to_string()))?;
        let prefix: u8 = bits.parse().map_err(|_| CidrError::Invalid(s.into()))?;
        match addr.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(a)) => Ipv4Net::new(a, prefix),
            Ok(std::net::IpAddr::V6(_)) => Err(CidrError::NotIpv4(s.into())),
            Err(_) => Err(CidrError::Invalid(s.into())),
        }
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn network(&self) -> std::net::Ipv4Addr {
        self.addr.into()
    }

    fn last(&self) -> u32 {
        self.addr | !mask(self.prefix)
    }

    /// Whether the two share any address.
    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        self.addr <= other.last() && other.addr <= self.last()
    }

    /// Whether `other` lies wholly inside.
    pub fn contains(&self, other: &Ipv4Net) -> bool {
        self.prefix <= other.prefix && (other.addr & mask(self.prefix)) == self.addr
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", std::net::Ipv4Addr::from(self.addr), self.prefix)
    }
}

/// The cluster CIDR's node-sized subnets and which are taken (upstream's `CidrSet`).
#[derive(Debug, Clone)]
pub struct CidrSet {
    cluster: Ipv4Net,
    node_prefix: u8,
    used: Vec<bool>,
    /// Where the next search starts (upstream's `nextCandidate`): allocation goes round the
    /// range rather than reusing a just-released subnet at once.
    next: usize,
}

impl CidrSet {
    pub fn new(cluster: Ipv4Net, node_prefix: u8) -> Result<CidrSet, CidrError> {
        if node_prefix < cluster.prefix || node_prefix > 32 {
            return Err(CidrError::SubnetLargerThanCluster {
                node: node_prefix,
                cluster: cluster.prefix,
            });
        }
        let bits = node_prefix - cluster.prefix;
        if bits > MAX_SUBNET_BITS {
            return Err(CidrError::SubnetTooBig);
        }
        Ok(CidrSet {
            cluster,
            node_prefix,
            used: vec![false; 1usize << bits],
            next: 0,
        })
    }

    fn subnet(&self, index: usize) -> Ipv4Net {
        let step = 32 - u32::from(self.node_prefix);
        // index < 2^16 and the subnets fit in the cluster CIDR: no overflow.
        let offset = u32::try_from(index)
            .unwrap_or(0)
            .checked_shl(step)
            .unwrap_or(0);
        Ipv4Net {
            addr: self.cluster.addr + offset,
            prefix: self.node_prefix,
        }
    }

    /// The subnet indices `cidr` covers, clipped to the cluster CIDR; None when they do not
    /// overlap at all.
    fn indices(&self, cidr: &Ipv4Net) -> Option<std::ops::RangeInclusive<usize>> {
        if !self.cluster.overlaps(cidr) {
            return None;
        }
        let first = cidr.addr.max(self.cluster.addr);
        let last = cidr.last().min(self.cluster.last());
        let step = 32 - u32::from(self.node_prefix);
        let index = |a: u32| usize::try_from((a - self.cluster.addr) >> step).unwrap_or(0);
        Some(index(first)..=index(last))
    }

    /// The next free subnet (upstream's `AllocateNext`).
    pub fn allocate_next(&mut self) -> Result<Ipv4Net, CidrError> {
        let n = self.used.len();
        for i in 0..n {
            let candidate = (self.next + i) % n;
            if !self.used[candidate] {
                self.used[candidate] = true;
                self.next = (candidate + 1) % n;
                return Ok(self.subnet(candidate));
            }
        }
        Err(CidrError::Exhausted)
    }

    /// Marks every subnet `cidr` touches as taken (upstream's `Occupy`); a CIDR wholly
    /// outside the cluster CIDR is an error.
    pub fn occupy(&mut self, cidr: &Ipv4Net) -> Result<(), CidrError> {
        let range = self.indices(cidr).ok_or(CidrError::OutOfRange {
            cidr: *cidr,
            cluster: self.cluster,
        })?;
        for i in range {
            self.used[i] = true;
        }
        Ok(())
    }

    /// Marks every subnet `cidr` touches as free (upstream's `Release`).
    pub fn release(&mut self, cidr: &Ipv4Net) {
        if let Some(range) = self.indices(cidr) {
            for i in range {
                self.used[i] = false;
            }
        }
    }

    pub fn cluster(&self) -> Ipv4Net {
        self.cluster
    }
}

/// What observing a node's own podCIDR found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// Now marked as the node's (or it already was).
    Occupied,
    /// Another node holds (part of) it: upstream's `CIDRNotAvailable`.
    Clash { holder: String },
    /// Not inside the cluster CIDR: left alone (a node configured for another range).
    OutOfRange,
}

/// The range allocator's state: the subnets and the node holding each.
#[derive(Debug, Clone)]
pub struct RangeAllocator {
    set: CidrSet,
    owners: BTreeMap<String, Ipv4Net>,
}

impl RangeAllocator {
    /// `reserved` (the Service range, upstream's `filterOutServiceRange`) is never handed out.
    pub fn new(
        cluster: Ipv4Net,
        node_prefix: u8,
        reserved: Option<Ipv4Net>,
    ) -> Result<RangeAllocator, CidrError> {
        let mut set = CidrSet::new(cluster, node_prefix)?;
        if let Some(r) = reserved.filter(|r| r.overlaps(&cluster)) {
            set.occupy(&r)?;
        }
        Ok(RangeAllocator {
            set,
            owners: BTreeMap::new(),
        })
    }

    /// The subnet `node` holds here, if any.
    pub fn owned_by(&self, node: &str) -> Option<Ipv4Net> {
        self.owners.get(node).copied()
    }

    /// `node` has `cidr` in its spec: mark it taken (upstream's `occupyCIDRs`), unless another
    /// node holds it.
    pub fn observe(&mut self, node: &str, cidr: Ipv4Net) -> Observed {
        if self.owners.get(node) == Some(&cidr) {
            return Observed::Occupied;
        }
        if !self.set.cluster().overlaps(&cidr) {
            return Observed::OutOfRange;
        }
        if let Some((holder, _)) = self
            .owners
            .iter()
            .find(|(n, held)| n.as_str() != node && held.overlaps(&cidr))
        {
            return Observed::Clash {
                holder: holder.clone(),
            };
        }
        // A subnet reserved for this node that its spec does not show (a stale reservation)
        // goes back first.
        self.release(node);
        match self.set.occupy(&cidr) {
            Ok(()) => {
                self.owners.insert(node.to_string(), cidr);
                Observed::Occupied
            }
            Err(_) => Observed::OutOfRange,
        }
    }

    /// A subnet for `node`, which has none in its spec: the one already reserved for it (a
    /// retried patch), else the next free one.
    pub fn allocate(&mut self, node: &str) -> Result<Ipv4Net, CidrError> {
        if let Some(held) = self.owners.get(node) {
            return Ok(*held);
        }
        let cidr = self.set.allocate_next()?;
        self.owners.insert(node.to_string(), cidr);
        Ok(cidr)
    }

    /// `node` is gone (or its reservation failed): its subnet is free again.
    pub fn release(&mut self, node: &str) -> Option<Ipv4Net> {
        let cidr = self.owners.remove(node)?;
        self.set.release(&cidr);
        Some(cidr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        Ipv4Net::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parsing() {
        let cases = [
            ("10.42.0.0/16", Ok("10.42.0.0/16")),
            ("10.42.7.9/24", Ok("10.42.7.0/24")),
            (" 10.0.0.0/8 ", Ok("10.0.0.0/8")),
            ("10.42.0.0", Err(CidrError::Invalid("10.42.0.0".into()))),
            (
                "10.42.0.0/33",
                Err(CidrError::Invalid("10.42.0.0/33".into())),
            ),
            ("fd00::/48", Err(CidrError::NotIpv4("fd00::/48".into()))),
        ];
        for (input, want) in cases {
            let got = Ipv4Net::parse(input).map(|n| n.to_string());
            assert_eq!(got, want.map(str::to_string), "{input}");
        }
    }

    #[test]
    fn set_limits() {
        let cases = [
            ("10.42.0.0/16", 24, Ok(256)),
            ("10.42.0.0/16", 16, Ok(1)),
            ("10.0.0.0/8", 24, Ok(65536)),
            ("10.0.0.0/8", 25, Err(CidrError::SubnetTooBig)),
            (
                "10.42.0.0/16",
                8,
                Err(CidrError::SubnetLargerThanCluster {
                    node: 8,
                    cluster: 16,
                }),
            ),
        ];
        for (cluster, prefix, want) in cases {
            let got = CidrSet::new(net(cluster), prefix).map(|s| s.used.len());
            assert_eq!(got, want, "{cluster} /{prefix}");
        }
    }

    #[test]
    fn allocates_in_order_and_goes_round_before_reusing() {
        let mut set = CidrSet::new(net("10.42.0.0/22"), 24).unwrap_or_else(|e| panic!("{e}"));
        let got: Vec<String> = (0..4)
            .map(|_| set.allocate_next().map(|n| n.to_string()))
            .collect::<Result<_, _>>()
            .unwrap_or_default();
        assert_eq!(
            got,
            [
                "10.42.0.0/24",
                "10.42.1.0/24",
                "10.42.2.0/24",
                "10.42.3.0/24"
            ]
        );
        assert_eq!(set.allocate_next(), Err(CidrError::Exhausted));
        set.release(&net("10.42.1.0/24"));
        assert_eq!(set.allocate_next(), Ok(net("10.42.1.0/24")));
    }

    #[test]
    fn occupy_covers_every_subnet_touched_and_refuses_outside() {
        let mut set = CidrSet::new(net("10.42.0.0/22"), 24).unwrap_or_else(|e| panic!("{e}"));
        // A /23 takes two subnets; a /25 the subnet holding it.
        assert_eq!(set.occupy(&net("10.42.0.0/23")), Ok(()));
        assert_eq!(set.occupy(&net("10.42.3.128/25")), Ok(()));
        assert_eq!(set.allocate_next(), Ok(net("10.42.2.0/24")));
        assert_eq!(set.allocate_next(), Err(CidrError::Exhausted));
        assert_eq!(
            set.occupy(&net("10.99.0.0/24")),
            Err(CidrError::OutOfRange {
                cidr: net("10.99.0.0/24"),
                cluster: net("10.42.0.0/22"),
            })
        );
    }

    /// One step of a scenario against a /22 cut in /24s (four subnets).
    enum Step {
        Observe(&'static str, &'static str, Observed),
        Allocate(&'static str, Result<&'static str, CidrError>),
        Release(&'static str, Option<&'static str>),
    }

    #[test]
    fn scenarios() {
        use Observed::*;
        use Step::*;
        let clash = |h: &str| Clash { holder: h.into() };
        let scenarios: Vec<(&str, Vec<Step>)> = vec![
            (
                "fresh nodes get the subnets in order; a retry gets the same one",
                vec![
                    Allocate("a", Ok("10.42.0.0/24")),
                    Allocate("b", Ok("10.42.1.0/24")),
                    Allocate("a", Ok("10.42.0.0/24")),
                    Observe("a", "10.42.0.0/24", Occupied),
                ],
            ),
            (
                "explicit CIDRs seen first are skipped by allocation (restart rebuild)",
                vec![
                    Observe("x", "10.42.0.0/24", Occupied),
                    Observe("y", "10.42.2.0/24", Occupied),
                    Allocate("a", Ok("10.42.1.0/24")),
                    Allocate("b", Ok("10.42.3.0/24")),
                    Allocate("c", Err(CidrError::Exhausted)),
                ],
            ),
            (
                "a second node claiming a held subnet clashes; the holder keeps it",
                vec![
                    Observe("x", "10.42.1.0/24", Occupied),
                    Observe("y", "10.42.1.0/24", clash("x")),
                    Observe("z", "10.42.0.0/23", clash("x")),
                    Release("y", None),
                    Observe("x", "10.42.1.0/24", Occupied),
                ],
            ),
            (
                "outside the cluster CIDR: left alone",
                vec![
                    Observe("x", "192.168.0.0/24", OutOfRange),
                    Allocate("a", Ok("10.42.0.0/24")),
                ],
            ),
            (
                "deleted nodes free their subnet for later nodes",
                vec![
                    Allocate("a", Ok("10.42.0.0/24")),
                    Allocate("b", Ok("10.42.1.0/24")),
                    Allocate("c", Ok("10.42.2.0/24")),
                    Allocate("d", Ok("10.42.3.0/24")),
                    Allocate("e", Err(CidrError::Exhausted)),
                    Release("b", Some("10.42.1.0/24")),
                    Allocate("e", Ok("10.42.1.0/24")),
                    Observe("b", "10.42.1.0/24", clash("e")),
                ],
            ),
            (
                "a stale reservation gives way to what the node's spec says",
                vec![
                    Allocate("a", Ok("10.42.0.0/24")),
                    Observe("a", "10.42.2.0/24", Occupied),
                    Allocate("b", Ok("10.42.1.0/24")),
                    Allocate("c", Ok("10.42.3.0/24")),
                    Allocate("d", Ok("10.42.0.0/24")),
                ],
            ),
        ];
        for (name, steps) in scenarios {
            let mut ipam = RangeAllocator::new(net("10.42.0.0/22"), 24, None)
                .unwrap_or_else(|e| panic!("{e}"));
            for (i, step) in steps.into_iter().enumerate() {
                match step {
                    Observe(node, cidr, want) => {
                        assert_eq!(ipam.observe(node, net(cidr)), want, "{name}: step {i}")
                    }
                    Allocate(node, want) => {
                        assert_eq!(ipam.allocate(node), want.map(net), "{name}: step {i}")
                    }
                    Release(node, want) => {
                        assert_eq!(ipam.release(node), want.map(net), "{name}: step {i}")
                    }
                }
            }
        }
    }

    #[test]
    fn the_service_range_is_never_handed_out() {
        let mut ipam = RangeAllocator::new(net("10.42.0.0/22"), 24, Some(net("10.42.1.0/24")))
            .unwrap_or_else(|e| panic!("{e}"));
        let got: Vec<_> = ["a", "b", "c"].iter().map(|n| ipam.allocate(n)).collect();
        assert_eq!(
            got,
            [
                Ok(net("10.42.0.0/24")),
                Ok(net("10.42.2.0/24")),
                Ok(net("10.42.3.0/24"))
            ]
        );
        // A range that does not overlap is ignored.
        assert!(RangeAllocator::new(net("10.42.0.0/16"), 24, Some(net("10.43.0.0/16"))).is_ok());
    }
}
