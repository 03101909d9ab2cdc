//! Every message of every ROS 2 recording in ../shared/testdata/ros2 (rosbag2 directories,
//! bare MCAP and SQLite files) dumps exactly as its golden file says (an independent reader's
//! decoding). A golden line marked as an error (the reference could not decode it) may be
//! decoded or reported by us; its topic, time and size must still match.

mod common;

use std::path::{Path, PathBuf};

use bag2dataset::commands::dump::{DumpFilter, dump_recording};
use bag2dataset::input::Recording;
use bag2dataset::ros2::Ros2Bag;
use bag2dataset::ros2::msgdef::DefinitionStore;
use common::golden::{assert_no_failures, golden, recordings};

/// `../shared/testdata/ros2`, or None (with a SKIPPED line) when absent.
fn testdata() -> Option<PathBuf> {
    common::testdata_at("ros2")
}

fn bags(dir: &Path) -> Vec<PathBuf> {
    recordings(dir, |name| !name.contains(".golden."))
}

/// The recording with the definitions the golden maker lent it (`extra_definitions_from`:
/// stored definitions of sibling bags, for `test_msgs` types no distro ships).
fn open(dir: &Path, bag: &Path, meta: &serde_json::Value) -> Recording {
    let mut store = DefinitionStore::standard();
    for sib in meta["extra_definitions_from"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let sib = dir.join(sib.as_str().expect("sibling path"));
        let other = Ros2Bag::open(&sib).expect("sibling opens");
        for (t, d) in other.stored_definitions() {
            store.add_definition(&t, &d);
        }
    }
    Recording::Ros2(Box::new(
        Ros2Bag::open_with(bag, store).unwrap_or_else(|e| panic!("{}: {e}", bag.display())),
    ))
}

#[test]
fn every_message_of_every_ros2_recording_matches_its_golden() {
    let Some(dir) = testdata() else { return };
    let mut total = 0usize;
    let mut golden_errors = 0usize;
    let mut decoded_errors = 0usize;
    let mut failures = Vec::new();
    let list = bags(&dir);
    assert_eq!(list.len(), 23, "21 real and 2 generated recordings");
    for bag in list {
        let (want, meta) = golden(&bag);
        let rec = open(&dir, &bag, &meta);
        let mut got = Vec::new();
        if let Err(e) = dump_recording(&rec, &DumpFilter::default(), |l| {
            got.push(l);
            true
        }) {
            failures.push(format!("{}: {e}", bag.display()));
            continue;
        }
        if got.len() != want.len() {
            failures.push(format!(
                "{}: {} messages, golden has {}",
                bag.display(),
                got.len(),
                want.len()
            ));
            continue;
        }
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let ok = if w.get("error").is_some() {
                golden_errors += 1;
                if g.get("error").is_none() {
                    decoded_errors += 1;
                }
                ["topic", "msgtype", "conn", "time_ns", "raw_len"]
                    .iter()
                    .all(|k| g[k] == w[k])
            } else {
                g == w
            };
            if !ok {
                failures.push(format!(
                    "{} message {i}:\n got  {g}\n want {w}",
                    bag.display()
                ));
                break;
            }
        }
        total += got.len();
    }
    assert_no_failures(&failures);
    eprintln!(
        "{total} ROS 2 messages equal to their goldens; {golden_errors} golden error lines ({decoded_errors} of them decoded here)"
    );
    assert_eq!(
        total, 22_322,
        "the whole corpus is compared (MANIFEST.tsv total)"
    );
    assert_eq!(golden_errors, 24);
}

#[test]
fn unknown_types_and_formats_are_clear_per_topic_errors() {
    let Some(dir) = testdata() else { return };
    // The v1 bag's types (test_msgs/Primitives) are known nowhere: every line says so.
    let rec = Recording::open(&dir.join("real/rosbag2__test_v1_sqlite3")).expect("opens");
    let mut lines = Vec::new();
    dump_recording(&rec, &DumpFilter::default(), |l| {
        lines.push(l);
        true
    })
    .expect("dumps");
    assert_eq!(lines.len(), 7);
    for l in &lines {
        let e = l["error"].as_str().expect("error line");
        assert!(e.contains("unknown message type test_msgs/"), "{e}");
    }
    let rec = Recording::open(&dir.join("real/rosbag2__wrong_rmw_test_mcap")).expect("opens");
    let mut lines = Vec::new();
    dump_recording(&rec, &DumpFilter::default(), |l| {
        lines.push(l);
        true
    })
    .expect("dumps");
    assert!(lines.iter().all(|l| {
        l["error"]
            .as_str()
            .unwrap_or_default()
            .contains("wrong_format")
    }));
}

#[test]
fn info_reads_every_ros2_recording() {
    let Some(dir) = testdata() else { return };
    for bag in bags(&dir) {
        let (want, _) = golden(&bag);
        let info = bag2dataset::commands::info::bag_info(&bag)
            .unwrap_or_else(|e| panic!("{}: {e}", bag.display()));
        assert_eq!(info.messages as usize, want.len(), "{}", bag.display());
    }
}

/// A copy of an MCAP cut in the middle (no summary, no footer, a chunk cut short) is recovered
/// by a scan: every message of the complete chunks, each equal to its golden line, in file order.
#[test]
fn a_truncated_mcap_is_recovered_by_a_scan() {
    let Some(dir) = testdata() else { return };
    let bag = dir.join("generated/gen__kuavo_ros2_mcap_zstd");
    let (want, _) = golden(&bag);
    let bytes = std::fs::read(bag.join("gen__kuavo_ros2_mcap_zstd.mcap")).expect("mcap");
    let work = std::env::temp_dir().join(format!("b2d-trunc-mcap-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let cut = work.join("cut.mcap");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let rec = Recording::open(&cut).expect("a truncated MCAP opens");
    assert!(rec.is_recovered(), "read by a scan");
    let why = rec.recovery().unwrap_or_default();
    assert!(why.contains("cut by the end of the file"), "{why}");
    let mut got = Vec::new();
    dump_recording(&rec, &DumpFilter::default(), |l| {
        got.push(l);
        true
    })
    .expect("dumps");
    assert!(
        got.len() > want.len() / 4 && got.len() < want.len(),
        "{} of {} messages recovered",
        got.len(),
        want.len()
    );
    let key = |l: &serde_json::Value| (l["topic"].clone(), l["time_ns"].clone());
    let golden: std::collections::HashMap<_, _> = want.iter().map(|l| (key(l), l)).collect();
    for l in &got {
        assert_eq!(Some(&l), golden.get(&key(l)), "recovered line differs");
    }
    let _ = std::fs::remove_dir_all(&work);
}

/// `--msg-path DIR` supplies definitions a bag lacks: the Foxy `.db3` of cdr_test stores none
/// for its test_msgs types; with their `.msg` files (written here from the MCAP twin's stored
/// schemas) every message decodes to its golden.
#[test]
fn msg_path_supplies_custom_definitions() {
    let Some(dir) = testdata() else { return };
    let twin = Ros2Bag::open(&dir.join("real/rosbag2__cdr_test_mcap")).expect("twin opens");
    let work = std::env::temp_dir().join(format!("b2d-msgpath-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let sep = "=".repeat(80);
    for (t, text) in twin.stored_definitions() {
        let mut name = t.clone();
        for (k, section) in text.split(&sep).enumerate() {
            let mut body = section.trim_start_matches('\n').to_string();
            if k > 0 {
                let (first, rest) = body.split_once('\n').unwrap_or((&body, ""));
                name = first.trim().trim_start_matches("MSG:").trim().to_string();
                body = rest.to_string();
            }
            let parts: Vec<&str> = name.split('/').collect();
            let file = work
                .join(parts[0])
                .join("msg")
                .join(format!("{}.msg", parts[parts.len() - 1]));
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            if !file.exists() {
                std::fs::write(&file, body).unwrap();
            }
        }
    }
    let bag = dir.join("real/rosbag2__cdr_test_v4_sqlite3");
    let (want, _) = golden(&bag);
    let bin = env!("CARGO_BIN_EXE_bag2dataset");
    let run = |extra: &[&std::ffi::OsStr]| {
        let o = std::process::Command::new(bin)
            .arg("dump")
            .arg(&bag)
            .args(extra)
            .output()
            .expect("runs");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    let without = run(&[]);
    assert!(
        without.iter().all(|l| l.get("error").is_some()),
        "no definitions: errors"
    );
    let with = run(&["--msg-path".as_ref(), work.as_os_str()]);
    assert_eq!(with, want, "decoded with --msg-path");
    let _ = std::fs::remove_dir_all(&work);
}

/// lz4 MCAP chunks (no public ROS 2 bag has them): cdr_test's MCAP rewritten with its chunk
/// lz4-compressed and no summary (so it is also read by the scan) dumps to the same goldens.
#[test]
fn lz4_chunks_without_a_summary_decode_to_the_goldens() {
    use bag2dataset::ros2::mcap::{MAGIC, McapFile};
    use std::io::Write;
    let Some(dir) = testdata() else { return };
    let bag = dir.join("real/rosbag2__cdr_test_mcap");
    let (want, _) = golden(&bag);
    let src = bag.join("cdr_test_0.mcap");
    let f = McapFile::open(&src).expect("opens");
    assert_eq!(f.units.len(), 1, "one chunk");
    let unit = &f.units[0];
    let (records, _) = f.read_unit(unit, 1 << 30).expect("reads");
    let original = std::fs::read(&src).unwrap();
    let mut enc = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
    enc.write_all(&records).unwrap();
    let (lz, r) = enc.finish();
    r.unwrap();
    let mut body = Vec::new();
    body.extend(unit.start_ns.to_le_bytes());
    body.extend(unit.end_ns.to_le_bytes());
    body.extend((records.len() as u64).to_le_bytes());
    body.extend(0u32.to_le_bytes()); // no CRC
    body.extend(3u32.to_le_bytes());
    body.extend(b"lz4");
    body.extend((lz.len() as u64).to_le_bytes());
    body.extend(&lz);
    // Magic, header and whatever precedes the chunk (schemas, channels), the lz4 chunk,
    // a data-end record; no summary, no footer.
    let mut out = original[..unit.record_offset as usize].to_vec();
    assert_eq!(&out[..8], MAGIC);
    out.push(0x06);
    out.extend((body.len() as u64).to_le_bytes());
    out.extend(&body);
    out.push(0x0F);
    out.extend(4u64.to_le_bytes());
    out.extend(0u32.to_le_bytes());
    let work = std::env::temp_dir().join(format!("b2d-lz4-mcap-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let path = work.join("lz4.mcap");
    std::fs::write(&path, &out).unwrap();
    let rec = Recording::open(&path).expect("opens");
    assert!(rec.is_recovered(), "no summary: scanned");
    assert_eq!(rec.index().chunks[0].compression.name(), "lz4");
    let mut got = Vec::new();
    dump_recording(&rec, &DumpFilter::default(), |l| {
        got.push(l);
        true
    })
    .expect("dumps");
    assert_eq!(got, want);
    let _ = std::fs::remove_dir_all(&work);
}

/// Whether `bag` is stored in SQLite (a rosbag2 directory of .db3 / .db3.zstd, or a bare .db3).
fn is_sqlite(bag: &Path) -> bool {
    let name = bag.to_string_lossy();
    if bag.is_dir() {
        std::fs::read_dir(bag).expect("bag dir").flatten().any(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n.ends_with(".db3") || n.ends_with(".db3.zstd")
        })
    } else {
        name.ends_with(".db3")
    }
}

/// `info` of every SQLite golden bag, summarised without reading a message: total and
/// per-topic counts equal the golden's (`per_topic`, including topics with 0 messages), the
/// time range spans the golden's first and last receive time, and the counts come from
/// metadata.yaml where the bag has one, from aggregate SQL for a bare `.db3`.
#[test]
fn info_of_sqlite_recordings_matches_the_goldens_counts() {
    let Some(dir) = testdata() else { return };
    let mut seen = 0;
    for bag in bags(&dir).into_iter().filter(|b| is_sqlite(b)) {
        seen += 1;
        let (lines, meta) = golden(&bag);
        let info = bag2dataset::commands::info::bag_info(&bag)
            .unwrap_or_else(|e| panic!("{}: {e}", bag.display()));
        let name = bag.display();
        assert_eq!(info.messages, meta["messages"].as_u64().unwrap(), "{name}");
        let want: std::collections::BTreeMap<String, u64> = meta["per_topic"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v["count"].as_u64().unwrap()))
            .collect();
        let got: std::collections::BTreeMap<String, u64> = info
            .topics
            .iter()
            .map(|t| (t.topic.clone(), t.messages))
            .collect();
        assert_eq!(got, want, "{name}");
        let from = if bag.is_dir() {
            "metadata.yaml"
        } else {
            "storage (aggregate SQL)"
        };
        assert_eq!(info.counted_from, Some(from), "{name}");
        let times: Vec<u64> = lines
            .iter()
            .map(|l| l["time_ns"].as_u64().unwrap())
            .collect();
        if meta["compression"]["mode"] == "FILE" {
            // Summarised from the yaml alone (its files are not decompressed), whose range
            // this fixture has wrong: only the counts are checked.
            continue;
        }
        match (times.iter().min(), times.iter().max()) {
            (Some(&a), Some(&b)) => {
                assert_eq!((info.start_ns, info.end_ns), (Some(a), Some(b)), "{name}")
            }
            _ => assert_eq!(info.start_ns, None, "{name}"),
        }
    }
    assert!(seen >= 12, "{seen} SQLite bags");
}

/// A metadata.yaml whose counts disagree with the storage (a recording cut before rosbag2
/// rewrote it) is not believed: `info` counts the storage instead, with a warning.
#[test]
fn info_counts_the_storage_when_metadata_disagrees() {
    let Some(dir) = testdata() else { return };
    let src = dir.join("real/rosbag2__wbag_sqlite3");
    let (lines, meta) = golden(&src);
    let work = std::env::temp_dir().join(format!("b2d-stale-meta-{}", std::process::id()));
    let bag = work.join("wbag");
    std::fs::create_dir_all(&bag).unwrap();
    for e in std::fs::read_dir(&src).unwrap().flatten() {
        std::fs::copy(e.path(), bag.join(e.file_name())).unwrap();
    }
    // As if rosbag2 had stopped writing after the first file: counts of one file only.
    let yaml = std::fs::read_to_string(src.join("metadata.yaml")).unwrap();
    let stale = yaml
        .replace("message_count: 6074", "message_count: 1246")
        .replace("message_count: 726", "message_count: 0")
        .replace("message_count: 731", "message_count: 0")
        .replace("message_count: 772", "message_count: 0")
        .replace("message_count: 804", "message_count: 623")
        .replace("message_count: 742", "message_count: 0")
        .replace("message_count: 753", "message_count: 0");
    assert_ne!(stale, yaml);
    std::fs::write(bag.join("metadata.yaml"), stale).unwrap();
    let info = bag2dataset::commands::info::bag_info(&bag).expect("info");
    assert_eq!(info.counted_from, Some("storage (aggregate SQL)"));
    assert_eq!(info.messages as usize, lines.len());
    for t in &info.topics {
        assert_eq!(
            Some(t.messages),
            meta["per_topic"][&t.topic]["count"].as_u64(),
            "{}",
            t.topic
        );
    }
    let _ = std::fs::remove_dir_all(&work);
}
