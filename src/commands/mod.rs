//! One file per verb; [`run`] dispatches and returns the exit status.

mod convert;
mod convert_format;
mod convert_v21;
pub mod dump;
pub mod info;
mod jobs;
mod merge;
mod profile;
pub mod reindex;

use std::io::{self, Write};

use anyhow::Context;

use crate::cli::{Cli, Command};

/// Process exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done.
    Ok = 0,
    /// An error stopped the run.
    Error = 1,
    /// Bad usage (clap also exits with 2).
    Usage = 2,
    /// Finished, but some bags failed or data was lost/dropped.
    Partial = 3,
    /// Stopped by SIGINT/SIGTERM at an episode boundary; the finished episodes are published
    /// (128 + SIGINT, the shell's convention).
    Interrupted = 130,
}

impl Exit {
    /// The status of a child `bag2dataset` (a `--jobs` part), if it is one of ours.
    fn from_code(code: Option<i32>) -> Option<Exit> {
        [
            Exit::Ok,
            Exit::Error,
            Exit::Usage,
            Exit::Partial,
            Exit::Interrupted,
        ]
        .into_iter()
        .find(|e| code == Some(*e as i32))
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e as u8)
    }
}

/// Runs one command.
pub fn run(cli: Cli) -> anyhow::Result<Exit> {
    crate::ros2::msgdef::set_msg_paths(cli.msg_paths.clone());
    match cli.command {
        Command::Info(args) => info_cmd(args),
        Command::Dump(args) => dump::run(args),
        Command::Convert(args) => convert::run_cmd(*args),
        Command::Reindex(args) => reindex::run(args),
        Command::Merge(args) => merge::run_cmd(args),
        Command::Validate(args) => validate_cmd(args),
        Command::ConvertFormat(args) => convert_format::run_cmd(args),
        Command::Profile(args) => profile::run_cmd(args),
        Command::MakeDemo(args) => {
            let summary = crate::demo::write_session_bag(&args.output, args.session)
                .with_context(|| format!("writing {}", args.output.display()))?;
            eprintln!(
                "wrote {} ({} bytes, {} messages in {} chunks)",
                args.output.display(),
                summary.bytes,
                summary.messages,
                summary.chunks
            );
            Ok(Exit::Ok)
        }
    }
}

fn info_cmd(args: crate::cli::InfoArgs) -> anyhow::Result<Exit> {
    let mut out = io::stdout().lock();
    let mut status = Exit::Ok;
    for (i, path) in args.bags.iter().enumerate() {
        let depth = info::InfoDepth {
            chunks: args.chunks,
        };
        match info::bag_info_with(path, depth) {
            Ok(bag) => {
                if let Some(note) = &bag.recovered {
                    eprintln!("warning: {}: {note}", path.display());
                }
                let text = if args.json {
                    serde_json::to_string(&bag).context("serialising info")? + "\n"
                } else {
                    (if i > 0 { "\n" } else { "" }).to_string() + &info::render_text(&bag)
                };
                if !write_stdout(&mut out, text.as_bytes())? {
                    return Ok(status);
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                status = Exit::Error;
            }
        }
    }
    Ok(status)
}

fn validate_cmd(args: crate::cli::ValidateArgs) -> anyhow::Result<Exit> {
    let v21 = crate::layout::is_v21(&args.dataset);
    let problems = if v21 {
        crate::layout::validate_v21(&args.dataset)?
    } else {
        crate::dataset::validate(&args.dataset)?
    };
    if problems.is_empty() {
        let version = if v21 { "v2.1" } else { "v3.0" };
        println!(
            "{}: valid LeRobot {version} dataset",
            args.dataset.display()
        );
        return Ok(Exit::Ok);
    }
    println!("{}: {} problem(s):", args.dataset.display(), problems.len());
    for p in &problems {
        println!("  - {p}");
    }
    Ok(Exit::Error)
}

/// Writes to stdout; a closed pipe (`| head`) is not an error: returns false to stop quietly.
fn write_stdout(out: &mut impl Write, bytes: &[u8]) -> anyhow::Result<bool> {
    match out.write_all(bytes) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("writing to stdout"),
    }
}

/// The run's ceiling from `--max-memory` (or `default`), checked against and capped by the
/// environment's memory limit (Slurm, cgroups; see [`crate::memory::limits`]).
fn ceiling_from_arg(
    arg: Option<&str>,
    default: u64,
) -> anyhow::Result<crate::memory::limits::Ceiling> {
    use crate::memory::limits;
    let given = arg
        .map(crate::memory::parse_size)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--max-memory: {e}"))?;
    Ok(limits::choose_ceiling(
        given,
        default,
        limits::environment_limit().as_ref(),
    )?)
}
