//! The per-window statistics on the replay benchmark's shapes: a 5,000-value window
//! against a 50,000-value reference. `cargo bench -p driftwatch-detector --bench stats`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use driftwatch_detector::stats;
use driftwatch_detector::synth::Rng;

/// `n` normal values of mean `mean` and standard deviation `sd` to six decimals (as the
/// replay's CSV holds them), sorted if asked.
fn sample(rng: &mut Rng, n: usize, mean: f64, sd: f64, sorted: bool) -> Vec<f64> {
    let mut v: Vec<f64> = (0..n).map(|_| round(rng.normal() * sd + mean)).collect();
    if sorted {
        stats::sort_floats(&mut v);
    }
    v
}

fn round(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

fn per_window(c: &mut Criterion) {
    let mut rng = Rng::new(7);
    let reference = sample(&mut rng, 50_000, 10.0, 2.0, true);
    let index = stats::KsIndex::new(&reference).expect("an index");
    let mut group = c.benchmark_group("window 5000 vs reference 50000");
    // Eight different windows in turn: one window repeated lets the branch predictor
    // learn its pattern, which real data never allows.
    let unsorted: Vec<Vec<f64>> = (0..8)
        .map(|_| sample(&mut rng, 5_000, 10.0, 2.0, false))
        .collect();
    group.throughput(Throughput::Elements(40_000));
    group.bench_function("sort_floats/8 windows", |b| {
        b.iter_batched_ref(
            || unsorted.clone(),
            |ws| ws.iter_mut().for_each(|w| stats::sort_floats(w)),
            BatchSize::SmallInput,
        )
    });
    for (shift, name) in [0.0, 0.3, 3.0]
        .into_iter()
        .zip(["same", "shift 0.15 sd", "shift 1.5 sd"])
    {
        let sorted: Vec<Vec<f64>> = (0..8)
            .map(|_| {
                let mut w: Vec<f64> = (0..5_000)
                    .map(|_| round(rng.normal() * 2.0 + 10.0 + shift))
                    .collect();
                stats::sort_floats(&mut w);
                w
            })
            .collect();
        group.bench_function(format!("ks_2samp_sorted/8 windows/{name}"), |b| {
            b.iter(|| {
                sorted
                    .iter()
                    .map(|w| stats::ks_2samp_sorted(&reference, w).statistic)
                    .sum::<f64>()
            })
        });
        // The same windows in arrival order: what the engine runs for a KS-only signal
        // (sorting included).
        let shuffled: Vec<Vec<f64>> = sorted
            .iter()
            .map(|w| {
                let mut w = w.clone();
                for i in (1..w.len()).rev() {
                    w.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
                }
                w
            })
            .collect();
        group.bench_function(format!("ks_2samp/8 unsorted windows/{name}"), |b| {
            b.iter(|| {
                shuffled
                    .iter()
                    .map(|w| stats::ks_2samp(&reference, &index, w).statistic)
                    .sum::<f64>()
            })
        });
    }
    // Data straddling zero, as any standardized feature does: the KS index must not
    // spend its parts on the tiny magnitudes between -1e-6 and 1e-6.
    let centred = sample(&mut rng, 50_000, 0.0, 1.0, true);
    let centred_index = stats::KsIndex::new(&centred).expect("an index");
    let windows: Vec<Vec<f64>> = (0..8)
        .map(|_| sample(&mut rng, 5_000, 0.0, 1.0, false))
        .collect();
    group.bench_function("ks_2samp/8 unsorted windows/same, around zero", |b| {
        b.iter(|| {
            windows
                .iter()
                .map(|w| stats::ks_2samp(&centred, &centred_index, w).statistic)
                .sum::<f64>()
        })
    });
    // Ten references in turn, as a replay of ten numeric features reads them one window
    // at a time: each comes from the last-level cache, not L2.
    let references: Vec<Vec<f64>> = (0..10)
        .map(|k| sample(&mut rng, 50_000, 10.0 * f64::from(k), 2.0, true))
        .collect();
    let sorted: Vec<Vec<f64>> = (0..10)
        .map(|k| sample(&mut rng, 5_000, 10.0 * f64::from(k), 2.0, true))
        .collect();
    group.throughput(Throughput::Elements(50_000));
    group.bench_function("ks_2samp_sorted/10 features in turn", |b| {
        b.iter(|| {
            references
                .iter()
                .zip(&sorted)
                .map(|(r, w)| stats::ks_2samp_sorted(r, w).statistic)
                .sum::<f64>()
        })
    });
    group.finish();
}

criterion_group!(benches, per_window);
criterion_main!(benches);
