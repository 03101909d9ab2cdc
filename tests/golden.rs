//! Every message of every bag in ../shared/testdata decodes exactly as its golden file says
//! (an independent reader's decoding), damaged bags are recovered to exactly their goldens, and
//! unreadable files give a clear error.

mod common;

use common::golden::{assert_no_failures, golden, recordings};
use common::testdata;

use std::path::{Path, PathBuf};

use bag2dataset::commands::dump::{DumpFilter, dump_bag, dump_bag_with};

fn bags(dir: &Path) -> Vec<PathBuf> {
    recordings(dir, |name| {
        name.ends_with(".bag") || name.ends_with(".bag.active")
    })
}

/// Compares a dump with its golden line by line; returns the first difference.
fn compare(bag: &Path, got: &[serde_json::Value], want: &[serde_json::Value]) -> Option<String> {
    if got.len() != want.len() {
        return Some(format!(
            "{}: {} messages, golden has {}",
            bag.display(),
            got.len(),
            want.len()
        ));
    }
    got.iter()
        .zip(want)
        .enumerate()
        .find(|(_, (g, w))| g != w)
        .map(|(i, (g, w))| format!("{} message {i}:\n got  {g}\n want {w}", bag.display()))
}

/// Indexed bags are dumped in time order, bags without a usable index (meta `"order": "file"`)
/// through recovery in file order; both must equal their goldens. Files that are not bags
/// (empty goldens) must fail with an error naming the file.
#[test]
fn every_message_of_every_bag_matches_its_golden() {
    let Some(dir) = testdata() else { return };
    let mut total = 0usize;
    let mut recovered = 0usize;
    let mut failures = Vec::new();
    for bag in bags(&dir) {
        let (want, meta) = golden(&bag);
        let order = meta["order"].as_str().unwrap_or_default();
        let by_file = order == "file";
        let mut got = Vec::new();
        let mut note = None;
        let result = dump_bag_with(
            &bag,
            &DumpFilter::default(),
            |n| note = Some(n.clone()),
            |line| {
                got.push(line);
                true
            },
        );
        match result {
            Ok(_) => {
                if let Some(f) = compare(&bag, &got, &want) {
                    failures.push(f);
                    continue;
                }
                if by_file {
                    match &note {
                        Some(n) => eprintln!("{}: {n}", bag.file_name().unwrap().to_string_lossy()),
                        None => failures.push(format!(
                            "{}: golden order is file, but no recovery note",
                            bag.display()
                        )),
                    }
                    recovered += got.len();
                }
                total += got.len();
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(&bag.display().to_string()),
                    "error names the file: {msg}"
                );
                if by_file && want.is_empty() {
                    eprintln!("{}: {msg}", bag.file_name().unwrap().to_string_lossy());
                } else {
                    failures.push(format!("{}: {msg}", bag.display()));
                }
            }
        }
    }
    assert_no_failures(&failures);
    eprintln!(
        "{total} messages equal to their goldens ({recovered} of them recovered by scanning)"
    );
    assert_eq!(total, 34_859, "the whole corpus is compared");
    assert_eq!(
        recovered, 5_238,
        "every message of the damaged bags is recovered"
    );
}

#[test]
fn files_that_are_not_bags_give_a_clear_error() {
    let Some(dir) = testdata() else { return };
    for (name, expect) in [
        ("real/rosbagjs__empty-file.bag", "empty"),
        (
            "real/rosbag2_bag_v2__not_a_bag_sqlite.bag",
            "not a ROS1 bag",
        ),
        ("real/webviz__invalid.bag", "ends inside the bag header"),
        ("real/rosbag_crate__dummy.bag", "600"),
    ] {
        let path = dir.join(name);
        let e = dump_bag(&path, &DumpFilter::default(), |_| true)
            .expect_err(name)
            .to_string();
        assert!(
            e.contains(name.split('/').nth(1).unwrap()) && e.contains(expect),
            "{name}: {e}"
        );
    }
}

#[test]
fn dump_filters_by_topic_time_and_limit() {
    let Some(dir) = testdata() else { return };
    let bag = dir.join("real/rosbagjs__example.bag");
    let mut lines = Vec::new();
    let filter = DumpFilter {
        topics: vec!["/turtle1/pose".into()],
        limit: Some(5),
        start: Some(1.0),
        end: None,
    };
    dump_bag(&bag, &filter, |l| {
        lines.push(l);
        true
    })
    .unwrap();
    assert_eq!(lines.len(), 5);
    let first = lines[0]["time_ns"].as_u64().unwrap();
    assert!(lines.iter().all(|l| l["topic"] == "/turtle1/pose"));
    assert!(
        lines
            .windows(2)
            .all(|w| w[0]["time_ns"].as_u64() <= w[1]["time_ns"].as_u64())
    );
    assert!(first >= 1_396_293_887_844_783_943 + 1_000_000_000);
    let e = dump_bag(
        &bag,
        &DumpFilter {
            topics: vec!["/nope".into()],
            ..Default::default()
        },
        |_| true,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("/nope") && e.contains("/turtle1/pose"), "{e}");
}
