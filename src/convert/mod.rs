//! Conversion: config, zero-config mapping, and the reader → aligner → writer pipeline.

pub mod config;
pub mod image;
pub mod mapping;
pub mod pipeline;
pub mod plan;
pub mod run;
