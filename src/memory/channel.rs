//! Channels whose items hold budget bytes. A [`BudgetedSender`] pairs a channel with its
//! [`Budget`]: an item can only be sent together with a [`Permit`] for its bytes, taken here
//! (waiting for room) or carried over from an earlier stage, so "every item in flight is
//! counted" is enforced by the type rather than by each call site.

use crossbeam_channel::{Receiver, Sender, unbounded};

use super::budget::{Budget, Permit};
use crate::error::{Error, Result};

/// An item and the bytes it holds while in flight; dropping it returns them.
#[derive(Debug)]
pub(crate) struct Budgeted<T> {
    pub(crate) item: T,
    pub(crate) permit: Permit,
}

/// The sending side of a budgeted channel.
pub(crate) struct BudgetedSender<T> {
    tx: Sender<Budgeted<T>>,
    budget: Budget,
}

/// The receiving side: items arrive with their permits.
pub(crate) type BudgetedReceiver<T> = Receiver<Budgeted<T>>;

/// A channel bounded in bytes by `budget` (not in items: items differ in size by 10^4).
pub(crate) fn budgeted<T>(budget: Budget) -> (BudgetedSender<T>, BudgetedReceiver<T>) {
    let (tx, rx) = unbounded();
    (BudgetedSender { tx, budget }, rx)
}

impl<T> BudgetedSender<T> {
    /// Waits for `bytes` of the budget, then sends `item` holding them. Fails with
    /// [`Error::OverBudget`] for an item that can never fit (named by `what`), and with
    /// [`Error::Cancelled`] when the budget was cancelled or the receiver is gone.
    pub(crate) fn send(&self, item: T, bytes: u64, what: impl FnOnce() -> String) -> Result<()> {
        let permit = self.budget.acquire(bytes, what)?;
        self.forward(Budgeted { item, permit })
    }

    /// Takes `bytes` for an item that will be sent later (e.g. held back for `trim_end`).
    pub(crate) fn reserve(&self, bytes: u64, what: impl FnOnce() -> String) -> Result<Permit> {
        self.budget.acquire(bytes, what)
    }

    /// Sends an item with the permit it already holds (handed on from the previous stage, or
    /// from [`Self::reserve`]).
    pub(crate) fn forward(&self, item: Budgeted<T>) -> Result<()> {
        self.tx.send(item).map_err(|_| Error::Cancelled)
    }

    /// Sends a marker that holds no memory of its own (end of stream, watermarks).
    pub(crate) fn send_marker(&self, item: T) -> Result<()> {
        self.forward(Budgeted {
            item,
            permit: Permit::none(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_hold_their_bytes_until_dropped() {
        let b = Budget::new("test", 100, 1000);
        let (tx, rx) = budgeted::<u32>(b.clone());
        tx.send(1, 60, || "one".into()).unwrap();
        tx.send_marker(2).unwrap();
        assert_eq!(b.used(), 60);
        // An item that can never fit is refused, not waited for.
        assert!(matches!(
            tx.send(3, 200, || "three".into()),
            Err(Error::OverBudget { .. })
        ));
        let first = rx.recv().unwrap();
        assert_eq!((first.item, first.permit.bytes()), (1, 60));
        drop(first);
        assert_eq!(b.used(), 0);
        let p = tx.reserve(30, || "held".into()).unwrap();
        tx.forward(Budgeted { item: 4, permit: p }).unwrap();
        assert_eq!(b.used(), 30);
        drop(rx);
        assert!(matches!(tx.send_marker(5), Err(Error::Cancelled)));
    }
}
