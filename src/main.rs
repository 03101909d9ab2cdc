//! The `bag2dataset` binary: parse, run, map errors to exit codes. Everything else is in the
//! library.

use std::process::ExitCode;

use bag2dataset::cli::Cli;
use clap::Parser;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc options: return freed pages to the OS within half a second (default 10 s), so the
/// resident set follows what is really allocated and stays under `--max-memory`.
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static MALLOC_CONF: &[u8] = b"dirty_decay_ms:500,muzzy_decay_ms:0\0";

fn main() -> ExitCode {
    let cli = Cli::parse();
    match bag2dataset::commands::run(cli) {
        Ok(code) => code.into(),
        Err(e) => {
            eprintln!("error: {e:#}");
            bag2dataset::commands::Exit::Error.into()
        }
    }
}
