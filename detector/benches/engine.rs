//! Engine throughput: 10 numeric + 5 categorical features, every default check, windows
//! of 5,000, a 50,000-prediction reference. Parsing is excluded: events, rows and column
//! batches are built before timing, and everything runs on one core. `cargo bench -p driftwatch-detector --bench engine`; figures in BENCHMARKS.md.

use std::path::PathBuf;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use driftwatch_detector::engine::{decode, Input, Monitor, Observed, ReferenceBuilder};
use driftwatch_detector::input::batch::{Column, ColumnBatch, MISSING};
use driftwatch_detector::plan::Plan;
use driftwatch_detector::synth::{wide_plan_toml, WideModel};
use driftwatch_schema::Event;

const EVENTS: usize = 200_000;

fn engine(c: &mut Criterion) {
    let plan = Arc::new(
        Plan::from_toml(
            &wide_plan_toml("first_events = 50000", 5000),
            "bench",
            PathBuf::new(),
        )
        .expect("plan"),
    );
    let mut model = WideModel::new(1);
    let mut builder = ReferenceBuilder::new(&plan);
    for _ in 0..50_000 {
        builder.add(&model.next_prediction(false));
    }
    let reference = builder.build("bench".into(), String::new());
    let events: Vec<Event> = (0..EVENTS)
        .map(|i| Event::Prediction(model.next_prediction(i >= EVENTS / 2)))
        .collect();
    let checks: usize = plan.signals().iter().map(|s| s.checks.len()).sum();
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.sample_size(10);
    group.bench_function(
        format!("observe/15 features/{checks} checks/window 5000"),
        |b| {
            b.iter_batched(
                || Monitor::new(plan.clone(), Some(reference.clone())),
                |mut monitor| {
                    let mut windows = 0;
                    for e in &events {
                        windows += monitor.observe(Input::Event(e)).reports.len();
                    }
                    assert_eq!(windows, EVENTS / 5000);
                    windows
                },
                BatchSize::LargeInput,
            )
        },
    );
    // The same predictions decoded once into rows (plan-ordered values): what a driver
    // that decodes its input straight into rows (the CSV reader, say) hands the engine.
    let signals = plan.signals();
    let rows: Vec<(chrono::DateTime<chrono::Utc>, Vec<_>)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Prediction(p) => {
                let mut row = Vec::new();
                decode(&signals, p, &mut row);
                Some((p.timestamp, row))
            }
            Event::Outcome(_) => None,
        })
        .collect();
    group.bench_function(
        format!("observe_row/15 features/{checks} checks/window 5000"),
        |b| {
            b.iter_batched(
                || Monitor::new(plan.clone(), Some(reference.clone())),
                |mut monitor| {
                    let mut windows = 0;
                    for (ts, row) in &rows {
                        windows += monitor
                            .observe(Input::Row {
                                timestamp: *ts,
                                values: row,
                                outcome: None,
                                id: driftwatch_detector::input::batch::NO_ID,
                            })
                            .reports
                            .len();
                    }
                    assert_eq!(windows, EVENTS / 5000);
                    windows
                },
                BatchSize::LargeInput,
            )
        },
    );
    // The same rows as column batches of 9,000 (what the CSV reader hands the replay),
    // windows closed column by column and evaluated on this one core.
    let batches: Vec<ColumnBatch> = rows
        .chunks(9_000)
        .map(|chunk| {
            let mut b = ColumnBatch::new(&signals);
            for (_, row) in chunk {
                for (column, value) in b.columns.iter_mut().zip(row) {
                    match (column, value) {
                        (Column::Num(v), Observed::Num(x)) => v.push(*x),
                        (Column::Num(v), _) => v.push(f64::NAN),
                        (Column::Cat { ids, dict }, Observed::Cat(c)) => ids.push(dict.intern(c)),
                        (Column::Cat { ids, .. }, _) => ids.push(MISSING),
                    }
                }
                b.push_row();
            }
            b
        })
        .collect();
    group.bench_function(
        format!("close_columns/15 features/{checks} checks/window 5000"),
        |b| {
            b.iter_batched(
                || Monitor::new(plan.clone(), Some(reference.clone())),
                |mut monitor| {
                    let mut windows = 0;
                    for batch in &batches {
                        windows += monitor
                            .observe(Input::Batch { batch, from: 0 })
                            .reports
                            .len();
                    }
                    assert_eq!(windows, EVENTS / 5000);
                    windows
                },
                BatchSize::LargeInput,
            )
        },
    );
    group.finish();
    // Decoding the wire payloads the detector consumes (the Kafka driver's first step),
    // per event, against the engine's own cost per event above.
    let wire: Vec<Vec<u8>> = events.iter().map(Event::to_wire).collect();
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.sample_size(10);
    group.bench_function("from_wire/15 features", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for w in &wire {
                n += usize::from(Event::from_wire(w).is_ok());
            }
            assert_eq!(n, EVENTS);
            n
        })
    });
    group.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
