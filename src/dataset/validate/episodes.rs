//! `validate`: the episodes parquet against the data files and the tasks.

use super::*;

/// The integer columns of an episodes row, in the order the checks below read them.
const EPISODE_INT_COLUMNS: [&str; 8] = [
    "episode_index",
    "length",
    "data/chunk_index",
    "data/file_index",
    "dataset_from_index",
    "dataset_to_index",
    "meta/episodes/chunk_index",
    "meta/episodes/file_index",
];

/// Checks the episodes parquet files against the data files.
pub(super) fn check_episodes(
    c: &mut Checker,
    feats: &[Feat],
    t: &Totals,
    spans: &BTreeMap<i64, EpisodeSpan>,
    tasks: Option<&[String]>,
) {
    let files = list_files(c, "meta/episodes", t.chunks_size);
    if files.is_empty() {
        c.problem("meta/episodes: no episodes parquet file");
        return;
    }
    let mut next_ep: i64 = 0;
    for (idx, path) in files {
        let name = rel(c, &path);
        let Some(builder) = open_parquet(c, &path) else {
            continue;
        };
        let schema = builder.schema().clone();
        let mut required: Vec<String> = std::iter::once("tasks")
            .chain(EPISODE_INT_COLUMNS)
            .map(str::to_string)
            .collect();
        for f in feats.iter().filter(|f| f.dtype != "string") {
            for k in STAT_KEYS {
                required.push(format!("stats/{}/{k}", f.name));
            }
        }
        let mut missing = false;
        for col in &required {
            if schema.field_with_name(col).is_err() {
                c.problem(format!("{name}: column {col} is missing"));
                missing = true;
            }
        }
        if missing {
            continue;
        }
        let Ok(reader) = builder.build() else {
            c.problem(format!("{name}: cannot read"));
            continue;
        };
        for batch in reader {
            let Ok(batch) = batch else {
                c.problem(format!("{name}: read error"));
                break;
            };
            let cols: Option<Vec<Vec<i64>>> = EPISODE_INT_COLUMNS
                .iter()
                .map(|n| int_col(&batch, n))
                .collect();
            let Some(cols) = cols else {
                c.problem(format!("{name}: index and length columns must be int64"));
                break;
            };
            let tasks_col = batch
                .column_by_name("tasks")
                .and_then(|a| a.as_any().downcast_ref::<ListArray>().cloned());
            #[allow(clippy::needless_range_loop)] // r indexes several parallel columns
            for r in 0..batch.num_rows() {
                let ep = cols[0][r];
                let at = format!("{name}: episode {ep}");
                if ep != next_ep {
                    c.problem(format!(
                        "{at}: expected episode_index {next_ep} (rows in order)"
                    ));
                }
                next_ep = ep + 1;
                if (cols[6][r], cols[7][r]) != (idx.0 as i64, idx.1 as i64) {
                    c.problem(format!(
                        "{at}: meta/episodes/chunk_index,file_index = {},{} but the row is in chunk {} file {}",
                        cols[6][r], cols[7][r], idx.0, idx.1
                    ));
                }
                let (len, from, to) = (cols[1][r], cols[4][r], cols[5][r]);
                if to - from != len {
                    c.problem(format!(
                        "{at}: dataset_to_index − dataset_from_index = {} but length = {len}",
                        to - from
                    ));
                }
                match spans.get(&ep) {
                    None => c.problem(format!("{at}: no rows in the data files")),
                    Some(s) => {
                        if s.length != len || s.from != from {
                            c.problem(format!(
                                "{at}: length {len} from index {from}, data files have {} rows from index {}",
                                s.length, s.from
                            ));
                        }
                        if (cols[2][r], cols[3][r]) != (s.file.0 as i64, s.file.1 as i64) {
                            c.problem(format!(
                                "{at}: data/chunk_index,file_index = {},{} but its rows are in chunk {} file {}",
                                cols[2][r], cols[3][r], s.file.0, s.file.1
                            ));
                        }
                        if let (Some(tasks), Some(list)) = (tasks, &tasks_col) {
                            let v = list.value(r);
                            let names = v.as_string_opt::<i32>();
                            let ok = names.is_some_and(|n| {
                                n.len() > 0
                                    && (0..n.len()).all(|i| tasks.iter().any(|t| t == n.value(i)))
                                    && tasks
                                        .get(s.task_index as usize)
                                        .is_some_and(|t| (0..n.len()).any(|i| n.value(i) == t))
                            });
                            if !ok {
                                c.problem(format!(
                                    "{at}: tasks list does not name the episode's task from meta/tasks.parquet"
                                ));
                            }
                        }
                    }
                }
                for f in feats
                    .iter()
                    .filter(|f| !f.is_visual() && f.dtype != "string")
                {
                    let col = format!("stats/{}/count", f.name);
                    let count = batch
                        .column_by_name(&col)
                        .and_then(|a| a.as_any().downcast_ref::<ListArray>().cloned())
                        .and_then(|l| {
                            let v = l.value(r);
                            v.as_primitive_opt::<Int64Type>()
                                .filter(|p| p.len() == 1)
                                .map(|p| p.value(0))
                        });
                    if count != Some(len) {
                        c.problem(format!("{at}: {col} is {count:?}, expected [{len}]"));
                    }
                }
            }
        }
    }
    if next_ep as u64 != t.episodes {
        c.problem(format!(
            "meta/episodes: {next_ep} episode rows, info.json total_episodes is {}",
            t.episodes
        ));
    }
}
