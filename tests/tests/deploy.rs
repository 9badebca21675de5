//! `deploy/` stays true to the code: every driftwatch metric the Prometheus rules and the
//! Grafana dashboard query exists in a metric catalogue. (promtool and amtool check the
//! files themselves in `tests/deploy-check.sh`.)

use std::collections::BTreeSet;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
}

fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let needle = b"driftwatch_";
    let mut i = 0;
    while i + needle.len() <= bytes.len() {
        if &bytes[i..i + needle.len()] == needle
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'))
        {
            let mut j = i + needle.len();
            while j < bytes.len()
                && (bytes[j].is_ascii_lowercase() || bytes[j].is_ascii_digit() || bytes[j] == b'_')
            {
                j += 1;
            }
            let name = &text[i..j];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            out.insert(base.to_owned());
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn rules_and_dashboard_use_only_metrics_that_exist() {
    let read =
        |p: &str| std::fs::read_to_string(root().join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let catalogue = read("agent/src/metrics.rs")
        + &read("detector/src/metrics.rs")
        + &read("incident/src/metrics.rs");
    let defined = metric_names(&catalogue);
    assert!(defined.contains("driftwatch_drift_severity"), "{defined:?}");
    for file in [
        "deploy/prometheus/driftwatch-rules.yaml",
        "deploy/prometheus/driftwatch-rules.test.yaml",
        "deploy/grafana/driftwatch-dashboard.json",
    ] {
        let used = metric_names(&read(file));
        assert!(!used.is_empty(), "{file} queries no driftwatch metric");
        let missing: Vec<_> = used.difference(&defined).collect();
        assert!(
            missing.is_empty(),
            "{file} uses metrics no code defines: {missing:?}"
        );
    }
}
