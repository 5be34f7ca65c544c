//! The Kubernetes streaming protocols that need more than a WebSocket library: SPDY/3.1, which
//! kubectl's port-forward speaks (tunnelled over a WebSocket, or over a plain HTTP upgrade)
//! and which older clients fall back to for exec.
//!
//! Owns: the SPDY frame codec and header compression ([`spdy::frame`]) and a server-side
//! session that turns a byte stream into incoming streams ([`spdy::session`]). Does not own
//! what the streams mean (port-forward pairs, exec's stdio): that is the agent's streaming
//! server. Depends on tokio and flate2 only.

pub mod spdy;
