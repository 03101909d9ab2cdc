//! Conversion: config, zero-config mapping, and the reader → aligner → writer pipeline.

pub mod config;
mod damage;
mod image;
pub(crate) mod lock;
pub(crate) mod manifest;
mod mapping;
pub mod merge;
mod monitor;
mod pipeline;
mod plan;
pub(crate) mod replace;
pub mod run;
pub mod select;
pub(crate) mod source;
