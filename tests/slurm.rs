//! The live Slurm test: `tests/slurm/run.sh` starts a real single-node Slurm on localhost
//! (slurmctld + slurmd, no cgroup plugins, `--mem` enforced on the summed RSS), submits the
//! job array and the merge job of `docs/scaling.md` over 6 bags, checks the merge equals one
//! sequential run and passes `validate`, that a job over its `--mem` is killed, and that the
//! ceiling inside a job comes from its `--mem`; it tears the cluster down whatever happens.
//!
//! It needs root and Debian's `slurm-wlm` + `munge` (the script installs them with apt-get when
//! missing). Where that is impossible it is skipped with a message, unless
//! `BAG2DATASET_REQUIRE_SLURM=1` (set by `.ci/run`) makes it fail instead.

use std::process::Command;

#[test]
fn job_array_and_merge_on_a_live_slurm() {
    let required = std::env::var("BAG2DATASET_REQUIRE_SLURM").is_ok_and(|v| v == "1");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let installable = Command::new("sh")
        .args(["-c", "command -v slurmctld || command -v apt-get"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !(root && installable) {
        assert!(
            !required,
            "BAG2DATASET_REQUIRE_SLURM=1 but the Slurm test cannot run (needs root and slurm-wlm or apt-get)"
        );
        eprintln!(
            "SKIPPED: the live Slurm test needs root and slurm-wlm (or apt-get to install it)"
        );
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/slurm/run.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_bag2dataset"))
        .output()
        .expect("running tests/slurm/run.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(out.status.success(), "the live Slurm test failed:\n{text}");
    assert!(text.contains("slurm test: PASSED"), "{text}");
}
