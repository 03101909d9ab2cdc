//! Conversion: config, zero-config mapping, and the reader → aligner → writer pipeline.

pub mod config;
pub mod mapping;
