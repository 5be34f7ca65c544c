//! The cluster's shared secrets, kept in the datastore so that every API server of one
//! cluster (several `peapod server` on one etcd and one `--etcd-prefix`) serves with the same
//! CA and accepts the same credentials: the cluster CA (`ca.crt`, `ca.key`), the
//! service-account signing key (`sa.key`), the bearer tokens of the admin, the controller
//! manager and the scheduler, and the join token (`crate::bootstraptoken`).
//!
//! They live under one key, [`KEY`], a JSON [`Bundle`]. At start a server:
//!
//! ```text
//!   store has the bundle? ──yes──▶ adopt it: write DIR/pki/* from it (a local CA that
//!          │                        differs is replaced, with a warning)
//!          no
//!          ▼
//!   local DIR/pki/* (what exists: an upgraded single-node data dir keeps its CA and
//!   tokens) + whatever is missing, generated ──▶ create KEY if absent
//!          │                                        │
//!          │ created: this server's bundle is the   │ AlreadyExists: another server won
//!          ▼ cluster's                              ▼ the race: adopt the stored one
//! ```
//!
//! Each server still makes its own serving certificate (`crate::tls`). Unlike k3s, which
//! encrypts its bootstrap data with the server token, the bundle is stored in the clear:
//! whoever reads the datastore has the CA key (as whoever reads etcd has every Secret).

use std::path::Path;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::tls::{read, write_private, TlsError};

/// Where the bundle lives in the store (beside the resources, under no resource's prefix).
pub const KEY: &str = "/registry/peapod.io/cluster-bootstrap";

/// What every server of the cluster shares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    pub ca_crt: String,
    pub ca_key: String,
    pub sa_key: String,
    pub admin_token: String,
    pub controller_manager_token: String,
    pub scheduler_token: String,
    /// The bootstrap token agents join with, `<id>.<secret>`.
    pub join_token: String,
}

/// Each bundle member and its file in `DIR/pki` (the join token is `join.token`: the
/// user-facing `DIR/node-token` adds the CA hash to it).
const FILES: &[&str] = &[
    "ca.crt",
    "ca.key",
    "sa.key",
    "admin.token",
    "kube-controller-manager.token",
    "kube-scheduler.token",
    "join.token",
];

impl Bundle {
    fn members(&self) -> [&String; 7] {
        [
            &self.ca_crt,
            &self.ca_key,
            &self.sa_key,
            &self.admin_token,
            &self.controller_manager_token,
            &self.scheduler_token,
            &self.join_token,
        ]
    }

    fn from_members(m: [String; 7]) -> Bundle {
        let [ca_crt, ca_key, sa_key, admin_token, controller_manager_token, scheduler_token, join_token] =
            m;
        Bundle {
            ca_crt,
            ca_key,
            sa_key,
            admin_token,
            controller_manager_token,
            scheduler_token,
            join_token,
        }
    }
}

/// What a data dir holds before the store is asked: each member if present and not empty.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Local(pub [Option<String>; 7]);

/// What to do with the store's bundle and the local files.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// The store has one: it is the cluster's.
    Adopt(Bundle),
    /// None yet: offer this one (local members, the missing ones generated).
    Publish(Bundle),
}

/// The pure choice: a stored bundle always wins; otherwise the local members, completed by
/// `generate` for each missing one (by its index in the bundle). A CA is only kept whole:
/// a certificate without its key (or the reverse) is replaced by a new pair.
pub fn decide(
    stored: Option<Bundle>,
    local: Local,
    mut generate: impl FnMut(usize) -> String,
) -> Decision {
    if let Some(b) = stored {
        return Decision::Adopt(b);
    }
    let mut m = local.0;
    if m[0].is_none() || m[1].is_none() {
        m[0] = None;
        m[1] = None;
    }
    let mut out: [String; 7] = Default::default();
    for (i, slot) in m.into_iter().enumerate() {
        out[i] = match slot {
            Some(v) => v,
            None => generate(i),
        };
    }
    Decision::Publish(Bundle::from_members(out))
}

/// Reads what `pki` holds.
pub fn read_local(pki: &Path) -> Result<Local, TlsError> {
    let mut local = Local::default();
    for (i, file) in FILES.iter().enumerate() {
        local.0[i] = read(&pki.join(file))?.filter(|s| !s.trim().is_empty());
        if i >= 3 {
            local.0[i] = local.0[i].take().map(|s| s.trim().to_string());
        }
    }
    Ok(local)
}

/// Writes every member into `pki` (mode 0600), leaving files that already hold it alone.
pub fn write_local(pki: &Path, bundle: &Bundle) -> Result<(), TlsError> {
    for (file, value) in FILES.iter().zip(bundle.members()) {
        let path = pki.join(file);
        let current = read(&path)?;
        let same = current
            .as_deref()
            .is_some_and(|c| c == value.as_str() || c.trim() == value.as_str());
        if !same {
            if current.is_some() && (*file == "ca.crt" || *file == "ca.key") {
                tracing::warn!(
                    path = %path.display(),
                    "replacing this data dir's {file} with the cluster's (from the datastore)"
                );
            }
            write_private(&path, value)?;
        }
    }
    Ok(())
}

/// The cluster's bundle: the stored one, or this data dir's published as it (module doc).
pub async fn resolve(store: &dyn store::Store, pki: &Path) -> Result<Bundle, TlsError> {
    std::fs::create_dir_all(pki).map_err(|source| TlsError::Io {
        path: pki.to_path_buf(),
        source,
    })?;
    let stored = fetch(store).await?;
    let local = read_local(pki)?;
    let mut failed = None;
    let mut ca = None;
    let decision = decide(stored, local, |i| match generate(i, &mut ca) {
        Ok(v) => v,
        Err(e) => {
            failed = Some(e);
            String::new()
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    let bundle = match decision {
        Decision::Adopt(b) => b,
        Decision::Publish(b) => {
            let bytes = serde_json::to_vec(&b).map_err(|e| TlsError::Store(e.to_string()))?;
            match store.create(KEY, Bytes::from(bytes)).await {
                Ok(_) => {
                    tracing::info!("published this server's CA and tokens to the datastore");
                    b
                }
                Err(store::Error::AlreadyExists { .. }) => fetch(store)
                    .await?
                    .ok_or_else(|| TlsError::Store(format!("{KEY} vanished")))?,
                Err(e) => return Err(TlsError::Store(e.to_string())),
            }
        }
    };
    write_local(pki, &bundle)?;
    Ok(bundle)
}

async fn fetch(store: &dyn store::Store) -> Result<Option<Bundle>, TlsError> {
    let Some(kv) = store
        .get(KEY)
        .await
        .map_err(|e| TlsError::Store(e.to_string()))?
    else {
        return Ok(None);
    };
    serde_json::from_slice(&kv.value)
        .map(Some)
        .map_err(|e| TlsError::Store(format!("{KEY}: {e}")))
}

/// A fresh member `i` (in [`FILES`] order); `ca` holds the one new CA pair both halves
/// come from (`decide` asks for both or neither).
fn generate(i: usize, ca: &mut Option<(String, String)>) -> Result<String, TlsError> {
    Ok(match i {
        0 | 1 => {
            if ca.is_none() {
                *ca = Some(crate::tls::new_ca()?);
            }
            let (crt, key) = ca
                .as_ref()
                .map(|(c, k)| (c.clone(), k.clone()))
                .unwrap_or_default();
            if i == 0 {
                crt
            } else {
                key
            }
        }
        2 => rcgen::KeyPair::generate()?.serialize_pem(),
        6 => crate::bootstraptoken::generate(),
        _ => crate::tls::random_token(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(tag: &str) -> [Option<String>; 7] {
        std::array::from_fn(|i| Some(format!("{tag}{i}")))
    }

    #[test]
    fn decisions() {
        let stored = Bundle::from_members(std::array::from_fn(|i| format!("s{i}")));
        let gen = |i: usize| format!("g{i}");
        let mut ca_only_crt = [None, None, None, None, None, None, None];
        ca_only_crt[0] = Some("l0".to_string());
        ca_only_crt[3] = Some("l3".to_string());
        let cases: Vec<(&str, Option<Bundle>, Local, Decision)> = vec![
            (
                "a stored bundle wins over local files",
                Some(stored.clone()),
                Local(full("l")),
                Decision::Adopt(stored.clone()),
            ),
            (
                "an existing single-node data dir publishes its own",
                None,
                Local(full("l")),
                Decision::Publish(Bundle::from_members(std::array::from_fn(|i| {
                    format!("l{i}")
                }))),
            ),
            (
                "a fresh data dir publishes all new",
                None,
                Local::default(),
                Decision::Publish(Bundle::from_members(std::array::from_fn(|i| {
                    format!("g{i}")
                }))),
            ),
            (
                "half a CA is replaced whole, other members kept",
                None,
                Local(ca_only_crt),
                Decision::Publish(Bundle::from_members([
                    "g0".into(),
                    "g1".into(),
                    "g2".into(),
                    "l3".into(),
                    "g4".into(),
                    "g5".into(),
                    "g6".into(),
                ])),
            ),
        ];
        for (name, stored, local, want) in cases {
            assert_eq!(decide(stored, local, gen), want, "{name}");
        }
    }

    #[tokio::test]
    async fn second_server_adopts_the_first_ones_pki() {
        let db = tempfile::tempdir().unwrap();
        let store = store::sqlite::SqliteStore::open(&db.path().join("state.db")).unwrap();
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let first = resolve(&store, &a.path().join("pki")).await.unwrap();
        let second = resolve(&store, &b.path().join("pki")).await.unwrap();
        assert_eq!(first, second);
        for f in FILES {
            assert_eq!(
                std::fs::read(a.path().join("pki").join(f)).unwrap(),
                std::fs::read(b.path().join("pki").join(f)).unwrap(),
                "{f}"
            );
        }
        // A restart of the first finds everything in place.
        assert_eq!(resolve(&store, &a.path().join("pki")).await.unwrap(), first);
    }
}
