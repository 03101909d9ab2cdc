//! `convert --format v2.1`: the run converts into a v3.0 dataset in a work directory beside the
//! output (`<OUT>.v21-work`, the normal run: alignment, stats, memory ceiling, `--jobs`,
//! interruption), then lays that out as v2.1 (`crate::layout`) in `<OUT>.v21-staging`, which
//! is renamed onto the output. Appending: bags the output's conversion log already holds are
//! skipped here, only the new ones go into the work dataset, and the layout hard-links the
//! existing episodes and renumbers the new ones after them, so a nightly run costs its new
//! bags only. A kill at any point leaves the previous dataset whole; the next run cleans up.

use anyhow::Context;

use super::Exit;
use crate::cli::{ConvertArgs, VideoArgs};
use crate::convert::config::ConvertConfig;
use crate::convert::lock::OutputLock;
use crate::convert::manifest::{Manifest, config_hash, fingerprint};
use crate::convert::run::collect_bags;
use crate::diag;
use crate::layout::{
    Format, LayoutOptions, STAGING_SUFFIX, V21Base, is_v21, publish, recover, sibling, to_v21,
};

/// Suffix of the v3.0 work dataset beside the output.
const WORK_SUFFIX: &str = ".v21-work";
/// Suffix of the resolved config handed to the inner run.
const CONFIG_SUFFIX: &str = ".v21-config.toml";

/// Whether the run writes v2.1: `--format` (or the config's `format`) says so, or neither
/// says anything and the output already is a v2.1 dataset (a nightly run continues it). Asking
/// for v3.0 into an existing v2.1 dataset is refused rather than mixed.
pub(crate) fn wants_v21(
    args: &ConvertArgs,
    config: Option<&ConvertConfig>,
) -> anyhow::Result<bool> {
    let given = args
        .format
        .as_deref()
        .or_else(|| config.and_then(|c| c.format.as_deref()));
    let existing_v21 = !args.overwrite && !args.force && is_v21(&args.output);
    Ok(match given {
        Some(f) => {
            let v21 = Format::parse(f).context("--format")? == Format::V21;
            if !v21 && existing_v21 {
                anyhow::bail!(
                    "{} is a LeRobot v2.1 dataset: a v3.0 run cannot append to it (pass                      --format v2.1, or --overwrite to replace it)",
                    args.output.display()
                );
            }
            v21
        }
        None => existing_v21,
    })
}

fn remove_dir(p: &std::path::Path) -> anyhow::Result<()> {
    if p.exists() {
        std::fs::remove_dir_all(p).with_context(|| format!("removing {}", p.display()))?;
    }
    Ok(())
}

/// Runs `inner` (the normal v3.0 conversion) into the work directory, then lays the result
/// out as v2.1 onto `args.output`.
pub(crate) fn convert_v21(
    args: &ConvertArgs,
    ceiling: u64,
    config: Option<ConvertConfig>,
    inner: impl FnOnce(&ConvertArgs) -> anyhow::Result<Exit>,
) -> anyhow::Result<Exit> {
    let out = &args.output;
    let _lock = OutputLock::acquire(out)?;
    recover(out)?;
    let work = sibling(out, WORK_SUFFIX);
    let cfg_file = sibling(out, CONFIG_SUFFIX);
    remove_dir(&work)?;
    remove_dir(&sibling(&work, ".jobs"))?;
    let fresh = args.overwrite || args.force;
    let nonempty = std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_some());
    let base = if nonempty && !fresh {
        if !is_v21(out) {
            anyhow::bail!(
                "{} already holds something that is not a v2.1 dataset; pass --overwrite to \
                 replace it (or `convert-format` a v3.0 dataset to v2.1)",
                out.display()
            );
        }
        Some(V21Base::open(out)?)
    } else {
        None
    };
    let manifest = match &base {
        Some(_) => Some(Manifest::read(out)?.ok_or_else(|| {
            anyhow::anyhow!(
                "{}: has no conversion log (meta/{}), so it cannot be appended to; pass \
                 --overwrite to replace it",
                out.display(),
                crate::convert::manifest::MANIFEST_NAME
            )
        })?),
        None => None,
    };
    let mut cfg = match (config, &manifest) {
        (Some(c), _) => Some(c),
        (None, Some(m)) => Some(ConvertConfig::from_toml(
            &m.config,
            "the dataset's conversion log",
        )?),
        (None, None) => None,
    };
    if let Some(c) = &mut cfg {
        c.format = None;
    }
    let mut inputs = args.inputs.clone();
    let mut changed = 0usize;
    if let (Some(m), Some(c)) = (&manifest, &cfg) {
        let mut hashed = c.clone();
        if let Some(fps) = args.fps {
            hashed.fps = Some(fps);
        }
        let hash = config_hash(&hashed);
        if m.config_hash != hash {
            anyhow::bail!(
                "{}: was converted with another configuration (config hash {} in its log, {} \
                 now); a dataset holds one conversion: pass --force to reconvert the inputs \
                 into a fresh dataset, or write to another output",
                out.display(),
                &m.config_hash[..12.min(m.config_hash.len())],
                &hash[..12]
            );
        }
        let order = crate::convert::select::Order::parse(&args.order)
            .map_err(|e| anyhow::anyhow!("--order: {e}"))?
            .name();
        if m.order != order {
            anyhow::bail!(
                "{}: its episodes are ordered by {}, not {}; pass --order {} (or --force)",
                out.display(),
                m.order,
                order,
                m.order
            );
        }
        inputs.clear();
        let mut skipped = 0usize;
        for bag in collect_bags(&args.inputs, std::time::Duration::from_secs(args.settle))? {
            let abs = std::fs::canonicalize(&bag).unwrap_or(bag);
            let key = abs.display().to_string();
            match fingerprint(&abs) {
                Ok(id) if m.converted_with(&key, &id.fingerprint).is_some() => skipped += 1,
                Ok(_) if m.converted_at(&key).is_some() => {
                    changed += 1;
                    diag!(
                        "warning: {key}: changed since it was converted; a dataset does not \
                         replace episodes: pass --force to reconvert everything"
                    );
                }
                // Unreadable bags go to the run, which reports them as failed.
                _ => inputs.push(abs),
            }
        }
        if inputs.is_empty() {
            diag!(
                "dataset {}: nothing new to convert ({skipped} bags already in it)",
                out.display()
            );
            return Ok(if changed > 0 { Exit::Partial } else { Exit::Ok });
        }
    }
    let mut a = args.clone();
    a.output = work.clone();
    a.inputs = inputs;
    a.format = Some(Format::V30.name().to_string());
    a.overwrite = false;
    a.force = false;
    a.video = VideoArgs::default();
    if let Some(c) = &cfg {
        std::fs::write(&cfg_file, c.to_toml())
            .with_context(|| format!("writing {}", cfg_file.display()))?;
        a.config = Some(cfg_file.clone());
    }
    if let Some(b) = &base {
        // New episodes take the dataset's fps, and one run keeps the order simple.
        a.dataset_fps = Some(b.info.fps);
        a.jobs = Some(1);
    }
    let result = inner(&a);
    let _ = std::fs::remove_file(&cfg_file);
    let exit = match result {
        Ok(e) => e,
        Err(e) => {
            let _ = remove_dir(&work);
            return Err(e);
        }
    };
    if !work.join("meta/info.json").exists() {
        remove_dir(&work)?;
        return Ok(exit);
    }
    let log = match (manifest, Manifest::read(&work)?) {
        (Some(mut m), Some(w)) => {
            let offset = base.as_ref().map_or(0, |b| b.episodes);
            for mut e in w.bags {
                e.episode_index = e.episode_index.map(|i| i + offset);
                m.record(e);
            }
            m.config_hash = w.config_hash;
            m.tool_version = w.tool_version;
            m.sort();
            Some(m.to_json())
        }
        (None, w) => w.map(|w| w.to_json()),
        (Some(m), None) => Some(m.to_json()),
    };
    let staging = sibling(out, STAGING_SUFFIX);
    let opts = LayoutOptions {
        row_group_bytes: super::convert_format::layout_row_group_bytes(ceiling),
        ..LayoutOptions::default()
    };
    // The run's freed pages go back to the OS before the layout adds its own.
    crate::memory::stats::release_freed_pages();
    let laid = to_v21(&work, &staging, base.as_ref(), log, &opts);
    let s = match laid {
        Ok(s) => s,
        Err(e) => {
            let _ = remove_dir(&staging);
            let _ = remove_dir(&work);
            return Err(e.into());
        }
    };
    publish(&staging, out)?;
    remove_dir(&work)?;
    diag!(
        "dataset {} (LeRobot v2.1): {} episodes, {} frames, {} tasks{}",
        out.display(),
        s.episodes,
        s.frames,
        s.tasks,
        if s.videos > 0 {
            format!(", {} videos", s.videos)
        } else {
            String::new()
        }
    );
    Ok(if changed > 0 && exit == Exit::Ok {
        Exit::Partial
    } else {
        exit
    })
}
