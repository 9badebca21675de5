//! A real SMTP server for the e-mail tests: `tests/tools/smtp_sink.py` under Python's
//! aiosmtpd (`DRIFTWATCH_TEST_PYTHON`, made by `tests/smtp-python.sh`), writing each
//! message it accepts, parsed by Python's `email` package, as one JSON file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::process::Proc;

/// The running server; stopped when dropped.
pub struct SmtpSink {
    _proc: Proc,
}

impl SmtpSink {
    /// Start on `addr`, writing messages into `out` (its log in `dir`).
    pub fn start(dir: &Path, addr: SocketAddr, out: &Path) -> SmtpSink {
        let python = std::env::var("DRIFTWATCH_TEST_PYTHON").expect(
            "DRIFTWATCH_TEST_PYTHON must name a Python with aiosmtpd (tests/smtp-python.sh makes one)",
        );
        let proc = Proc::spawn(
            "smtp sink",
            dir.join("smtp.log"),
            Command::new(python)
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/smtp_sink.py"))
                .arg(addr.ip().to_string())
                .arg(addr.port().to_string())
                .arg(out),
        );
        SmtpSink { _proc: proc }
    }
}

/// The messages in `out` so far, in arrival order, bodies with `\n` line ends.
pub fn mails(out: &Path) -> Vec<Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(out)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension().is_some_and(|x| x == "json")
                        && !p
                            .file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .filter_map(|p| {
            let mut m: Value = serde_json::from_slice(&std::fs::read(p).ok()?).ok()?;
            // SMTP carries CRLF line ends; compare text as a reader sees it.
            if let Some(b) = m["body"].as_str().map(|b| b.replace("\r\n", "\n")) {
                m["body"] = Value::String(b);
            }
            Some(m)
        })
        .collect()
}
