//! The collector's work queue, with client-go workqueue's guarantees: an item waiting is
//! queued once however often it is added, and an item being processed is never handed to a
//! second worker (added meanwhile, it is queued again when the first is done).

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use tokio::sync::Notify;

use super::graph_builder::Work;

#[derive(Default)]
struct State {
    queue: VecDeque<Work>,
    /// Waiting to be processed (queued, or re-added while being processed).
    dirty: HashSet<Work>,
    processing: HashSet<Work>,
}

#[derive(Default)]
pub struct Queue {
    state: Mutex<State>,
    notify: Notify,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add(&self, work: Work) {
        let mut s = self.lock();
        if !s.dirty.insert(work.clone()) || s.processing.contains(&work) {
            return;
        }
        s.queue.push_back(work);
        drop(s);
        self.notify.notify_one();
    }

    /// The next item; call [`Queue::done`] with it when finished.
    pub async fn get(&self) -> Work {
        loop {
            let notified = self.notify.notified();
            {
                let mut s = self.lock();
                if let Some(work) = s.queue.pop_front() {
                    s.dirty.remove(&work);
                    s.processing.insert(work.clone());
                    if !s.queue.is_empty() {
                        // Let another worker take the next one.
                        self.notify.notify_one();
                    }
                    return work;
                }
            }
            notified.await;
        }
    }

    pub fn done(&self, work: &Work) {
        let mut s = self.lock();
        s.processing.remove(work);
        if s.dirty.contains(work) {
            s.queue.push_back(work.clone());
            drop(s);
            self.notify.notify_one();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn deduplicates_and_never_hands_out_an_item_twice() {
        let q = Queue::default();
        let a = Work::AttemptToDelete("a".into());
        let b = Work::AttemptToOrphan("b".into());
        q.add(a.clone());
        q.add(a.clone());
        q.add(b.clone());
        assert_eq!(q.len(), 2);
        let got = q.get().await;
        assert_eq!(got, a);
        // Added while processing: not queued until done.
        q.add(a.clone());
        assert_eq!(q.len(), 1);
        assert_eq!(q.get().await, b);
        q.done(&b);
        q.done(&a);
        assert_eq!(q.len(), 1);
        assert_eq!(q.get().await, a);
        q.done(&a);
        assert_eq!(q.len(), 0);
    }
}
