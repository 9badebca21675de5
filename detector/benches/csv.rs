//! CSV block parsing on one core: 200,000 rows of 10 numeric (6 decimals, as pandas
//! writes them) and 5 categorical columns, read into column batches by one parsing
//! thread, as `driftwatch replay` reads its events. `cargo bench -p driftwatch-detector
//! --bench csv`; figures in BENCHMARKS.md.

use std::io::Write;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use driftwatch_detector::input::fastcsv::read_batches;
use driftwatch_detector::plan::Plan;
use driftwatch_detector::synth::{wide_plan_toml, WideModel};
use driftwatch_schema::FeatureValue;

const ROWS: usize = 200_000;

fn csv(c: &mut Criterion) {
    let plan = Plan::from_toml(
        &wide_plan_toml("first_events = 1", 5000),
        "bench",
        PathBuf::new(),
    )
    .expect("plan");
    let dir = std::env::temp_dir().join(format!("driftwatch-bench-csv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("events.csv");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    let names: Vec<String> = (0..10)
        .map(|i| format!("x{i}"))
        .chain((0..5).map(|i| format!("c{i}")))
        .collect();
    writeln!(out, "{}", names.join(",")).expect("write");
    let mut model = WideModel::new(1);
    for i in 0..ROWS {
        let p = model.next_prediction(i >= ROWS / 2);
        let fields: Vec<String> = names
            .iter()
            .map(|n| match &p.features[n] {
                FeatureValue::Number(x) => format!("{}", (x * 1e6).round() / 1e6),
                FeatureValue::Text(s) => s.clone(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        writeln!(out, "{}", fields.join(",")).expect("write");
    }
    drop(out);
    let bytes = std::fs::metadata(&path).expect("metadata").len();
    let mut group = c.benchmark_group("csv");
    group.sample_size(20);
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function(
        format!("read_batches/1 thread/{ROWS} rows x 15 columns"),
        |b| {
            b.iter(|| {
                let mut rows = 0;
                read_batches(&path, &plan, 1, |batch| {
                    rows += batch.len();
                    Ok::<_, driftwatch_detector::input::SourceError>(())
                })
                .expect("read");
                assert_eq!(rows, ROWS);
                rows
            })
        },
    );
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, csv);
criterion_main!(benches);
