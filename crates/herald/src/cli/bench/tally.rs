//! What one fan-out subscriber counted, and where each update it receives falls in its topic's
//! sequence.
//!
//! A subscriber knows its topic `t` and expects the sequence numbers `s` with `s % K == t`, at
//! positions `s / K`. It keeps the highest position seen so far and a 128-position window below
//! it, which tells a duplicate (seen before) from an update that arrives late (out of order:
//! publishes run concurrently, so the hub may commit them in another order than they were
//! numbered). A hash of the arrival order lets the parent check that every subscriber of a topic
//! saw the one order of the hub's log.

/// What one subscriber counted.
#[derive(Debug, Default, Clone)]
pub(super) struct Tally {
    /// Its topic.
    pub topic: u64,
    /// Whether it stalls after its first event (then nothing else is counted).
    pub stalls: bool,
    /// Whether its first connection succeeded.
    pub connected: bool,
    /// Distinct updates received.
    pub unique: u64,
    /// Updates received again.
    pub duplicates: u64,
    /// Updates that arrived after a later one.
    pub out_of_order: u64,
    /// The highest position (sequence number / K) received, plus one; 0 before any.
    high: u64,
    /// Bit `b`: position `high - 1 - b` was received.
    window: u128,
    /// A hash of the positions in the order they arrived (duplicates left out): subscribers of a
    /// topic that received the same updates in the hub's one log order agree on it.
    pub order: u64,
    /// Updates expected, once the parent said how many were published.
    pub expected: u64,
    /// Whether `unique` reached `expected` (counted once in [`Shared::incomplete`]).
    pub complete: bool,
}

/// Where an update arrived in its subscriber's sequence.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Arrival {
    /// After every earlier one received so far.
    InOrder,
    /// After a later one: new, but out of order.
    Late,
    /// Received before.
    Duplicate,
}

impl Tally {
    /// A subscriber of `topic` that stalls or not, before its connection.
    pub(super) fn new(topic: u64, stalls: bool) -> Self {
        Self {
            topic,
            stalls,
            ..Self::default()
        }
    }

    /// Records that the update at `position` of the subscriber's topic arrived.
    pub(super) fn arrive(&mut self, position: u64) -> Arrival {
        let arrival = self.place(position);
        if arrival != Arrival::Duplicate {
            // FNV-1a over the positions.
            self.order = (self.order ^ position).wrapping_mul(0x0000_0100_0000_01B3);
        }
        arrival
    }

    fn place(&mut self, position: u64) -> Arrival {
        let next = position.saturating_add(1);
        if next > self.high {
            let shift = next - self.high;
            self.window = if shift >= 128 {
                0
            } else {
                self.window << shift
            };
            self.window |= 1;
            self.high = next;
            self.unique += 1;
            return Arrival::InOrder;
        }
        let back = self.high - next;
        if back >= 128 {
            // Too far back to tell: counted as new (a duplicate this old shows up as `unexpected`
            // when the totals exceed what was published).
            self.unique += 1;
            self.out_of_order += 1;
            return Arrival::Late;
        }
        let bit = 1u128 << back;
        if self.window & bit != 0 {
            self.duplicates += 1;
            Arrival::Duplicate
        } else {
            self.window |= bit;
            self.unique += 1;
            self.out_of_order += 1;
            Arrival::Late
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_tells_late_from_duplicate() {
        let mut t = Tally::default();
        assert_eq!(t.arrive(0), Arrival::InOrder);
        assert_eq!(t.arrive(2), Arrival::InOrder);
        assert_eq!(t.arrive(1), Arrival::Late);
        assert_eq!(t.arrive(1), Arrival::Duplicate);
        assert_eq!(t.arrive(2), Arrival::Duplicate);
        assert_eq!(t.arrive(0), Arrival::Duplicate);
        assert_eq!(t.arrive(3), Arrival::InOrder);
        assert_eq!((t.unique, t.duplicates, t.out_of_order), (4, 3, 1));
        // A jump past the window forgets what was below it.
        assert_eq!(t.arrive(1000), Arrival::InOrder);
        assert_eq!(t.arrive(999), Arrival::Late);
        assert_eq!(t.arrive(873), Arrival::Late);
        assert_eq!(t.arrive(872), Arrival::Late);
        assert_eq!(t.arrive(873), Arrival::Duplicate);
        assert_eq!((t.unique, t.duplicates, t.out_of_order), (8, 4, 4));
    }

    #[test]
    fn order_hash_depends_on_the_order_only() {
        let hash = |positions: &[u64]| {
            let mut t = Tally::default();
            for &p in positions {
                t.arrive(p);
            }
            t.order
        };
        assert_eq!(hash(&[0, 1, 2, 3]), hash(&[0, 1, 1, 2, 3, 0]));
        assert_ne!(hash(&[0, 1, 2, 3]), hash(&[0, 2, 1, 3]));
    }

    #[test]
    fn a_first_update_above_zero_is_in_order() {
        let mut t = Tally::default();
        assert_eq!(t.arrive(5), Arrival::InOrder);
        assert_eq!(t.arrive(5), Arrival::Duplicate);
        assert_eq!(t.arrive(4), Arrival::Late);
    }
}
