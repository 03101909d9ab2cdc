//! `bag2dataset merge`: datasets (e.g. shards) → one dataset, as one conversion would have made.

use std::io;

use super::{Exit, write_stdout};
use crate::cli::MergeArgs;
use crate::convert::merge::{MergeOptions, merge};
use crate::diag;
use crate::memory::parse_size;
use crate::memory::plan::MemoryPlan;
use crate::memory::sample;

pub fn run_cmd(args: MergeArgs) -> anyhow::Result<Exit> {
    let ceiling = parse_size(&args.max_memory).map_err(|e| anyhow::anyhow!("--max-memory: {e}"))?;
    diag::init(true, None, None)?;
    if args.datasets.iter().any(|d| crate::layout::is_v21(d)) {
        return super::convert_format::merge_v21(&args, ceiling);
    }
    // Writer buffers sized as a conversion under the same ceiling sizes them.
    let plan = MemoryPlan::new(ceiling, sample().rss(), 0, "nothing")?;
    let report = merge(&MergeOptions {
        inputs: args.datasets.clone(),
        output: args.output.clone(),
        overwrite: args.overwrite,
        buffer_bytes: crate::convert::run::stable_buffer_bytes(plan.writer_buffer_bytes),
        progress: !args.quiet && !args.json,
    })?;
    if args.json {
        let text = serde_json::to_string_pretty(&report)? + "\n";
        write_stdout(&mut io::stdout().lock(), text.as_bytes())?;
    } else if !args.quiet {
        diag!(
            "dataset {}: {} episodes, {} frames, {} tasks from {} datasets ({} failed bags listed)",
            report.output,
            report.episodes,
            report.frames,
            report.tasks,
            report.datasets,
            report.failed
        );
    }
    Ok(Exit::Ok)
}
