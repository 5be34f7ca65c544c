//! The fuzzing targets, one module per decoder family (see the crate's doc). One test
//! binary, so `cargo test --workspace` links it once.

mod bodies;
mod patches;
mod protobuf_bodies;
mod query;
mod selectors;
mod server;
