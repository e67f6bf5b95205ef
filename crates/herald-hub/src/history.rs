//! Reading history in pages: the polling fallback for clients without `EventSource`.
//!
//! A page holds the updates after a cursor that the caller may see, and the cursor to ask from
//! next. The cursor is an update id, so a client can switch between polling and `EventSource`
//! (`Last-Event-ID`) freely. Without a cursor the page is empty and the cursor is "now", as an
//! `EventSource` without `Last-Event-ID` starts live; `earliest` starts from the oldest retained.

use crate::auth::Claims;
use crate::fanout::Filter;
use crate::hub::{Hub, ResumedFrom, SubscribeError, EARLIEST};
use crate::selector::Selector;
use crate::update::{Position, StoredUpdate};

/// Most updates examined for one page, so a selector that matches rarely cannot make one request
/// scan the whole history; the cursor still advances past what was examined.
const MAX_SCAN: usize = 10_000;

/// What a poller asks for.
#[derive(Debug, Clone, Default)]
pub struct HistoryRequest {
    /// Topic selectors; at least one.
    pub selectors: Vec<Selector>,
    /// Verified claims (`None`: anonymous, no private updates).
    pub claims: Option<Claims>,
    /// The cursor: an id, `earliest`, or `None` for "from now".
    pub after: Option<String>,
    /// Most updates in the page (at least 1).
    pub limit: usize,
}

/// One page of history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    /// The updates, in log order.
    pub updates: Vec<StoredUpdate>,
    /// The cursor to ask from next (`earliest` while the log is empty).
    pub next: String,
    /// Where the page started, when a cursor was given (`Earliest` for an unknown id).
    pub resumed_from: Option<ResumedFrom>,
}

impl Hub {
    /// One page of the history `request` may see.
    pub async fn history(&self, request: HistoryRequest) -> Result<HistoryPage, SubscribeError> {
        if request.selectors.is_empty() {
            return Err(SubscribeError::NoSelector);
        }
        let limit = request.limit.max(1);
        let shared = &self.shared;
        let (head, head_id) = {
            let state = shared.lock();
            (
                state.committed,
                state.tail.back().map(|e| e.update.id.clone()),
            )
        };
        let (mut after, resumed_from) = match request.after.as_deref() {
            None => {
                let next = match head_id {
                    Some(id) => id,
                    None => self.last_event_id().await?,
                };
                return Ok(HistoryPage {
                    updates: Vec::new(),
                    next,
                    resumed_from: None,
                });
            }
            Some(EARLIEST) => (0, ResumedFrom::Earliest),
            Some(id) => match shared.store.position_of(id).await? {
                Some(p) => (p, ResumedFrom::Id(id.to_owned())),
                None => (0, ResumedFrom::Earliest),
            },
        };
        let filter = Filter::new(request.selectors, request.claims.and_then(|c| c.subscribe));
        let mut next = match &resumed_from {
            ResumedFrom::Id(id) => id.clone(),
            ResumedFrom::Earliest => EARLIEST.to_owned(),
        };
        let mut updates = Vec::new();
        let mut scanned = 0;
        while updates.len() < limit && scanned < MAX_SCAN && after < head {
            let chunk = self
                .read_chunk(after, shared.config.replay_chunk.max(1))
                .await?;
            let Some(last) = chunk.last().map(|u| u.position) else {
                break;
            };
            for update in chunk {
                if update.position > head || updates.len() >= limit || scanned >= MAX_SCAN {
                    break;
                }
                scanned += 1;
                after = update.position;
                next.clone_from(&update.id);
                if filter.accepts_update(&update) {
                    updates.push(update);
                }
            }
            if after < last.min(head) {
                break; // stopped inside the chunk: limit or scan bound reached
            }
        }
        Ok(HistoryPage {
            updates,
            next,
            resumed_from: Some(resumed_from),
        })
    }

    /// Up to `limit` updates after `after`, from the memory tail when it covers them.
    async fn read_chunk(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<StoredUpdate>, SubscribeError> {
        {
            let state = self.shared.lock();
            let covered = state
                .tail
                .front()
                .is_some_and(|first| first.update.position <= after.saturating_add(1));
            if covered {
                let start = state.tail.partition_point(|e| e.update.position <= after);
                return Ok(state
                    .tail
                    .range(start..)
                    .take(limit)
                    .map(|e| e.update.clone())
                    .collect());
            }
        }
        Ok(self.shared.store.read_after(after, limit).await?)
    }
}
