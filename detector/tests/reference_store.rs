//! A frozen reference is computed once: the detector reuses the persisted artefact while
//! the plan and the reference file are unchanged, and rebuilds it when either changes.

use std::path::PathBuf;
use std::sync::Arc;

use driftwatch_detector::engine::ReferenceProfile;
use driftwatch_detector::plan::Plan;
use driftwatch_detector::reference_store::FileStore;
use driftwatch_detector::service::build_systems;
use driftwatch_detector::synth::{CreditModel, Drift};

fn write_reference(path: &std::path::Path, seed: u64) {
    let mut model = CreditModel::new("credit", seed);
    let lines: String = (0..500)
        .map(|_| format!("{}\n", model.next_json(Drift::NONE)))
        .collect();
    std::fs::write(path, lines).expect("write reference");
}

#[test]
fn persisted_reference_is_reused_until_its_inputs_change() {
    let dir = std::env::temp_dir().join(format!("dw-refstore-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let state = dir.join("state");
    write_reference(&dir.join("reference.ndjson"), 1);
    let plan_text = "[system]\nid = \"credit\"\n[reference]\nfile = \"reference.ndjson\"\n[window]\nsize = 100\n[features.age]\ntype = \"numeric\"\n";
    let plan = Arc::new(Plan::from_toml(plan_text, "plan", dir.clone()).expect("plan"));

    let d =
        build_systems(std::slice::from_ref(&plan), &FileStore::new(&state)).expect("first start");
    let first = d["credit"].monitor.reference().expect("reference").clone();
    assert_eq!(first.events, 500);
    let stored: PathBuf = state.join("credit.reference.json");
    let on_disk: ReferenceProfile =
        serde_json::from_slice(&std::fs::read(&stored).expect("persisted")).expect("profile");
    assert_eq!(on_disk, first);

    // Mark the stored artefact; a restart that reuses it sees the mark.
    let mut marked = on_disk.clone();
    marked.source = "reused".into();
    std::fs::write(&stored, serde_json::to_vec(&marked).expect("json")).expect("write");
    let d = build_systems(std::slice::from_ref(&plan), &FileStore::new(&state)).expect("restart");
    assert_eq!(
        d["credit"].monitor.reference().map(|r| r.source.as_str()),
        Some("reused")
    );

    // A changed reference file makes it stale: rebuilt from the file.
    write_reference(&dir.join("reference.ndjson"), 2);
    let d = build_systems(std::slice::from_ref(&plan), &FileStore::new(&state)).expect("restart");
    let rebuilt = d["credit"].monitor.reference().expect("reference");
    assert_ne!(rebuilt.source, "reused");
    assert_ne!(rebuilt.version, first.version);

    // So does a changed plan (another bin count changes every numeric profile).
    let plan2 = Arc::new(
        Plan::from_toml(
            &plan_text.replace("[window]", "bins = 5\n[window]"),
            "plan",
            dir.clone(),
        )
        .expect("plan"),
    );
    let before = std::fs::read(&stored).expect("stored");
    build_systems(&[plan2], &FileStore::new(&state)).expect("restart");
    assert_ne!(std::fs::read(&stored).expect("stored"), before);
    let _ = std::fs::remove_dir_all(&dir);
}
