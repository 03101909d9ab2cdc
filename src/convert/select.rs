//! Which bags a run converts, in which order: episode order (bag path, or bag start time from
//! the index) and the deterministic shard subset (`--shard K/N`, or the scheduler's
//! environment).

use crate::error::{Error, Result};

/// Episode order of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// By absolute bag path (byte order).
    #[default]
    Path,
    /// By the bag's first message time (from its index); ties and unreadable bags by path,
    /// unreadable bags last.
    StartTime,
}

impl Order {
    /// `path` or `start-time`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Order::Path => "path",
            Order::StartTime => "start-time",
        }
    }

    /// Parses `path` / `start-time`.
    pub(crate) fn parse(s: &str) -> Result<Order> {
        match s {
            "path" => Ok(Order::Path),
            "start-time" => Ok(Order::StartTime),
            _ => Err(Error::Usage(format!(
                "order {s:?}: expected \"path\" or \"start-time\""
            ))),
        }
    }
}

/// One of `count` disjoint subsets of the ordered inputs: a contiguous block of them
/// ([`Shard::holds`]), so a shard's episodes are contiguous in the merged dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 1-based.
    index: usize,
    count: usize,
}

/// Environment variable giving the shard count with `JOB_COMPLETION_INDEX`.
const SHARD_COUNT_ENV: &str = "BAG2DATASET_SHARD_COUNT";

impl Shard {
    /// Parses `K/N` (1 ≤ K ≤ N).
    pub fn parse(s: &str) -> Result<Shard> {
        let bad = || Error::Usage(format!("shard {s:?}: expected K/N with 1 <= K <= N"));
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            k.trim().parse::<usize>().map_err(|_| bad())?,
            n.trim().parse::<usize>().map_err(|_| bad())?,
        );
        if index == 0 || count == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// The shard given by a scheduler's environment (`get` reads a variable), in this order:
    /// 1. Slurm job arrays: `SLURM_ARRAY_TASK_ID` (minus `SLURM_ARRAY_TASK_MIN`, default 0, so
    ///    `--array=0-3` and `--array=1-4` both work) and `SLURM_ARRAY_TASK_COUNT`;
    /// 2. Kubernetes Indexed Jobs: `JOB_COMPLETION_INDEX` (0-based) with the count from
    ///    `count` (`--shard-count`), else `BAG2DATASET_SHARD_COUNT`.
    pub(crate) fn from_env(
        count: Option<usize>,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Shard> {
        let num = |name: &str| -> Result<Option<usize>> {
            match get(name) {
                None => Ok(None),
                Some(v) => v.trim().parse::<usize>().map(Some).map_err(|_| {
                    Error::Usage(format!("{name}={v:?} is not a non-negative integer"))
                }),
            }
        };
        let checked = |index0: usize, count: usize, from: &str| {
            if count == 0 || index0 >= count {
                Err(Error::Usage(format!(
                    "{from}: shard {} of {count} does not exist",
                    index0 + 1
                )))
            } else {
                Ok(Shard {
                    index: index0 + 1,
                    count,
                })
            }
        };
        if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
            let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let n = count
                .or(num("SLURM_ARRAY_TASK_COUNT")?)
                .ok_or_else(|| Error::Usage("SLURM_ARRAY_TASK_COUNT is not set".into()))?;
            return checked(id.saturating_sub(min), n, "SLURM_ARRAY_TASK_ID");
        }
        if let Some(idx) = num("JOB_COMPLETION_INDEX")? {
            let n = count.or(num(SHARD_COUNT_ENV)?).ok_or_else(|| {
                Error::Usage(format!(
                    "JOB_COMPLETION_INDEX needs the shard count: --shard-count N or {SHARD_COUNT_ENV}"
                ))
            })?;
            return checked(idx, n, "JOB_COMPLETION_INDEX");
        }
        Err(Error::Usage(
            "--shard auto: neither SLURM_ARRAY_TASK_ID nor JOB_COMPLETION_INDEX is set".into(),
        ))
    }

    /// Whether the bag at position `i` of `total` ordered inputs belongs to this shard. Shards
    /// are contiguous blocks of the order (shard 1 the first `total / count` bags, give or take
    /// one), so a shard's episodes stay contiguous in the merged dataset and `merge` can take
    /// whole files of a shard (its videos) without rewriting them.
    pub(crate) fn holds(&self, i: usize, total: usize) -> bool {
        let (k, n) = (self.index - 1, self.count);
        i < total && k * total / n <= i && i < (k + 1) * total / n
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_inputs() {
        let shards: Vec<Shard> = (1..=3)
            .map(|k| Shard::parse(&format!("{k}/3")).unwrap())
            .collect();
        for total in 0..12 {
            for i in 0..total {
                assert_eq!(shards.iter().filter(|s| s.holds(i, total)).count(), 1);
            }
            // Sizes differ by at most one.
            let sizes: Vec<usize> = shards
                .iter()
                .map(|s| (0..total).filter(|&i| s.holds(i, total)).count())
                .collect();
            assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
        }
        // Contiguous blocks: 10 bags in 3 shards are 0-2, 3-5, 6-9.
        assert!(shards[0].holds(0, 10) && shards[0].holds(2, 10) && !shards[0].holds(3, 10));
        assert!(shards[1].holds(3, 10) && shards[1].holds(5, 10) && shards[2].holds(6, 10));
        assert!(shards[2].holds(9, 10) && !shards[2].holds(10, 10));
        assert!(Shard::parse("0/3").is_err());
        assert!(Shard::parse("4/3").is_err());
        assert!(Shard::parse("x").is_err());
    }

    #[test]
    fn shard_from_scheduler_environment() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let s = Shard::from_env(
            None,
            env(&[
                ("SLURM_ARRAY_TASK_ID", "1"),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
            ]),
        )
        .unwrap();
        assert_eq!(s, Shard { index: 2, count: 4 });
        let s = Shard::from_env(
            None,
            env(&[
                ("SLURM_ARRAY_TASK_ID", "4"),
                ("SLURM_ARRAY_TASK_MIN", "1"),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
            ]),
        )
        .unwrap();
        assert_eq!(s, Shard { index: 4, count: 4 });
        let s = Shard::from_env(Some(3), env(&[("JOB_COMPLETION_INDEX", "0")])).unwrap();
        assert_eq!(s, Shard { index: 1, count: 3 });
        let s = Shard::from_env(
            None,
            env(&[
                ("JOB_COMPLETION_INDEX", "2"),
                ("BAG2DATASET_SHARD_COUNT", "3"),
            ]),
        )
        .unwrap();
        assert_eq!(s, Shard { index: 3, count: 3 });
        assert!(Shard::from_env(None, env(&[("JOB_COMPLETION_INDEX", "0")])).is_err());
        assert!(Shard::from_env(Some(2), env(&[("JOB_COMPLETION_INDEX", "2")])).is_err());
        assert!(Shard::from_env(None, env(&[])).is_err());
    }
}
