//! Byte budgets: a fixed number of bytes shared by the items of one buffer (a channel, a
//! window, the chunk in flight). Each item owns a [`Permit`] for its bytes; dropping the item
//! drops the permit and returns the bytes. Nobody decrements counters by hand.
//!
//! Policy for a full budget: [`Budget::acquire`] waits until enough bytes come back (a bounded
//! channel in bytes). An item larger than the whole budget is never admitted: it is a typed
//! [`Error::OverBudget`] naming the item, so a run can neither deadlock nor silently grow.

use std::sync::{Arc, Condvar, Mutex};

use crate::error::{Error, Result};

#[derive(Debug, Default)]
struct State {
    used: u64,
    peak: u64,
    /// Largest single item ever admitted.
    largest: u64,
    cancelled: bool,
}

#[derive(Debug)]
struct Inner {
    name: &'static str,
    capacity: u64,
    /// The whole ceiling, for error messages.
    ceiling: u64,
    state: Mutex<State>,
    freed: Condvar,
}

/// A shared byte budget; clones share the same bytes.
#[derive(Debug, Clone)]
pub(crate) struct Budget(Arc<Inner>);

/// Bytes held from a [`Budget`], returned on drop.
#[derive(Debug)]
pub(crate) struct Permit {
    budget: Option<Budget>,
    bytes: u64,
}

impl Budget {
    /// A budget of `capacity` bytes carved out of a memory ceiling of `ceiling` bytes.
    pub(crate) fn new(name: &'static str, capacity: u64, ceiling: u64) -> Self {
        Budget(Arc::new(Inner {
            name,
            capacity,
            ceiling,
            state: Mutex::new(State::default()),
            freed: Condvar::new(),
        }))
    }

    /// A budget that never limits (tests only).
    #[cfg(test)]
    pub(crate) fn unlimited(name: &'static str) -> Self {
        Self::new(name, u64::MAX / 4, u64::MAX / 4)
    }

    pub(crate) fn name(&self) -> &'static str {
        self.0.name
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.0.capacity
    }

    /// The run's whole ceiling, of which this budget is a share.
    pub(crate) fn ceiling(&self) -> u64 {
        self.0.ceiling
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the counters inconsistent (each update
        // is a single assignment), so a poisoned lock is still usable.
        self.0.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn used(&self) -> u64 {
        self.lock().used
    }

    /// Largest single item ever admitted.
    pub(crate) fn largest(&self) -> u64 {
        self.lock().largest
    }

    /// Most bytes ever held at once.
    pub(crate) fn peak(&self) -> u64 {
        self.lock().peak
    }

    fn too_big(&self, bytes: u64, item: &str) -> Error {
        Error::over_budget(item, bytes, self.0.capacity, self.0.ceiling)
    }

    /// Checks that an item of `bytes` could ever fit, without taking anything.
    pub(crate) fn check_fits(&self, bytes: u64, item: impl FnOnce() -> String) -> Result<()> {
        if bytes > self.0.capacity {
            return Err(self.too_big(bytes, &format!("{} ({} buffer)", item(), self.0.name)));
        }
        Ok(())
    }

    /// Takes `bytes`, waiting while the budget is full. Fails at once if the item can never
    /// fit, and when the budget was cancelled (the consumer went away).
    pub(crate) fn acquire(&self, bytes: u64, item: impl FnOnce() -> String) -> Result<Permit> {
        self.check_fits(bytes, item)?;
        let mut state = self.lock();
        while state.used + bytes > self.0.capacity && !state.cancelled {
            state = self.0.freed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        if state.cancelled {
            return Err(Error::Cancelled);
        }
        state.used += bytes;
        state.peak = state.peak.max(state.used);
        state.largest = state.largest.max(bytes);
        Ok(Permit {
            budget: Some(self.clone()),
            bytes,
        })
    }

    /// Takes `bytes` if they are free right now.
    pub(crate) fn try_acquire(&self, bytes: u64) -> Option<Permit> {
        let mut state = self.lock();
        if state.used + bytes > self.0.capacity || state.cancelled {
            return None;
        }
        state.used += bytes;
        state.peak = state.peak.max(state.used);
        state.largest = state.largest.max(bytes);
        Some(Permit {
            budget: Some(self.clone()),
            bytes,
        })
    }

    /// Whether [`Budget::cancel`] was called.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.lock().cancelled
    }

    /// Wakes every waiter with [`Error::Cancelled`]; used when a stage fails so that no other
    /// stage waits forever for bytes that will never come back.
    pub(crate) fn cancel(&self) {
        self.lock().cancelled = true;
        self.0.freed.notify_all();
    }

    fn give_back(&self, bytes: u64) {
        let mut state = self.lock();
        state.used = state.used.saturating_sub(bytes);
        drop(state);
        self.0.freed.notify_all();
    }
}

impl Permit {
    /// A permit that holds nothing (for items that live outside any budget).
    pub(crate) fn none() -> Self {
        Permit {
            budget: None,
            bytes: 0,
        }
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Takes `more` bytes into this permit when an item turns out bigger once read (a chunk
    /// whose decompressed size its header told). Never waits: the holder may be the one whose
    /// bytes would have to come back, so an item that does not fit now fails at once, named
    /// by `item` with its whole size.
    pub(crate) fn grow(&mut self, more: u64, item: impl FnOnce() -> String) -> Result<()> {
        let Some(budget) = &self.budget else {
            return Ok(());
        };
        let mut state = budget.lock();
        if state.used + more > budget.0.capacity {
            drop(state);
            let whole = self.bytes + more;
            return Err(budget.too_big(whole, &format!("{} ({} buffer)", item(), budget.0.name)));
        }
        state.used += more;
        state.peak = state.peak.max(state.used);
        state.largest = state.largest.max(self.bytes + more);
        drop(state);
        self.bytes += more;
        Ok(())
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(b) = self.budget.take() {
            b.give_back(self.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_permit_grows_only_into_free_bytes() {
        let b = Budget::new("test", 100, 1000);
        let mut p = b.acquire(30, || "a".into()).unwrap();
        p.grow(50, || "a".into()).unwrap();
        assert_eq!((b.used(), p.bytes(), b.largest()), (80, 80, 80));
        let err = p.grow(30, || "chunk 7".into()).unwrap_err().to_string();
        assert!(err.contains("chunk 7"), "{err}");
        assert_eq!(b.used(), 80, "a failed grow takes nothing");
        drop(p);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn permits_return_bytes_on_drop() {
        let b = Budget::new("test", 100, 1000);
        let p1 = b.acquire(60, || "a".into()).unwrap();
        assert!(b.try_acquire(50).is_none());
        let p2 = b.try_acquire(40).unwrap();
        assert_eq!(b.used(), 100);
        drop(p1);
        drop(p2);
        assert_eq!(b.used(), 0);
        assert_eq!(b.peak(), 100);
    }

    #[test]
    fn item_larger_than_budget_is_an_error_not_a_wait() {
        let b = Budget::new("chunk", 100, 1000);
        let e = b
            .acquire(101, || "chunk 3 at offset 4096".into())
            .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("chunk 3 at offset 4096"), "{msg}");
        assert!(msg.contains("--max-memory"), "{msg}");
    }

    #[test]
    fn waiter_wakes_when_bytes_come_back_or_on_cancel() {
        let b = Budget::new("chan", 10, 10);
        let held = b.acquire(10, || "x".into()).unwrap();
        let b2 = b.clone();
        let t = std::thread::spawn(move || b2.acquire(5, || "y".into()).map(|p| p.bytes()));
        std::thread::sleep(Duration::from_millis(20));
        drop(held);
        assert_eq!(t.join().unwrap().unwrap(), 5);

        let held = b.acquire(10, || "x".into()).unwrap();
        let b3 = b.clone();
        let t = std::thread::spawn(move || b3.acquire(5, || "y".into()).is_err());
        std::thread::sleep(Duration::from_millis(20));
        b.cancel();
        assert!(t.join().unwrap());
        drop(held);
    }
}
