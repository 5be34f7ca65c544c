//! The node-port allocator (upstream's `portallocator` over an etcd-backed bitmap): one
//! record, `/registry/ranges/servicenodeports`, holds which ports of
//! `--service-node-port-range` are taken. An allocation reads the record, decides on a copy
//! (a [`PortOp`]) and writes it back by compare-and-swap, so two API servers sharing a
//! store never hand out one port twice; a lost race decides again on the fresh record.

use std::collections::BTreeSet;
use std::sync::Arc;

use api::service::{AllocError, PortError, PortOperation};
use base64::Engine as _;
use bytes::Bytes;
use k8s_openapi::api::core::v1::Service;
use serde_json::json;
use store::{Revision, Store};

use crate::object;

/// Where the record lives (upstream's key).
pub const RECORD_KEY: &str = "/registry/ranges/servicenodeports";

/// A contiguous port range, `30000-32767`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub base: i32,
    pub size: i32,
}

impl PortRange {
    /// Parses `low-high` (or a single port, a range of one), as `net.ParsePortRange`.
    pub fn parse(s: &str) -> Option<PortRange> {
        let (lo, hi) = match s.split_once('-') {
            Some((lo, hi)) => (
                lo.trim().parse::<i32>().ok()?,
                hi.trim().parse::<i32>().ok()?,
            ),
            None => {
                let p = s.trim().parse::<i32>().ok()?;
                (p, p)
            }
        };
        (0..=65535).contains(&lo).then_some(())?;
        (lo..=65535).contains(&hi).then_some(())?;
        Some(PortRange {
            base: lo,
            size: hi - lo + 1,
        })
    }

    pub fn contains(&self, p: i32) -> bool {
        p >= self.base && p < self.base + self.size
    }
}

impl Default for PortRange {
    fn default() -> Self {
        PortRange {
            base: 30000,
            size: 2768,
        }
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.base, self.base + self.size - 1)
    }
}

/// One allocation decided against a snapshot of the record.
pub struct PortOp {
    range: PortRange,
    taken: BTreeSet<i32>,
    pub allocated: Vec<i32>,
    pub released: Vec<i32>,
    start: u64,
}

impl PortOp {
    pub fn new(range: PortRange, taken: BTreeSet<i32>, random: u64) -> PortOp {
        PortOp {
            range,
            taken,
            allocated: Vec::new(),
            released: Vec::new(),
            start: random,
        }
    }
}

impl PortOperation for PortOp {
    fn allocate(&mut self, port: i32) -> Result<(), PortError> {
        if !self.range.contains(port) {
            return Err(PortError::NotInRange(self.range.to_string()));
        }
        if !self.taken.insert(port) {
            return Err(PortError::Allocated);
        }
        self.allocated.push(port);
        Ok(())
    }

    /// A free port from a random place in the range onwards (wrapping), as upstream's
    /// random scan strategy.
    fn allocate_next(&mut self) -> Result<i32, PortError> {
        let size = self.range.size.max(0) as u64;
        if size == 0 {
            return Err(PortError::Full);
        }
        let first = self.start % size;
        for i in 0..size {
            let p = self.range.base + ((first + i) % size) as i32;
            if !self.taken.contains(&p) {
                self.taken.insert(p);
                self.allocated.push(p);
                return Ok(p);
            }
        }
        Err(PortError::Full)
    }

    fn release_deferred(&mut self, port: i32) {
        self.released.push(port);
    }
}

/// The record as read: the ports taken and the revision to compare against (`None`: no
/// record yet).
pub struct Snapshot {
    pub revision: Option<Revision>,
    pub taken: BTreeSet<i32>,
}

/// Reads the record; ports outside `range` (a changed flag) are ignored.
pub async fn read(store: &Arc<dyn Store>, range: PortRange) -> Result<Snapshot, store::Error> {
    let Some(kv) = store.get(RECORD_KEY).await? else {
        return Ok(Snapshot {
            revision: None,
            taken: BTreeSet::new(),
        });
    };
    let v: serde_json::Value = serde_json::from_slice(&kv.value).unwrap_or_default();
    let recorded = v["range"]
        .as_str()
        .and_then(PortRange::parse)
        .unwrap_or(range);
    let data = v["data"]
        .as_str()
        .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
        .unwrap_or_default();
    let mut taken = BTreeSet::new();
    for (i, byte) in data.iter().enumerate() {
        for bit in 0..8 {
            if byte & (1 << bit) != 0 {
                let p = recorded.base + (i * 8 + bit) as i32;
                if range.contains(p) {
                    taken.insert(p);
                }
            }
        }
    }
    Ok(Snapshot {
        revision: Some(kv.mod_revision),
        taken,
    })
}

/// Writes `taken` if the record is still at `revision`; `false` when another write came
/// first.
pub async fn write(
    store: &Arc<dyn Store>,
    range: PortRange,
    revision: Option<Revision>,
    taken: &BTreeSet<i32>,
) -> Result<bool, store::Error> {
    let mut bits = vec![0u8; (range.size.max(0) as usize).div_ceil(8)];
    for p in taken.iter().filter(|p| range.contains(**p)) {
        let i = (p - range.base) as usize;
        bits[i / 8] |= 1 << (i % 8);
    }
    let record = json!({
        "apiVersion": "v1",
        "kind": "RangeAllocation",
        "metadata": {"creationTimestamp": object::now_rfc3339()},
        "range": range.to_string(),
        "data": base64::engine::general_purpose::STANDARD.encode(&bits),
    });
    let bytes = Bytes::from(serde_json::to_vec(&record).unwrap_or_default());
    let res = match revision {
        None => store.create(RECORD_KEY, bytes).await.map(|_| ()),
        Some(rev) => store.update(RECORD_KEY, bytes, Some(rev)).await.map(|_| ()),
    };
    match res {
        Ok(()) => Ok(true),
        Err(store::Error::Conflict { .. } | store::Error::AlreadyExists { .. }) => Ok(false),
        Err(store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Why an allocation failed.
#[derive(Debug)]
pub enum Failure {
    Alloc(AllocError),
    Store(store::Error),
}

/// Runs `decide` on a copy of `svc` against the current record and commits the ports it
/// took; a lost compare-and-swap decides again. With `dry_run` nothing is written. Returns
/// the operation (its `allocated` and deferred `released` ports).
pub async fn allocate<F>(
    store: &Arc<dyn Store>,
    range: PortRange,
    svc: &mut Service,
    dry_run: bool,
    decide: F,
) -> Result<PortOp, Failure>
where
    F: Fn(&mut Service, &mut PortOp) -> Result<(), AllocError>,
{
    loop {
        let snap = read(store, range).await.map_err(Failure::Store)?;
        let mut op = PortOp::new(range, snap.taken.clone(), rand::random());
        let mut candidate = svc.clone();
        decide(&mut candidate, &mut op).map_err(Failure::Alloc)?;
        if dry_run || op.allocated.is_empty() {
            *svc = candidate;
            return Ok(op);
        }
        let mut taken = snap.taken;
        taken.extend(op.allocated.iter().copied());
        if write(store, range, snap.revision, &taken)
            .await
            .map_err(Failure::Store)?
        {
            *svc = candidate;
            return Ok(op);
        }
    }
}

/// Gives `ports` back (compare-and-swap, retried until it lands).
pub async fn release(
    store: &Arc<dyn Store>,
    range: PortRange,
    ports: &[i32],
) -> Result<(), store::Error> {
    if ports.is_empty() {
        return Ok(());
    }
    loop {
        let snap = read(store, range).await?;
        if ports.iter().all(|p| !snap.taken.contains(p)) {
            return Ok(());
        }
        let mut taken = snap.taken;
        for p in ports {
            taken.remove(p);
        }
        if write(store, range, snap.revision, &taken).await? {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_as_upstream() {
        assert_eq!(PortRange::parse("30000-32767"), Some(PortRange::default()));
        assert_eq!(PortRange::default().to_string(), "30000-32767");
        assert_eq!(
            PortRange::parse("80"),
            Some(PortRange { base: 80, size: 1 })
        );
        assert_eq!(PortRange::parse("10-5"), None);
        assert_eq!(PortRange::parse("x"), None);
    }

    #[test]
    fn an_operation_never_hands_out_a_taken_port() {
        let range = PortRange { base: 100, size: 3 };
        let mut op = PortOp::new(range, [101].into_iter().collect(), 1);
        assert_eq!(op.allocate_next(), Ok(102));
        assert_eq!(op.allocate_next(), Ok(100));
        assert_eq!(op.allocate_next(), Err(PortError::Full));
        assert_eq!(op.allocate(101), Err(PortError::Allocated));
        assert_eq!(
            op.allocate(99),
            Err(PortError::NotInRange("100-102".into()))
        );
        assert_eq!(op.allocated, vec![102, 100]);
    }
}
