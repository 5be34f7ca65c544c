//! The surface the fuzzing targets (`crates/fuzz`) drive, and nothing else uses: the whole
//! request stack below TLS and HTTP framing, in-process, on a store of the caller's choice,
//! and the decoders that are private to their handlers. Not an API: it may change with
//! the handlers it exposes.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;

use crate::body::Body;
use crate::errors::ApiError;
use crate::server::ApiServer;

/// An API server as `start` assembles it (PKI in `data_dir`, system namespaces and priority
/// classes, ready), without a listener or background tasks; and its admin bearer token. It
/// never connects to a node agent: the nodes a fuzzer creates name any address, and a
/// request that would reach one (logs, exec, attach, port-forward) is answered 500 "node
/// PKI not ready" instead, with no network traffic.
pub async fn server(
    data_dir: &Path,
    store: Arc<dyn store::Store>,
) -> Result<(Arc<ApiServer>, String), crate::Error> {
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 6443));
    let (server, pki) = crate::assemble(
        data_dir,
        listen,
        store,
        None,
        Default::default(),
        crate::Agents::Never,
    )
    .await?;
    Ok((server, pki.admin_token))
}

/// What a request that would reach a node agent is answered with by [`server`]'s server.
pub const NO_AGENTS: &str = crate::nodeproxy::NO_NODE_PKI;

/// One request through authentication, routing, the handlers and error mapping, as a
/// connection's service answers it.
pub async fn answer(server: Arc<ApiServer>, req: Request<Full<Bytes>>) -> Response<Body> {
    crate::server::handle(server, req).await
}

/// A list's `continue` token, decoded as the list handler does: the revision and the key
/// the next page starts after.
pub fn decode_continue(token: &str) -> Result<(store::Revision, String), ApiError> {
    crate::handlers::list::decode_continue(token)
}

/// A list's `continue` token, as the list handler writes it.
pub fn encode_continue(revision: store::Revision, start_after: &str) -> String {
    crate::handlers::list::encode_continue(revision, start_after)
}

/// The strategic-merge schema of every served kind (what PATCH merges by).
pub fn patch_schema() -> &'static api::patch::PatchSchema {
    crate::handlers::patch::patch_schema()
}
