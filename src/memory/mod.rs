//! Memory: byte budgets derived from the ceiling ([`budget`]), and measurement of what the
//! process really holds ([`stats`]).

pub mod budget;
pub mod channel;
pub mod limits;
pub mod log;
pub mod plan;
pub mod stats;
pub mod tree;

pub use budget::{Budget, Permit};
pub use channel::{Budgeted, BudgetedReceiver, BudgetedSender, budgeted};
pub use stats::{MemorySnapshot, release_freed_pages, snapshot};

pub use crate::units::{format_bytes, parse_size};

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
