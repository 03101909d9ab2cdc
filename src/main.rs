//! The `bag2dataset` binary: parse, run, map errors to exit codes. Everything else is in the
//! library.

use std::process::ExitCode;

use bag2dataset::cli::Cli;
use clap::Parser;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
