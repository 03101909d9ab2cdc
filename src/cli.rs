//! Raw command-line input (clap types). Validation into configuration types happens in the
//! commands, so library code never sees unchecked CLI strings.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Convert ROS1 bags into LeRobot v3.0 datasets under a strict memory ceiling.
#[derive(Debug, Parser)]
#[command(name = "bag2dataset", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    /// ROS 2: a directory of custom message definitions (`<pkg>/msg/<Type>.msg`,
    /// `<pkg>/srv/<Srv>.srv`) for bags that store none (repeatable).
    #[arg(long = "msg-path", global = true, value_name = "DIR")]
    pub(crate) msg_paths: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// What a bag holds, read from its index alone (milliseconds even for multi-GB bags).
    Info(InfoArgs),
    /// Decoded messages as JSON Lines, ordered by record time.
    Dump(DumpArgs),
    /// Convert bags (one episode each) into a LeRobot v3.0 dataset.
    Convert(Box<ConvertArgs>),
    /// Memory-profile a conversion (into a throw-away directory): memory per stage and the
    /// smallest --max-memory that works, verified.
    Profile(ProfileArgs),
    /// Write a repaired, indexed copy of a bag (e.g. an unclosed or truncated recording).
    Reindex(ReindexArgs),
    /// Join datasets (e.g. the shards of a `convert --shard` job) into one, episodes in bag
    /// order, as if converted in one run.
    Merge(MergeArgs),
    /// Check a dataset against the LeRobot v3.0 (or v2.1) rules; exit 1 if anything is wrong.
    Validate(ValidateArgs),
    /// Rewrite a dataset this tool made from one LeRobot layout version to the other
    /// (v3.0 → v2.1 or v2.1 → v3.0) without reading the bags again.
    ConvertFormat(ConvertFormatArgs),
    /// Write the built-in demo bag (what testdata/demo.bag is made from).
    MakeDemo(MakeDemoArgs),
}

#[derive(Debug, Args)]
pub(crate) struct InfoArgs {
    /// Bag files.
    #[arg(required = true)]
    pub(crate) bags: Vec<PathBuf>,
    /// One JSON object per bag (JSON Lines) instead of text.
    #[arg(long)]
    pub(crate) json: bool,
    /// Also read every chunk header and the index data after each chunk (ROS1): adds the
    /// chunks per compression and the decompressed bytes, and exact first/last times per
    /// topic, at the cost of reads all over the file.
    #[arg(long)]
    pub(crate) chunks: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DumpArgs {
    pub(crate) bag: PathBuf,
    /// Only these topics (repeatable); default all.
    #[arg(long = "topic", short = 't')]
    pub(crate) topics: Vec<String>,
    /// Stop after N messages.
    #[arg(long, short = 'n')]
    pub(crate) limit: Option<u64>,
    /// Skip messages earlier than this many seconds after the bag's start.
    #[arg(long)]
    pub(crate) start: Option<f64>,
    /// Skip messages later than this many seconds after the bag's start.
    #[arg(long)]
    pub(crate) end: Option<f64>,
    /// Decode every message (of the --topic's) without printing them; print counts per topic
    /// and the decode throughput as JSON (a benchmark of the decoder).
    #[arg(long, conflicts_with_all = ["limit", "start", "end"])]
    pub(crate) count: bool,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct ConvertArgs {
    /// Bag files or directories holding bags (searched for *.bag, sorted by path).
    #[arg(required = true)]
    pub(crate) inputs: Vec<PathBuf>,
    /// Output dataset directory. If it holds a dataset this tool converted, bags already in it
    /// are skipped and new ones appended as new episodes.
    #[arg(long, short = 'o')]
    pub(crate) output: PathBuf,
    /// TOML conversion config (features, timeline, fps, ...); without it the mapping is chosen
    /// from the first bag and printed.
    #[arg(long, short = 'c')]
    pub(crate) config: Option<PathBuf>,
    /// Print the chosen mapping as a TOML config to stdout and exit without converting.
    #[arg(long)]
    pub(crate) print_config: bool,
    /// Ceiling on the resident memory of the run (this process and the ffmpeg encoders it
    /// starts), e.g. 64MiB, 1G. Default 64MiB (with video: enough for one encoder per camera,
    /// printed in the summary), lowered to fit the job's limit when Slurm
    /// (SLURM_MEM_PER_NODE, SLURM_MEM_PER_CPU) or a cgroup sets one; a value above that limit is
    /// refused.
    #[arg(long)]
    pub(crate) max_memory: Option<String>,
    /// Output frame rate (overrides the config); default: the timeline topic's own rate.
    #[arg(long)]
    pub(crate) fps: Option<u32>,
    /// Task text for every episode (overrides the config).
    #[arg(long)]
    pub(crate) task: Option<String>,
    /// Replace an existing output directory (convert every input again into a fresh dataset).
    #[arg(long)]
    pub(crate) overwrite: bool,
    /// Convert even though the output was made with another config: like --overwrite, the
    /// inputs go into a fresh dataset that replaces it.
    #[arg(long)]
    pub(crate) force: bool,
    /// Reconvert a bag that changed since it was converted (e.g. a copy that was still
    /// running) into its own episode, keeping every other episode: the dataset is rewritten
    /// once, no other bag is read. Without it such a bag is refused (and listed as failed).
    #[arg(long)]
    pub(crate) replace_changed: bool,
    /// Stop at the first bag that fails (exit 1) without publishing anything.
    #[arg(long)]
    pub(crate) fail_fast: bool,
    /// Episode order: `path` (sorted bag paths) or `start-time` (bag start time from its index).
    #[arg(long, default_value = "path")]
    pub(crate) order: String,
    /// Convert only shard K of N (1-based) of the ordered inputs: bags at positions i with
    /// i % N == K-1. `auto` reads SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT, else
    /// JOB_COMPLETION_INDEX with --shard-count or BAG2DATASET_SHARD_COUNT.
    #[arg(long)]
    pub(crate) shard: Option<String>,
    /// Number of shards for `--shard auto` (overrides the environment's count).
    #[arg(long)]
    pub(crate) shard_count: Option<usize>,
    /// Seconds a file found in a directory or by a glob must have gone unchanged (size, data,
    /// metadata) to be converted; newer files are still being written or copied and are left
    /// for the next run (reported as `settling`). Files named one by one are always taken.
    /// Also read from BAG2DATASET_SETTLE.
    #[arg(
        long,
        default_value_t = 60,
        value_name = "SECONDS",
        env = "BAG2DATASET_SETTLE"
    )]
    pub(crate) settle: u64,
    /// Also write diagnostics (progress, summary, errors), timestamped, to this file (appended).
    #[arg(long)]
    pub(crate) log_file: Option<PathBuf>,
    /// Convert this many bags at once, each under an equal share of --max-memory (at least 40
    /// MiB each: fewer jobs run when the ceiling is smaller); a fresh output in path order only.
    /// Default: the number of cores, as many as the ceiling allows (one at 64 MiB).
    #[arg(long)]
    pub(crate) jobs: Option<usize>,
    /// Internal (set by --jobs for its children): the dataset fps of an own-rate timeline.
    #[arg(long, hide = true)]
    pub(crate) dataset_fps: Option<u32>,
    /// Write one row of memory figures per chunk (CSV, or JSON Lines for .jsonl/.json).
    #[arg(long)]
    pub(crate) memory_log: Option<PathBuf>,
    /// Draw memory over the run as an SVG chart.
    #[arg(long)]
    pub(crate) memory_chart: Option<PathBuf>,
    /// Print the run report as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
    /// No progress or summary on stderr.
    #[arg(long, short = 'q')]
    pub(crate) quiet: bool,
    #[command(flatten)]
    pub(crate) video: VideoArgs,
    /// Dataset layout: v3.0 (default) or v2.1 (one parquet and one MP4 per episode, for
    /// trainers that read only LeRobot v2.1); also `format = "v2.1"` in the config.
    #[arg(long)]
    pub(crate) format: Option<String>,
}

/// Video storage of camera features (needs ffmpeg).
#[derive(Debug, Clone, Args, Default)]
pub(crate) struct VideoArgs {
    /// Store camera features as MP4 video (dtype "video") instead of images in the parquet;
    /// needs ffmpeg with the codec's encoder.
    #[arg(long)]
    pub(crate) video: bool,
    /// Video codec: av1 (libsvtav1, lerobot's default), h264 (libx264) or hevc (libx265).
    #[arg(long, value_enum)]
    pub(crate) vcodec: Option<VideoCodecArg>,
    /// Video constant rate factor (lower = better and bigger); default 30.
    #[arg(long)]
    pub(crate) crf: Option<u32>,
    /// Keyframe interval in frames; default 2 (fast random access, what lerobot uses).
    #[arg(long)]
    pub(crate) gop: Option<u32>,
}

/// Video codec named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum VideoCodecArg {
    Av1,
    H264,
    Hevc,
}

#[derive(Debug, Args)]
pub(crate) struct ProfileArgs {
    #[arg(required = true)]
    pub(crate) bags: Vec<PathBuf>,
    #[arg(long, short = 'c')]
    pub(crate) config: Option<PathBuf>,
    /// Ceiling for the profiling run (large, so that nothing is constrained; default 1GiB, or
    /// what the job's limit allows).
    #[arg(long)]
    pub(crate) max_memory: Option<String>,
    /// Skip converting again at the smallest ceiling found.
    #[arg(long)]
    pub(crate) no_verify: bool,
    /// The report as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
    /// Profile a video conversion (`convert --video`): the smallest ceiling then covers the
    /// ffmpeg encoders too (at least one of them besides the converter).
    #[arg(long)]
    pub(crate) video: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ReindexArgs {
    /// The bag to repair (unindexed, truncated, or with a damaged index).
    pub(crate) bag: PathBuf,
    /// Where to write the repaired copy (must not be the source).
    #[arg(long, short = 'o')]
    pub(crate) output: PathBuf,
    /// Chunk compression of the copy; default: what most of the source's chunks use.
    #[arg(long, value_enum)]
    pub(crate) compression: Option<CompressionArg>,
}

/// Chunk compression named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CompressionArg {
    None,
    Bz2,
    Lz4,
}

#[derive(Debug, Args)]
pub(crate) struct MergeArgs {
    /// Datasets to join (each written by `convert`, with its conversion log).
    #[arg(required = true)]
    pub(crate) datasets: Vec<PathBuf>,
    /// Output dataset directory (must not exist unless --overwrite).
    #[arg(long, short = 'o')]
    pub(crate) output: PathBuf,
    /// Replace an existing output dataset.
    #[arg(long)]
    pub(crate) overwrite: bool,
    /// Ceiling on resident memory; sizes the Parquet row groups as `convert` does (default
    /// 64MiB, or what the job's limit allows).
    #[arg(long)]
    pub(crate) max_memory: Option<String>,
    /// Print the merge report as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
    /// No progress or summary on stderr.
    #[arg(long, short = 'q')]
    pub(crate) quiet: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    pub(crate) dataset: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct MakeDemoArgs {
    /// Where to write the bag.
    #[arg(default_value = "testdata/demo.bag")]
    pub(crate) output: PathBuf,
    /// Write recording session N of the demo robot instead (0 is the demo bag; N starts N hours
    /// later and drops another camera frame): distinct bags of one setup, for scaling tests.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub(crate) session: u64,
}

#[derive(Debug, Args)]
pub(crate) struct ConvertFormatArgs {
    /// Dataset written by `convert` (v3.0 or v2.1).
    pub(crate) input: PathBuf,
    /// Output dataset directory (must not exist unless --overwrite).
    #[arg(long, short = 'o')]
    pub(crate) output: PathBuf,
    /// Layout to write: v2.1 or v3.0.
    #[arg(long)]
    pub(crate) to: String,
    /// Replace an existing output dataset.
    #[arg(long)]
    pub(crate) overwrite: bool,
    /// Ceiling on resident memory (of this process and its ffmpeg children); sizes row groups.
    /// Default 64MiB, plus one planned ffmpeg stream copy for a video dataset; capped by the
    /// job's limit (Slurm, cgroup) like `convert`'s.
    #[arg(long)]
    pub(crate) max_memory: Option<String>,
}
