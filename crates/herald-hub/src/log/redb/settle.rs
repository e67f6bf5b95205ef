//! The settling thread: moves durable appends from the landing list into redb.
//!
//! The commit thread's cycle is the log write and its `fdatasync`; the redb insert of the same
//! batch (tens of microseconds of CPU per transaction) runs here at the same time, and takes
//! every batch that landed meanwhile in one transaction. The commit thread wakes it after each
//! append, and settles itself, under the same lock, before a checkpoint or a trim, which must
//! find everything durable in redb.

use std::sync::mpsc::{self, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use redb::{Database, Durability};

use super::durable::insert;
use super::landing::Landing;

/// What both threads share: one settle runs at a time.
#[derive(Debug)]
struct Settler {
    db: Arc<Database>,
    landing: Landing,
    lock: Mutex<()>,
}

impl Settler {
    /// Inserts every waiting batch into redb, in one transaction without durability, then takes
    /// them off the landing list. On failure they stay there (still durable in the log, still
    /// read from the list) and the next settle tries again. Returns whether nothing waits.
    fn settle(&self) -> bool {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let waiting = self.landing.waiting();
        if waiting.is_empty() {
            return true;
        }
        match insert(&self.db, &waiting, Durability::None) {
            Ok(()) => {
                self.landing.settled(waiting.len());
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "inserting durable updates into the store failed; will retry");
                false
            }
        }
    }
}

/// The thread and its wake-up channel. Dropping it ends the thread and waits for it (it holds
/// the database).
#[derive(Debug)]
pub(super) struct SettlerThread {
    settler: Arc<Settler>,
    wake: Option<mpsc::SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl SettlerThread {
    pub(super) fn start(db: Arc<Database>, landing: Landing) -> std::io::Result<Self> {
        let settler = Arc::new(Settler {
            db,
            landing,
            lock: Mutex::new(()),
        });
        // One pending wake-up is enough: a settle takes everything that waits when it starts.
        let (wake, woken) = mpsc::sync_channel::<()>(1);
        let shared = Arc::clone(&settler);
        let thread = std::thread::Builder::new()
            .name("herald-redb-settle".into())
            .spawn(move || {
                while woken.recv().is_ok() {
                    shared.settle();
                }
            })?;
        Ok(Self {
            settler,
            wake: Some(wake),
            thread: Some(thread),
        })
    }

    /// Asks the thread to settle what waits.
    pub(super) fn wake(&self) {
        if let Some(wake) = &self.wake {
            match wake.try_send(()) {
                Ok(()) | Err(TrySendError::Full(())) => {}
                Err(TrySendError::Disconnected(())) => {
                    // The thread is gone (it cannot panic past `settle`, but be safe): settle
                    // here instead.
                    self.settler.settle();
                }
            }
        }
    }

    /// Settles on the calling thread, after any settle in progress. Returns whether nothing
    /// waits.
    pub(super) fn settle(&self) -> bool {
        self.settler.settle()
    }

    /// A handle that settles from another thread (the background checkpoint).
    pub(super) fn handle(&self) -> SettleHandle {
        SettleHandle(Arc::clone(&self.settler))
    }
}

/// Settles on whichever thread holds it (see [`SettlerThread::settle`]).
#[derive(Debug, Clone)]
pub(super) struct SettleHandle(Arc<Settler>);

impl SettleHandle {
    /// As [`SettlerThread::settle`].
    pub(super) fn settle(&self) -> bool {
        self.0.settle()
    }
}

impl Drop for SettlerThread {
    fn drop(&mut self) {
        drop(self.wake.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
