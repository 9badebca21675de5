//! `driftwatch demo`, the README's first command, as a user runs it: it exits 0 and its
//! summary shows each link of the chain (pages per episode, the kill switch flipping
//! the agent's status and back, the deployer's notice acknowledged, the incidents and
//! their verified audit trail).

use std::process::Command;

use driftwatch_e2e::binary;

#[test]
fn the_demo_runs_the_whole_chain_and_says_so() {
    let out = Command::new(binary("driftwatch"))
        .arg("demo")
        .env("DRIFTWATCH_LOG", "warn")
        .output()
        .expect("driftwatch demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed ({:?}):\n{stdout}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "pages to the on-call channel",
        "the agent reported `disabled` after",
        "driftwatch-serving: disabled",
        "`enable` restored `allowed`",
        "NOTICE to Demo Bank (deployer): Action required: disable",
        "acknowledged it through the link",
        "e-mail notice(s) wait for an SMTP server",
        "verified",
        "demo passed",
    ] {
        assert!(
            stdout.contains(want),
            "the demo's output lacks {want:?}:\n{stdout}"
        );
    }
}
