//! bag2dataset: convert ROS1 `.bag` recordings into LeRobot v3.0 datasets chunk by chunk, under a
//! strict memory ceiling, and report the memory used.
//!
//! Pipeline (one module per stage, see docs/architecture.md):
//! `bag::index` (index section only) → `bag::chunk_reader` (one chunk at a time) → `align`
//! (per-topic windows → frames) → `dataset::writer` (Parquet + metadata), with `memory::budget`
//! bounding every buffer in bytes.

pub mod bag;
pub mod dataset;
pub mod error;
pub mod msg;

pub use error::{Error, Result};
