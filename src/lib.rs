//! bag2dataset: convert ROS1 `.bag` recordings into LeRobot v3.0 datasets chunk by chunk, under
//! a strict memory ceiling, and report the memory used.
//!
//! Pipeline (one module per stage, see docs/architecture.md):
//! `bag::index` (index section only) → `bag::chunk_reader` (one chunk at a time) → `align`
//! (per-topic windows → frames) → `dataset::writer` (Parquet + metadata), with `memory::budget`
//! bounding every buffer in bytes.

pub mod align;
pub mod bag;
pub mod cli;
pub mod commands;
pub mod convert;
pub mod dataset;
pub mod demo;
pub(crate) mod diag;
pub mod error;
pub mod input;
pub mod layout;
pub mod memory;
pub mod msg;
pub(crate) mod process;
pub(crate) mod progress;
pub mod ros2;
pub(crate) mod timefmt;
pub(crate) mod units;

pub use error::{Error, Result};

/// The `diag!` macro at the crate root (defined in [`diag`]).
pub(crate) use diag::diag;
