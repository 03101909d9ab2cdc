//! Memory: byte budgets derived from the ceiling ([`budget`]), and measurement of what the
//! process really holds ([`stats`]).

mod budget;
mod channel;
pub(crate) mod limits;
pub(crate) mod log;
pub mod plan;
pub(crate) mod stats;
pub(crate) mod tree;

pub(crate) use budget::Budget;
pub(crate) use budget::Permit;
pub(crate) use channel::{Budgeted, BudgetedReceiver, BudgetedSender, budgeted};
pub(crate) use stats::release_freed_pages;
pub use stats::{MemorySnapshot, snapshot};

pub(crate) use crate::units::format_bytes;
pub use crate::units::parse_size;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_format() {
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("500MB").unwrap(), 500_000_000);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert_eq!(parse_size("123").unwrap(), 123);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("0").is_err());
        assert_eq!(format_bytes(64 << 20), "64.0 MiB");
        assert_eq!(format_bytes(100), "100 B");
    }
}
