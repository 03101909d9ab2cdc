//! Conversion: config, zero-config mapping, and the reader → aligner → writer pipeline.

pub mod config;
pub mod damage;
pub mod image;
pub mod lock;
pub mod manifest;
pub mod mapping;
pub mod merge;
pub mod monitor;
pub mod pipeline;
pub mod plan;
pub mod replace;
pub mod run;
pub mod select;
pub mod source;
