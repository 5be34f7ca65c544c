//! The ClusterIP allocator, upstream 1.33+'s (`ipallocator.Allocator` behind the
//! MultiCIDRServiceAllocator): an address is taken by creating the IPAddress object named
//! after it (`networking.k8s.io/v1`, parent reference to the Service, upstream's family and
//! managed-by labels). The store refuses a second create of one key, so two API servers can
//! never give one address to two Services; a watch-fed mirror of the IPAddresses only picks
//! likely-free candidates. Releasing an address deletes its object.
//!
//! Dynamic addresses come from the upper part of the range first, from a random place
//! onwards, then from the lower part (KEP-3070: the lower part is kept for static
//! requests such as the `kubernetes` and `kube-dns` addresses).

use std::net::IpAddr;
use std::sync::Arc;

use api::networking::{Cidr, IP_ALLOCATOR, LABEL_IP_FAMILY, LABEL_MANAGED_BY};
use bytes::Bytes;
use k8s_openapi::api::networking::v1::{IPAddress, IPAddressSpec, ParentReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use store::Store;

use crate::kinds;
use crate::mirror::Mirror;

/// Why an address could not be had (upstream's `ipallocator` errors and messages).
#[derive(Debug, thiserror::Error)]
pub enum IpError {
    #[error("the provided IP ({ip}) is not in the valid range. The range of valid IPs is {range}")]
    NotInRange { ip: IpAddr, range: Cidr },
    #[error("the provided network does not match the current range")]
    MismatchedNetwork,
    #[error("provided IP is already allocated")]
    Allocated,
    #[error("range is full")]
    Full,
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// The Service an address is for.
#[derive(Debug, Clone)]
pub struct Owner {
    pub namespace: String,
    pub name: String,
}

pub struct IpAllocator {
    pub cidr: Cidr,
    /// The IPAddresses, mirrored from the store.
    pub mirror: Arc<Mirror>,
}

impl IpAllocator {
    pub fn new(cidr: Cidr) -> IpAllocator {
        IpAllocator {
            cidr,
            mirror: Arc::default(),
        }
    }

    /// Takes `ip` for `owner` (with `dry_run`: only checks that it is in the range).
    pub async fn allocate(
        &self,
        store: &Arc<dyn Store>,
        ip: IpAddr,
        owner: &Owner,
        dry_run: bool,
    ) -> Result<(), IpError> {
        if !self.cidr.contains(ip) {
            return Err(IpError::MismatchedNetwork);
        }
        if !self.cidr.allocatable(ip) {
            return Err(IpError::NotInRange {
                ip,
                range: self.cidr,
            });
        }
        if dry_run {
            return Ok(());
        }
        create(store, ip, self.cidr.family(), owner).await
    }

    /// Takes a free address for `owner`. A dry run answers the network address without
    /// looking, as upstream does.
    pub async fn allocate_next(
        &self,
        store: &Arc<dyn Store>,
        owner: &Owner,
        dry_run: bool,
    ) -> Result<IpAddr, IpError> {
        if dry_run {
            return self.cidr.nth(0).ok_or(IpError::Full);
        }
        for offset in candidates(&self.cidr, rand::random(), rand::random()) {
            let Some(ip) = self.cidr.nth(offset) else {
                continue;
            };
            let key = kinds::ipaddress::RESOURCE.key(None, &ip.to_string());
            if self.mirror.get(&key).is_some() {
                continue;
            }
            match create(store, ip, self.cidr.family(), owner).await {
                Ok(()) => return Ok(ip),
                // The mirror lagged: someone has it; try the next one.
                Err(IpError::Allocated) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(IpError::Full)
    }
}

/// Creates the IPAddress object for `ip`: the allocation itself.
pub async fn create(
    store: &Arc<dyn Store>,
    ip: IpAddr,
    family: &str,
    owner: &Owner,
) -> Result<(), IpError> {
    let name = ip.to_string();
    let obj = IPAddress {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            uid: Some(uuid::Uuid::new_v4().to_string()),
            creation_timestamp: Some(Time(jiff::Timestamp::now())),
            labels: Some(
                [
                    (LABEL_IP_FAMILY.to_string(), family.to_string()),
                    (LABEL_MANAGED_BY.to_string(), IP_ALLOCATOR.to_string()),
                ]
                .into_iter()
                .collect(),
            ),
            ..Default::default()
        },
        spec: IPAddressSpec {
            parent_ref: ParentReference {
                group: None,
                resource: "services".into(),
                namespace: Some(owner.namespace.clone()),
                name: owner.name.clone(),
            },
        },
    };
    let mut value = serde_json::to_value(&obj).unwrap_or_default();
    value["apiVersion"] = "networking.k8s.io/v1".into();
    value["kind"] = "IPAddress".into();
    let bytes = kinds::ipaddress::RESOURCE
        .strategy
        .encode(&value)
        .map_err(store::Error::Backend)?;
    let key = kinds::ipaddress::RESOURCE.key(None, &name);
    match store.create(&key, Bytes::from(bytes)).await {
        Ok(_) => Ok(()),
        Err(store::Error::AlreadyExists { .. }) => Err(IpError::Allocated),
        Err(e) => Err(e.into()),
    }
}

/// Gives `ip` back: deletes its IPAddress if it still names `owner` (an address another
/// Service took since is left alone).
pub async fn release(store: &Arc<dyn Store>, ip: &str, owner: &Owner) -> Result<(), store::Error> {
    let key = kinds::ipaddress::RESOURCE.key(None, ip);
    let Some(kv) = store.get(&key).await? else {
        return Ok(());
    };
    let v: serde_json::Value = serde_json::from_slice(&kv.value).unwrap_or_default();
    let parent = &v["spec"]["parentRef"];
    if parent["resource"] != "services"
        || parent["name"] != owner.name.as_str()
        || parent["namespace"] != owner.namespace.as_str()
    {
        return Ok(());
    }
    match store.delete(&key, Some(kv.mod_revision)).await {
        Ok(_) | Err(store::Error::NotFound { .. } | store::Error::Conflict { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The order dynamic allocation tries offsets in (upstream's `allocateNextService`): the
/// upper part of the range `[1 + rangeOffset, last]` from a random place onwards, wrapping,
/// then the lower part `[1, rangeOffset]` likewise.
pub fn candidates(cidr: &Cidr, r1: u64, r2: u64) -> impl Iterator<Item = u128> {
    let last = cidr.last_offset();
    let reserved = cidr.range_offset();
    let upper_first = 1 + reserved;
    let upper = if last >= upper_first {
        rotated(upper_first, last, r1)
    } else {
        Box::new(std::iter::empty()) as Box<dyn Iterator<Item = u128> + Send>
    };
    let lower = if reserved > 0 {
        rotated(1, reserved.min(last), r2)
    } else {
        Box::new(std::iter::empty())
    };
    upper.chain(lower)
}

/// `first..=last`, starting at a random position and wrapping around.
fn rotated(first: u128, last: u128, random: u64) -> Box<dyn Iterator<Item = u128> + Send> {
    let n = last - first + 1;
    let start = u128::from(random) % n;
    Box::new((0..n).map(move |i| first + (start + i) % n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_addresses_come_from_the_upper_range_first() {
        let cidr = Cidr::parse("10.0.0.0/24").unwrap_or_else(|| panic!("cidr"));
        // 254 usable addresses; offset 16 keeps .1-.16 for static requests.
        let order: Vec<u128> = candidates(&cidr, 0, 0).collect();
        assert_eq!(order.len(), 254);
        assert_eq!(order[0], 17);
        assert_eq!(order[237], 254);
        assert_eq!(order[238], 1);
        assert_eq!(*order.last().unwrap_or(&0), 16);
        let from_middle: Vec<u128> = candidates(&cidr, 10, 3).take(1).collect();
        assert_eq!(from_middle, vec![27]);
        let tiny = Cidr::parse("10.0.0.0/29").unwrap_or(cidr);
        assert_eq!(
            candidates(&tiny, 0, 0).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5, 6]
        );
    }
}
