//! The agent binary's start-up contract: bad configuration and an unusable data
//! directory stop it with a message naming the culprit; `dead-letters` prints the
//! dead-letter spool.

use std::process::Command;

fn agent() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_driftwatch-agent"));
    c.env_remove("DRIFTWATCH_AGENT_CONFIG")
        .env_remove("DRIFTWATCH_AGENT_DATA_DIR")
        .env("DRIFTWATCH_LOG", "warn");
    c
}

fn temp(name: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("dw-agent-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    let _ = std::fs::remove_file(&p);
    p
}

#[test]
fn a_bad_spool_setting_exits_64_naming_it() {
    let config = temp("fsync.toml");
    std::fs::write(&config, "[spool]\nfsync = \"sometimes\"\n").expect("config");
    let o = agent().arg("--config").arg(&config).output().expect("run");
    assert_eq!(o.status.code(), Some(64));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("fsync") && err.contains("line 2"), "{err}");
    assert!(err.contains("always") && err.contains("interval"), "{err}");

    std::fs::write(&config, "[spool]\nmax_spool_bytes = 10000\n").expect("config");
    let o = agent().arg("--config").arg(&config).output().expect("run");
    assert_eq!(o.status.code(), Some(64));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("spool.max_spool_bytes"), "{err}");
    let _ = std::fs::remove_file(config);
}

#[test]
fn an_unusable_data_dir_stops_the_agent_with_the_path() {
    let file = temp("not-a-dir");
    std::fs::write(&file, "a file, not a directory").expect("file");
    let data_dir = file.join("agent");
    let o = agent()
        .args(["--listen", "127.0.0.1:0", "--brokers", "127.0.0.1:1"])
        .arg("--data-dir")
        .arg(&data_dir)
        .output()
        .expect("run");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot open the spool in") && err.contains(&*data_dir.to_string_lossy()),
        "{err}"
    );
    let _ = std::fs::remove_file(file);
}

#[test]
fn dead_letters_of_an_agent_that_never_had_one_is_empty() {
    let dir = temp("dl");
    let o = agent()
        .arg("--data-dir")
        .arg(&dir)
        .arg("dead-letters")
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.stdout.is_empty());
    assert!(String::from_utf8_lossy(&o.stderr).contains("0 dead letters"));
}
