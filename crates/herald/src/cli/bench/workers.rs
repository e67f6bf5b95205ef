//! The parent's side of the fan-out workers: starting them (this same binary, `herald bench
//! fanout-worker`), sending commands on their stdin and collecting their messages from stdout.
//!
//! Each worker's stdout is read by a thread of its own that forwards parsed lines to the runtime.
//! The workers are killed if the parent drops them early (an error); otherwise they exit by
//! themselves after their last message, or when their stdin closes.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::protocol::{Command, Message};

/// How the subscribers are split over the workers.
pub(super) struct WorkerPlan<'a> {
    /// Subscribe URL templates with `{topic}`.
    pub templates: &'a [String],
    /// Topics are named `bench{i}`.
    pub short_topics: bool,
    /// Subscribers in all.
    pub subscribers: u64,
    /// Worker processes (0 when there are no subscribers).
    pub processes: u64,
    /// Topics in all.
    pub topics: u64,
    /// Source addresses in all.
    pub source_addrs: u32,
    /// New connections per second over all workers.
    pub connect_rate: f64,
    /// Percentage of subscribers that stall.
    pub stall: f64,
    /// Subscribers reconnect.
    pub reconnect: bool,
    /// When the run started, µs since the Unix epoch.
    pub since_us: u64,
}

/// The running workers.
pub(super) struct Workers {
    children: Vec<Child>,
    stdins: Vec<Option<ChildStdin>>,
    /// (worker, message), or (worker, `None`) when its stdout closed.
    messages: mpsc::UnboundedReceiver<(usize, Option<Message>)>,
    /// Messages that arrived early: a worker's next message while others still owe this one.
    early: Vec<VecDeque<Option<Message>>>,
}

impl Workers {
    /// Starts the plan's workers.
    pub(super) fn spawn(plan: &WorkerPlan<'_>) -> Result<Self, String> {
        let exe = std::env::current_exe()
            .map_err(|e| format!("cannot find this program to start workers: {e}"))?;
        let (tx, messages) = mpsc::unbounded_channel();
        let mut workers = Self {
            children: Vec::new(),
            stdins: Vec::new(),
            messages,
            early: Vec::new(),
        };
        let processes = plan.processes;
        let mut first = 0;
        for w in 0..processes {
            let count = plan.subscribers / processes + u64::from(w < plan.subscribers % processes);
            let mut command = std::process::Command::new(&exe);
            command.args(["bench", "fanout-worker"]);
            for url in plan.templates {
                command.arg("--url").arg(url);
            }
            if plan.short_topics {
                command.arg("--short-topics");
            }
            if plan.reconnect {
                command.arg("--reconnect");
            }
            command
                .args(["--first", &first.to_string()])
                .args(["--count", &count.to_string()])
                .args(["--topics", &plan.topics.to_string()])
                .args(["--source-addrs", &plan.source_addrs.to_string()])
                .args([
                    "--connect-rate",
                    &(plan.connect_rate / processes as f64).to_string(),
                ])
                .args(["--stall", &plan.stall.to_string()])
                .args(["--since-us", &plan.since_us.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit());
            let mut child = command
                .spawn()
                .map_err(|e| format!("cannot start worker process {w}: {e}"))?;
            let stdout = child.stdout.take();
            workers.stdins.push(child.stdin.take());
            workers.children.push(child);
            workers.early.push(VecDeque::new());
            let Some(stdout) = stdout else {
                return Err(format!("worker process {w} has no stdout"));
            };
            let tx = tx.clone();
            let index = workers.children.len() - 1;
            std::thread::Builder::new()
                .name(format!("fanout-worker-{w}"))
                .spawn(move || {
                    for line in BufReader::new(stdout).lines() {
                        let Ok(line) = line else { break };
                        match serde_json::from_str::<Message>(&line) {
                            Ok(message) => {
                                let _ = tx.send((index, Some(message)));
                            }
                            Err(e) => {
                                eprintln!("herald: unreadable message from worker {index}: {e}");
                                break;
                            }
                        }
                    }
                    let _ = tx.send((index, None));
                })
                .map_err(|e| format!("cannot start a reader thread: {e}"))?;
            first += count;
        }
        Ok(workers)
    }

    /// One message from every worker, picked by `pick` (which hands back any other message).
    pub(super) async fn collect<T>(
        &mut self,
        what: &str,
        limit: Duration,
        pick: impl Fn(Message) -> Result<T, Message>,
    ) -> Result<Vec<T>, String> {
        let mut got: Vec<Option<T>> = (0..self.children.len()).map(|_| None).collect();
        let deadline = tokio::time::Instant::now() + limit;
        while got.iter().any(Option::is_none) {
            let early =
                got.iter()
                    .zip(&mut self.early)
                    .enumerate()
                    .find_map(|(w, (slot, queue))| {
                        if slot.is_none() {
                            queue.pop_front().map(|m| (w, m))
                        } else {
                            None
                        }
                    });
            let (w, message) = match early {
                Some(m) => m,
                None => match tokio::time::timeout_at(deadline, self.messages.recv()).await {
                    Err(_) => {
                        let late = got.iter().filter(|g| g.is_none()).count();
                        return Err(format!(
                            "{late} worker process(es) did not say {what:?} within {limit:?}"
                        ));
                    }
                    Ok(None) => return Err("every worker process is gone".into()),
                    Ok(Some(m)) => m,
                },
            };
            if got.get(w).is_some_and(Option::is_some) {
                // This worker is a step ahead: keep its message for the next collect.
                if let Some(queue) = self.early.get_mut(w) {
                    queue.push_back(message);
                }
                continue;
            }
            let Some(message) = message else {
                let status = self
                    .children
                    .get_mut(w)
                    .and_then(wait_briefly)
                    .map_or_else(|| "still running".to_owned(), |s| s.to_string());
                return Err(format!(
                    "worker process {w} ended before saying {what:?} ({status})"
                ));
            };
            match pick(message) {
                Ok(t) => {
                    if let Some(slot) = got.get_mut(w) {
                        *slot = Some(t);
                    }
                }
                Err(other) => {
                    return Err(format!(
                        "worker process {w} said {other:?} when {what:?} was expected"
                    ))
                }
            }
        }
        Ok(got.into_iter().flatten().collect())
    }

    /// Sends `command` to every worker.
    pub(super) fn send(&mut self, command: &Command) -> Result<(), String> {
        let mut line =
            serde_json::to_string(command).map_err(|e| format!("cannot encode a command: {e}"))?;
        line.push('\n');
        for (w, stdin) in self.stdins.iter_mut().enumerate() {
            if let Some(stdin) = stdin {
                stdin
                    .write_all(line.as_bytes())
                    .and_then(|()| stdin.flush())
                    .map_err(|e| format!("cannot write to worker process {w}: {e}"))?;
            }
        }
        Ok(())
    }

    /// Closes the workers' stdin and waits a little for them to exit (they have said everything).
    pub(super) async fn close(mut self) {
        self.stdins.clear();
        let deadline = Instant::now() + Duration::from_secs(5);
        for child in &mut self.children {
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// The child's exit status if it exits within a moment.
fn wait_briefly(child: &mut Child) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + Duration::from_millis(500);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            _ => return None,
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stdins.clear();
        for child in &mut self.children {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}
