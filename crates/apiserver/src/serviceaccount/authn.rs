//! Accepting service-account tokens as bearer credentials, as kube-apiserver's
//! service-account authenticator does for the tokens it issued: the signature is this
//! server's, the token is within its lifetime (with the leeway), one of its audiences is the
//! API's, the service account still exists with the uid in the token, and so does the
//! object the token is bound to. A pod that is being deleted keeps its token valid until its
//! deletion time plus the leeway, as upstream allows a terminating pod to finish its work.

use super::jwt::{Claims, JwtError, TokenKeys, LEEWAY_SECONDS};
use super::tokenrequest::get;
use super::DEFAULT_AUDIENCE;
use crate::errors::ApiError;
use crate::kinds;
use crate::object;
use crate::registry;
use crate::server::ApiServer;

/// Why a token was refused; the client only ever sees `Unauthorized`.
#[derive(Debug, thiserror::Error)]
pub enum Rejected {
    #[error(transparent)]
    Token(#[from] JwtError),
    #[error("token audiences {0:?} do not include the API's")]
    Audience(Vec<String>),
    #[error("{kind} {name} no longer exists")]
    Gone { kind: &'static str, name: String },
    #[error("{kind} {name} was recreated (uid {actual}, token for {wanted})")]
    Recreated {
        kind: &'static str,
        name: String,
        wanted: String,
        actual: String,
    },
    #[error("pod {0} was deleted")]
    PodDeleted(String),
    #[error("looking up the bound objects: {0}")]
    Lookup(#[from] ApiError),
}

/// The token's claims if it authenticates a service account now.
pub async fn authenticate(
    server: &ApiServer,
    keys: &TokenKeys,
    token: &str,
) -> Result<Claims, Rejected> {
    let now = jiff::Timestamp::now().as_second();
    let claims = keys.verify(token, now)?;
    if !claims.aud.iter().any(|a| a == DEFAULT_AUDIENCE) {
        return Err(Rejected::Audience(claims.aud));
    }
    let bound = &claims.kubernetes;
    let ns = bound.namespace.as_str();
    let sa = &bound.serviceaccount;
    check(
        server,
        &kinds::serviceaccount::RESOURCE,
        "serviceaccount",
        ns,
        &sa.name,
        &sa.uid,
    )
    .await?;
    if let Some(secret) = &bound.secret {
        check(
            server,
            &kinds::secret::RESOURCE,
            "secret",
            ns,
            &secret.name,
            &secret.uid,
        )
        .await?;
    }
    if let Some(pod) = &bound.pod {
        let current = check(
            server,
            &kinds::pod::RESOURCE,
            "pod",
            ns,
            &pod.name,
            &pod.uid,
        )
        .await?;
        let deleted_at = current["metadata"]["deletionTimestamp"]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok());
        if deleted_at.is_some_and(|t| t.as_second() + LEEWAY_SECONDS < now) {
            return Err(Rejected::PodDeleted(pod.name.clone()));
        }
    }
    Ok(claims)
}

/// The object `name` in `ns`, which must exist with `uid`.
async fn check(
    server: &ApiServer,
    resource: &registry::Resource,
    kind: &'static str,
    ns: &str,
    name: &str,
    uid: &str,
) -> Result<serde_json::Value, Rejected> {
    let gone = || Rejected::Gone {
        kind,
        name: format!("{ns}/{name}"),
    };
    let obj = get(server, resource, ns, name).await?.ok_or_else(gone)?;
    let actual = object::uid(&obj);
    if actual != uid {
        return Err(Rejected::Recreated {
            kind,
            name: format!("{ns}/{name}"),
            wanted: uid.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(obj)
}
