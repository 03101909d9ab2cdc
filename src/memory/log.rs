//! The per-chunk memory timeline: one row per chunk read, written to `--memory-log` (CSV, or
//! JSON Lines for `.jsonl`/`.json`) as it happens, a bounded series kept for `--memory-chart`,
//! and the figures of the summary (peak, largest per-chunk increase).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use serde::Serialize;

use super::MemorySnapshot;
use crate::error::{Error, Result};

/// Points kept for the chart; the series is halved when full, so memory stays bounded.
const MAX_CHART_POINTS: usize = 2048;

/// One row of the timeline.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ChunkRow {
    /// Episode (bag) number in this run.
    episode: usize,
    /// Chunk number within the bag's index.
    chunk: usize,
    start_ns: u64,
    end_ns: u64,
    /// Bytes read from storage for this chunk: its stored (compressed) data, and for a ROS1
    /// chunk read whole in the pass, its record header and index data too.
    bytes_read: u64,
    /// Frames written so far in this run.
    frames_written: u64,
    rss_anon: u64,
    rss_file: u64,
    allocated: u64,
    resident: u64,
    /// Change of jemalloc `allocated` since the previous row (what the chunk left behind).
    increase: i64,
    /// Summed RSS of the child processes (ffmpeg encoders) at this row; the tree's RSS is
    /// `rss_anon + rss_file + children_rss`.
    children_rss: u64,
}

impl ChunkRow {
    /// RSS of this process and its children.
    fn tree_rss(&self) -> u64 {
        self.rss_anon + self.rss_file + self.children_rss
    }
}

enum Sink {
    None,
    Csv(BufWriter<File>),
    Jsonl(BufWriter<File>),
}

/// Collects rows; see the module docs.
pub(crate) struct MemoryLog {
    sink: Sink,
    path: Option<std::path::PathBuf>,
    last_allocated: Option<u64>,
    /// Every `stride`-th row is kept for the chart.
    stride: usize,
    seen: usize,
    pub(crate) chart: Vec<ChunkRow>,
    pub(crate) max_increase: i64,
    pub(crate) max_increase_chunk: Option<(usize, usize)>,
    pub(crate) rows: usize,
}

impl MemoryLog {
    /// A log writing to `path` (if any).
    pub(crate) fn create(path: Option<&Path>) -> Result<MemoryLog> {
        let sink = match path {
            None => Sink::None,
            Some(p) => {
                let f = File::create(p).map_err(|e| Error::io(p, e))?;
                let mut w = BufWriter::new(f);
                let json = matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("jsonl" | "json" | "ndjson")
                );
                if json {
                    Sink::Jsonl(w)
                } else {
                    writeln!(
                        w,
                        "episode,chunk,start_ns,end_ns,bytes_read,frames_written,rss_anon,rss_file,allocated,resident,increase,children_rss"
                    )
                    .map_err(|e| Error::io(p, e))?;
                    Sink::Csv(w)
                }
            }
        };
        Ok(MemoryLog {
            sink,
            path: path.map(Path::to_path_buf),
            last_allocated: None,
            stride: 1,
            seen: 0,
            chart: Vec::new(),
            max_increase: 0,
            max_increase_chunk: None,
            rows: 0,
        })
    }

    /// Records one chunk; `children_rss` is the summed RSS of the child processes.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn record(
        &mut self,
        episode: usize,
        chunk: usize,
        start_ns: u64,
        end_ns: u64,
        bytes_read: u64,
        frames_written: u64,
        s: &MemorySnapshot,
        children_rss: u64,
    ) -> Result<()> {
        let increase = self
            .last_allocated
            .map_or(0, |l| s.allocated as i64 - l as i64);
        self.last_allocated = Some(s.allocated);
        let row = ChunkRow {
            episode,
            chunk,
            start_ns,
            end_ns,
            bytes_read,
            frames_written,
            rss_anon: s.rss_anon,
            rss_file: s.rss_file,
            allocated: s.allocated,
            resident: s.resident,
            increase,
            children_rss,
        };
        if increase > self.max_increase {
            self.max_increase = increase;
            self.max_increase_chunk = Some((episode, chunk));
        }
        self.rows += 1;
        let io = |e| Error::io(self.path.clone().unwrap_or_default(), e);
        match &mut self.sink {
            Sink::None => {}
            Sink::Csv(w) => writeln!(
                w,
                "{},{},{},{},{},{},{},{},{},{},{},{}",
                row.episode,
                row.chunk,
                row.start_ns,
                row.end_ns,
                row.bytes_read,
                row.frames_written,
                row.rss_anon,
                row.rss_file,
                row.allocated,
                row.resident,
                row.increase,
                row.children_rss
            )
            .map_err(io)?,
            Sink::Jsonl(w) => {
                let line = serde_json::to_string(&row).unwrap_or_default();
                writeln!(w, "{line}").map_err(io)?
            }
        }
        if self.seen.is_multiple_of(self.stride) {
            self.chart.push(row);
            if self.chart.len() >= MAX_CHART_POINTS {
                let mut i = 0;
                self.chart.retain(|_| {
                    i += 1;
                    i % 2 == 1
                });
                self.stride *= 2;
            }
        }
        self.seen += 1;
        Ok(())
    }

    /// Flushes the file.
    pub(crate) fn finish(&mut self) -> Result<()> {
        let path = self.path.clone().unwrap_or_default();
        match &mut self.sink {
            Sink::Csv(w) | Sink::Jsonl(w) => w.flush().map_err(|e| Error::io(path, e)),
            Sink::None => Ok(()),
        }
    }
}

/// Draws RSS (anonymous, file-backed) and jemalloc allocated over the run, with the ceiling;
/// with child processes also the tree's RSS (this process plus the children), the tree's peak
/// and each kind of child's peak (`children`: label, peak RSS).
pub(crate) fn render_svg(
    rows: &[ChunkRow],
    ceiling: u64,
    peak_rss: u64,
    peak_tree: u64,
    children: &[(String, u64)],
) -> String {
    let (w, h, left, bottom, top) = (900.0, 420.0, 70.0, 40.0, 30.0);
    let plot_w = w - left - 20.0;
    let plot_h = h - bottom - top;
    let ymax = rows
        .iter()
        .map(ChunkRow::tree_rss)
        .chain([ceiling, peak_rss, peak_tree])
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.1;
    let n = rows.len().max(2) as f64 - 1.0;
    let x = |i: usize| left + plot_w * i as f64 / n;
    let y = |v: u64| top + plot_h * (1.0 - v as f64 / ymax);
    let line = |f: &dyn Fn(&ChunkRow) -> u64| {
        rows.iter()
            .enumerate()
            .map(|(i, r)| format!("{:.1},{:.1}", x(i), y(f(r))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mib = |v: f64| v / 1048576.0;
    let tree = if children.is_empty() {
        String::new()
    } else {
        format!(", tree peak {:.1} MiB", mib(peak_tree as f64))
    };
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{left}\" y=\"18\" font-size=\"14\">bag2dataset memory per chunk (peak RSS {:.1} MiB{tree}, ceiling {:.1} MiB)</text>\n",
        mib(peak_rss as f64),
        mib(ceiling as f64)
    );
    // Each kind of child's peak, as the share of the tree it took.
    for (k, (label, rss)) in children.iter().enumerate() {
        s += &format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" fill=\"#8c564b\">{}: peak {:.1} MiB</text>\n",
            left + 10.0,
            top + 14.0 + 13.0 * k as f64,
            xml_escape(label),
            mib(*rss as f64)
        );
    }
    for k in 0..=4 {
        let v = ymax * k as f64 / 4.0;
        let yy = y(v as u64);
        s += &format!(
            "<line x1=\"{left}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" stroke=\"#ddd\"/><text x=\"4\" y=\"{:.1}\">{:.0} MiB</text>\n",
            left + plot_w,
            yy + 4.0,
            mib(v)
        );
    }
    s += &format!(
        "<line x1=\"{left}\" y1=\"{0:.1}\" x2=\"{1:.1}\" y2=\"{0:.1}\" stroke=\"red\" stroke-dasharray=\"6,4\"/><text x=\"{2:.1}\" y=\"{3:.1}\" fill=\"red\">ceiling</text>\n",
        y(ceiling),
        left + plot_w,
        left + plot_w - 50.0,
        y(ceiling) - 4.0
    );
    type Series<'a> = (&'a str, &'a str, &'a dyn Fn(&ChunkRow) -> u64);
    let mut series: Vec<Series> = Vec::new();
    if !children.is_empty() {
        series.push(("tree RSS (with children)", "#8c564b", &ChunkRow::tree_rss));
    }
    for (label, color, f) in series.into_iter().chain([
        (
            "RSS total",
            "#1f77b4",
            &(|r: &ChunkRow| r.rss_anon + r.rss_file) as &dyn Fn(&ChunkRow) -> u64,
        ),
        ("RSS anon", "#2ca02c", &|r: &ChunkRow| r.rss_anon),
        ("RSS file", "#ff7f0e", &|r: &ChunkRow| r.rss_file),
        ("jemalloc allocated", "#9467bd", &|r: &ChunkRow| r.allocated),
    ]) {
        s += &format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/>\n",
            line(f)
        );
        let _ = label;
    }
    let mut lx = left;
    let tree_legend = (!children.is_empty()).then_some(("tree RSS", "#8c564b"));
    for (label, color) in tree_legend.into_iter().chain([
        ("RSS total", "#1f77b4"),
        ("RSS anon", "#2ca02c"),
        ("RSS file", "#ff7f0e"),
        ("jemalloc allocated", "#9467bd"),
    ]) {
        s += &format!(
            "<rect x=\"{lx}\" y=\"{0}\" width=\"12\" height=\"4\" fill=\"{color}\"/><text x=\"{1}\" y=\"{2}\">{label}</text>\n",
            h - 14.0,
            lx + 16.0,
            h - 9.0
        );
        lx += if tree_legend.is_some() { 125.0 } else { 150.0 };
    }
    s += &format!(
        "<text x=\"{:.1}\" y=\"{:.1}\">chunks read →</text>\n</svg>\n",
        left + plot_w - 90.0,
        h - 24.0
    );
    s
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
