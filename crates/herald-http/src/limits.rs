//! Admission of subscribers: at most so many streams in total and per client IP address.
//!
//! A slot is taken when a stream starts and given back when its response body is dropped (the
//! client left, the stream ended, or the server shut down), so the counts are exact.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Why a subscriber was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The hub holds its maximum of streams (answer 503).
    HubFull,
    /// This address holds its maximum of streams (answer 429).
    AddressFull,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// Counts open streams against the limits.
#[derive(Debug, Clone)]
pub struct Admission {
    max_total: usize,
    max_per_ip: usize,
    counts: Arc<Mutex<Counts>>,
}

impl Admission {
    /// Limits of `max_total` streams and `max_per_ip` per address (0: no limit).
    pub fn new(max_total: usize, max_per_ip: usize) -> Self {
        Self {
            max_total,
            max_per_ip,
            counts: Arc::default(),
        }
    }

    /// Takes a slot for a stream from `ip` (`None` when the address is unknown, e.g. the router
    /// is served by another server: only the total limit applies).
    pub fn admit(&self, ip: Option<IpAddr>) -> Result<Slot, Refusal> {
        let mut counts = self.lock();
        if self.max_total != 0 && counts.total >= self.max_total {
            return Err(Refusal::HubFull);
        }
        if let Some(ip) = ip {
            let n = counts.by_ip.entry(ip).or_insert(0);
            if self.max_per_ip != 0 && *n >= self.max_per_ip {
                return Err(Refusal::AddressFull);
            }
            *n += 1;
        }
        counts.total += 1;
        Ok(Slot {
            admission: self.clone(),
            ip,
        })
    }

    /// Streams open now.
    pub fn open_streams(&self) -> usize {
        self.lock().total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// An admitted stream; dropping it gives the slot back.
#[derive(Debug)]
pub struct Slot {
    admission: Admission,
    ip: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.admission.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(ip) = self.ip {
            if let Some(n) = counts.by_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    counts.by_ip.remove(&ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_release() {
        let a = Admission::new(3, 2);
        let ip1: IpAddr = "127.0.0.1".parse().unwrap();
        let ip2: IpAddr = "127.0.0.2".parse().unwrap();
        let s1 = a.admit(Some(ip1)).unwrap();
        let _s2 = a.admit(Some(ip1)).unwrap();
        assert_eq!(a.admit(Some(ip1)).unwrap_err(), Refusal::AddressFull);
        let _s3 = a.admit(Some(ip2)).unwrap();
        assert_eq!(a.admit(Some(ip2)).unwrap_err(), Refusal::HubFull);
        drop(s1);
        assert_eq!(a.open_streams(), 2);
        let _s4 = a.admit(Some(ip1)).unwrap();
        assert_eq!(Admission::new(0, 0).admit(None).map(|_| ()), Ok(()));
    }
}
