//! `validate`: `meta/tasks.parquet`.

use super::*;

/// Checks `meta/tasks.parquet`; returns the tasks by index.
pub(super) fn check_tasks(c: &mut Checker, t: &Totals) -> Option<Vec<String>> {
    let path = c.root.join("meta/tasks.parquet");
    let f = "meta/tasks.parquet";
    let builder = open_parquet(c, &path)?;
    let schema = builder.schema().clone();
    let pandas = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == "pandas"))
        .and_then(|k| k.value.clone());
    match pandas.map(|p| serde_json::from_str::<Value>(&p)) {
        None => c.problem(format!(
            "{f}: pandas metadata is missing (lerobot would return the task as an integer)"
        )),
        Some(Err(e)) => c.problem(format!("{f}: pandas metadata is not JSON: {e}")),
        Some(Ok(v)) if v["index_columns"] != serde_json::json!(["task"]) => c.problem(format!(
            "{f}: pandas index_columns is {}, expected [\"task\"]",
            v["index_columns"]
        )),
        _ => {}
    }
    let names: Vec<&str> = schema.fields().iter().map(|x| x.name().as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    if sorted != ["task", "task_index"] {
        c.problem(format!(
            "{f}: columns are {names:?}, expected task_index and task"
        ));
        return None;
    }
    let mut tasks: Vec<(i64, String)> = Vec::new();
    let reader = builder.build().ok()?;
    for batch in reader {
        let Ok(batch) = batch else {
            c.problem(format!("{f}: read error"));
            return None;
        };
        let idx = batch.column_by_name("task_index")?;
        let task = batch.column_by_name("task")?;
        let (Some(idx), Some(task)) = (
            idx.as_primitive_opt::<Int64Type>(),
            task.as_string_opt::<i32>(),
        ) else {
            c.problem(format!("{f}: task_index must be int64 and task a string"));
            return None;
        };
        for r in 0..batch.num_rows() {
            tasks.push((idx.value(r), task.value(r).to_string()));
        }
    }
    if tasks.len() as u64 != t.tasks {
        c.problem(format!(
            "meta/info.json: total_tasks is {}, {f} holds {}",
            t.tasks,
            tasks.len()
        ));
    }
    tasks.sort();
    let mut seen = HashSet::new();
    for (i, (ti, task)) in tasks.iter().enumerate() {
        if *ti != i as i64 {
            c.problem(format!(
                "{f}: task_index values must be 0..{}, found {ti}",
                tasks.len()
            ));
            break;
        }
        if !seen.insert(task.as_str()) {
            c.problem(format!("{f}: task {task:?} is listed twice"));
        }
    }
    Some(tasks.into_iter().map(|x| x.1).collect())
}
