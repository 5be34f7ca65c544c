//! Reading a whole key prefix in bounded pages, all at one store revision.

use std::sync::Arc;

use store::{KeyValue, ListOptions, Revision, Store};

/// Keys one page holds.
const PAGE: usize = 1000;

/// The pages of one prefix, read at the revision of the first page.
pub struct Pages<'a> {
    store: &'a Arc<dyn Store>,
    prefix: &'a str,
    start_after: Option<String>,
    revision: Revision,
    done: bool,
}

impl<'a> Pages<'a> {
    pub fn new(store: &'a Arc<dyn Store>, prefix: &'a str) -> Pages<'a> {
        Pages {
            store,
            prefix,
            start_after: None,
            revision: 0,
            done: false,
        }
    }

    /// The next page, or `None` after the last.
    pub async fn next(&mut self) -> Result<Option<Vec<KeyValue>>, store::Error> {
        if self.done {
            return Ok(None);
        }
        let page = self
            .store
            .list(
                self.prefix,
                ListOptions {
                    start_after: self.start_after.take(),
                    limit: PAGE,
                    revision: self.revision,
                },
            )
            .await?;
        self.revision = page.revision;
        self.start_after = page.items.last().map(|kv| kv.key.clone());
        self.done = page.remaining == 0 || self.start_after.is_none();
        Ok(Some(page.items))
    }

    /// The revision the pages are read at (valid after the first `next`).
    pub fn revision(&self) -> Revision {
        self.revision
    }
}
