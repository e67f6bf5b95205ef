//! The commit thread: the one thread that writes to the store (the redb file and its write-ahead
//! log).
//!
//! redb runs one write transaction at a time and a durable write blocks until its fsync returns.
//! Appends are answered once their log record is durable; another thread inserts them into redb
//! meanwhile (see [`super::settle`]).
//! Every write runs here, one after the other, fed through a channel: handing a batch over costs
//! one wake-up of a thread that is already waiting for it, where tokio's blocking pool would need
//! a new task per commit and a pool thread to pick it up. Reads do not come here: they run on the
//! blocking pool, beside the writes. When the store is dropped the thread makes a last
//! checkpoint, so the next start has no log to replay, and empties the log files.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use super::durable::WriteSide;
use crate::log::StoreError;

type Job = Box<dyn FnOnce(&mut WriteSide) + Send>;

/// The thread and the channel that feeds it. Dropping it ends the thread and waits for it.
#[derive(Debug)]
pub(super) struct CommitThread {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl CommitThread {
    /// Starts the thread; it owns `side` until this is dropped.
    pub(super) fn start(mut side: WriteSide) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("herald-redb-commit".into())
            .spawn(move || {
                while let Ok(job) = queue.recv() {
                    // A panic in one job drops its answer channel (its caller gets an error); the
                    // thread goes on serving the next jobs.
                    let _ = catch_unwind(AssertUnwindSafe(|| job(&mut side)));
                }
                side.close();
            })?;
        Ok(Self {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Runs `op` on the commit thread, after the writes handed over before it.
    pub(super) async fn write<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteSide) -> Result<T, StoreError> + Send + 'static,
    {
        let stopped = || StoreError::Io("the store's commit thread has stopped".into());
        let (done, answer) = oneshot::channel();
        let job: Job = Box::new(move |side| {
            let _ = done.send(op(side));
        });
        self.jobs
            .as_ref()
            .ok_or_else(stopped)?
            .send(job)
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

impl Drop for CommitThread {
    fn drop(&mut self) {
        // Closing the channel ends the thread once its current job is done. Waiting for it means
        // the file is released when the last handle on the store is gone, so it can be opened
        // again right away.
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
