//! The writer behind a [`Recorder`](crate::Recorder): takes events off the queue one at a
//! time, correlates them, and creates or patches them through the API, as client-go's
//! `recordToSink` does.
//!
//! ```text
//!  queue ─▶ correlate ─▶ skip (spam) | patch existing (count > 1) ─404─▶ create
//!                                     | create
//!            answered by the server (written or refused): done, never retried
//!            no answer (transport error): retry, up to 12 tries, 10 s apart
//!            (the first wait is a random part of that, so clients do not retry in step)
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::correlator::{Config, Correlated, Correlator};

/// client-go's `maxTriesPerEvent` and `sleepDuration`.
const MAX_TRIES: u32 = 12;
const RETRY_SLEEP: Duration = Duration::from_secs(10);

/// Writes recorded events to the API server until told to stop. Cloning it shares the
/// queue and the correlator, so a supervisor can restart a sink that stopped and the new
/// one carries on where the old one left off (it waits until the old one is gone).
#[derive(Clone)]
pub struct Sink {
    client: kube::Client,
    state: Arc<tokio::sync::Mutex<State>>,
    dropped: Arc<AtomicU64>,
}

/// What one running sink owns at a time.
struct State {
    rx: mpsc::Receiver<Event>,
    correlator: Correlator,
}

/// How one write attempt ended.
enum Outcome {
    Written(Box<Event>),
    /// The server refused it; trying again would be refused again.
    Refused,
    /// The server could not be reached.
    Retry,
}

impl Sink {
    pub(crate) fn new(
        client: kube::Client,
        rx: mpsc::Receiver<Event>,
        dropped: Arc<AtomicU64>,
    ) -> Sink {
        Sink {
            client,
            state: Arc::new(tokio::sync::Mutex::new(State {
                rx,
                correlator: Correlator::new(Config::default()),
            })),
            dropped,
        }
    }

    /// Writes events until `shutdown`, or until every [`Recorder`](crate::Recorder) is
    /// gone and the queue is empty. Events still queued at shutdown are dropped: they are
    /// best effort, as upstream's are.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut state = tokio::select! {
            _ = shutdown.cancelled() => return,
            state = self.state.lock() => state,
        };
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => return,
                ev = state.rx.recv() => match ev {
                    Some(ev) => ev,
                    None => return,
                },
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.record(&mut state.correlator, event) => {}
            }
        }
    }

    async fn record(&self, correlator: &mut Correlator, event: Event) {
        let Some(correlated) = correlator.correlate(event, Timestamp::now()) else {
            return;
        };
        for attempt in 1..=MAX_TRIES {
            match self.write(&correlated).await {
                Outcome::Written(written) => {
                    correlator.update_state(&written);
                    let dropped = self.dropped.swap(0, Ordering::Relaxed);
                    if dropped > 0 {
                        info!(dropped, "the event queue has room again");
                    }
                    return;
                }
                Outcome::Refused => return,
                Outcome::Retry if attempt == MAX_TRIES => {
                    warn!(
                        reason = correlated.event.reason.as_deref().unwrap_or_default(),
                        "unable to write event (retry limit exceeded)"
                    );
                }
                Outcome::Retry => {
                    let wait = if attempt == 1 {
                        RETRY_SLEEP.mul_f64(rand::random::<f64>())
                    } else {
                        RETRY_SLEEP
                    };
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// One attempt: the patch of a repeat (a create if its event is gone), or a create.
    async fn write(&self, c: &Correlated) -> Outcome {
        let namespace = c.event.metadata.namespace.as_deref().unwrap_or("default");
        let api: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        let name = c.event.metadata.name.clone().unwrap_or_default();
        if let (Some(patch), true) = (&c.patch, c.event.count.unwrap_or(1) > 1) {
            match api
                .patch(&name, &PatchParams::default(), &Patch::Strategic(patch))
                .await
            {
                Ok(written) => return Outcome::Written(Box::new(written)),
                // Expired or deleted: write it afresh under the same name.
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return classify(&name, e),
            }
        }
        let mut event = c.event.clone();
        event.metadata.resource_version = None;
        match api.create(&PostParams::default(), &event).await {
            Ok(written) => Outcome::Written(Box::new(written)),
            Err(e) => classify(&name, e),
        }
    }
}

fn classify(name: &str, e: kube::Error) -> Outcome {
    match e {
        kube::Error::Api(s) => {
            // A namespace being deleted refuses new events; so does a name already taken.
            if s.code == 409 || s.code == 403 || s.code == 404 {
                debug!(event = %name, error = %s, "server refused event (will not retry)");
            } else {
                warn!(event = %name, error = %s, "server refused event (will not retry)");
            }
            Outcome::Refused
        }
        other => {
            debug!(event = %name, error = %other, "unable to write event (may retry)");
            Outcome::Retry
        }
    }
}
