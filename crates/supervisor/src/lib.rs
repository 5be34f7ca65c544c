//! Supervision of peapod's long-running components, so that no part of the process can die
//! quietly and leave the rest half alive.
//!
//! Owns: the [`Supervisor`] (a `JoinSet` of named components, each either restarted with
//! backoff when it fails or taking the whole process down with one error), the
//! [`Backoff`] both use between attempts (client-go's reflector parameters), and
//! [`Outage`], the bounded logging of a connection that keeps failing (first failure, at
//! most one line a minute after, one line on reconnect).
//!
//! Does not own: what a component does or which policy it gets (the binary and the crates
//! that run loops choose; ARCHITECTURE.md lists the choices), nor watch retries (kube-runtime
//! watchers back off with `.default_backoff()`).
//!
//! May depend on: tokio, tokio-util, tracing. Nothing from the workspace.

mod backoff;
mod outage;
mod supervise;

pub use backoff::Backoff;
pub use outage::{Line, Outage, REPEAT_EVERY};
pub use supervise::{Failure, OnFailure, Supervisor, SHUTDOWN_GRACE};
