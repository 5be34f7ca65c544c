//! The Kubernetes streaming protocols that need more than a WebSocket library: SPDY/3.1, which
//! kubectl's port-forward speaks (tunnelled over a WebSocket, or over a plain HTTP upgrade)
//! and which older clients fall back to for exec.
//!
//! Owns: the SPDY frame codec and header compression ([`spdy::frame`]) and a server-side
//! session that turns a byte stream into incoming streams ([`spdy::session`]). Does not own
//! what the streams mean (port-forward pairs, exec's stdio): that is the agent's streaming
//! server. Also the server half of the WebSocket handshake ([`websocket`]) both the API
//! server and the agent answer. Depends on tokio, flate2, http and tungstenite.

pub mod spdy;
pub mod websocket;
