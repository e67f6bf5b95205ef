//! For shared stores (a cluster log): reads every new update back from the log, whichever process
//! appended it, and applies it here in the log's order. If the store is unreachable it keeps
//! retrying with backoff and resumes after the last update it applied; subscribers stay
//! connected meanwhile.

use std::sync::Weak;
use std::time::Duration;

use crate::hub::Shared;
use crate::update::LogEntry;

/// How long one read waits for new updates before checking for shutdown.
const WAIT: Duration = Duration::from_secs(1);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const LONGEST_BACKOFF: Duration = Duration::from_secs(5);

pub(crate) async fn run(shared: Weak<Shared>) {
    let mut backoff = FIRST_BACKOFF;
    let mut failing = false;
    loop {
        let Some(hub) = shared.upgrade() else { return };
        let after = {
            let state = hub.lock();
            if state.closed {
                return;
            }
            state.committed
        };
        let chunk = hub.config.replay_chunk.max(1);
        match hub.store.wait_after(after, chunk, WAIT).await {
            Ok(updates) => {
                if failing {
                    tracing::info!(after, "the store answers again; reading the log resumes");
                    failing = false;
                }
                backoff = FIRST_BACKOFF;
                hub.apply(updates.into_iter().map(LogEntry::new).collect());
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, after, "reading the shared log failed; retrying with backoff");
                    failing = true;
                }
                drop(hub);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(LONGEST_BACKOFF);
            }
        }
    }
}
