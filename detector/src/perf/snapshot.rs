//! The performance state as bytes, and back: part of the monitor's checkpoint
//! (`engine/snapshot.rs`), so a restart or another instance keeps every prediction
//! awaiting its outcome and every window still open to outcomes.
//!
//! Kept: the join's entries (40 bytes each, oldest first), the windows' sums, their
//! CBPE state, what each has reported and raised, the join counters and event time.
//! Not kept: the memory of departed prediction ids, so after a restart an outcome for a
//! prediction that left the join before it counts as orphaned, not expired.

use std::collections::BTreeMap;

use super::cbpe::CbpeAcc;
use super::join::{Pending, PendingJoin};
use super::metrics::PerfAcc;
use super::report::{JoinCounts, Stage};
use super::segments::GroupAcc;
use super::tracker::{PerfWindow, Tracker};
use crate::codec::{CodecError, Reader, Writer};
use crate::plan::{PerfMetric, Severity, ALL_PERF_METRICS};

fn metric_id(m: PerfMetric) -> u8 {
    ALL_PERF_METRICS.iter().position(|x| *x == m).unwrap_or(0) as u8
}

fn metric_of(id: u8) -> Result<PerfMetric, CodecError> {
    ALL_PERF_METRICS
        .get(usize::from(id))
        .copied()
        .ok_or_else(|| CodecError(format!("unknown metric {id}")))
}

fn severity_of(v: u8) -> Result<Severity, CodecError> {
    match v {
        0 => Ok(Severity::Ok),
        1 => Ok(Severity::Warning),
        2 => Ok(Severity::Critical),
        _ => Err(CodecError(format!("unknown severity {v}"))),
    }
}

fn opt_f64(w: &mut Writer, v: Option<f64>) {
    match v {
        None => w.u8(0),
        Some(x) => {
            w.u8(1);
            w.f64(x);
        }
    }
}

fn read_opt_f64(r: &mut Reader<'_>) -> Result<Option<f64>, CodecError> {
    Ok(match r.u8()? {
        0 => None,
        _ => Some(r.f64()?),
    })
}

impl Tracker {
    /// Append the state to a checkpoint.
    pub(crate) fn write(&self, w: &mut Writer) {
        w.i64(self.now_ms);
        let c = self.counts;
        for v in [
            c.joined, c.replaced, c.expired, c.orphaned, c.invalid, c.evicted,
        ] {
            w.u64(v);
        }
        let names = self.classes.names();
        w.len(names.len());
        for n in names {
            w.str(n);
        }
        w.len(self.segments.values.len());
        for values in &self.segments.values {
            w.len(values.len());
            for v in values {
                w.str(v);
            }
        }
        w.len(self.segments.cells.len());
        for cell in &self.segments.cells {
            w.len(cell.len());
            for &v in cell {
                w.u64(u64::from(v));
            }
        }
        w.len(self.join.len());
        for e in self.join.iter() {
            w.u64(e.key);
            w.f64(e.pred);
            w.f64(e.out);
            w.i64(e.pos);
            w.u64(u64::from(e.ts_s) | u64::from(e.label) << 32 | u64::from(e.cell) << 48);
        }
        w.len(self.windows.len());
        for (k, win) in &self.windows {
            w.i64(*k);
            w.u64(win.predictions);
            w.i64(win.first_ms);
            w.i64(win.last_ms);
            w.u8(u8::from(win.closed) | u8::from(win.dirty) << 1);
            w.i64(i64::from(win.reported_tenths));
            w.len(win.raised.len());
            for &(m, stage, sev) in &win.raised {
                w.u8(metric_id(m));
                w.u8(u8::from(stage == Stage::Final));
                w.u8(sev as u8);
            }
            w.len(win.raised_estimate.len());
            for &(m, sev) in &win.raised_estimate {
                w.u8(metric_id(m));
                w.u8(sev as u8);
            }
            win.acc.write(w);
            win.cbpe.write(w);
            match &win.estimates {
                None => w.u8(0),
                Some(e) => {
                    w.u8(1);
                    w.len(e.len());
                    for &(m, v) in e {
                        w.u8(metric_id(m));
                        opt_f64(w, v);
                    }
                }
            }
            w.len(win.groups.len());
            for (&(k, v), g) in &win.groups {
                w.u64(u64::from(k));
                w.u64(u64::from(v));
                w.u64(g.predictions);
                g.acc.write(w);
            }
            w.len(win.raised_gap.len());
            for &(k, m, stage, sev) in &win.raised_gap {
                w.u64(u64::from(k));
                w.u8(metric_id(m));
                w.u8(u8::from(stage == Stage::Final));
                w.u8(sev as u8);
            }
        }
    }

    /// Continue from checkpoint bytes written by [`Tracker::write`].
    pub(crate) fn read(&mut self, r: &mut Reader<'_>) -> Result<(), CodecError> {
        let now_ms = r.i64()?;
        let mut c = [0u64; 6];
        for v in &mut c {
            *v = r.u64()?;
        }
        let counts = JoinCounts {
            joined: c[0],
            replaced: c[1],
            expired: c[2],
            orphaned: c[3],
            invalid: c[4],
            evicted: c[5],
            pending: 0,
        };
        let names = (0..r.len(8)?)
            .map(|_| r.str())
            .collect::<Result<Vec<_>, _>>()?;
        let values = (0..r.len(8)?)
            .map(|_| {
                (0..r.len(8)?)
                    .map(|_| r.str())
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cells = (0..r.len(8)?)
            .map(|_| {
                (0..r.len(8)?)
                    .map(|_| r.u64().map(|v| v as u16))
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        if values.len() != self.segments.keys.len() {
            return Err(CodecError("a plan with other segment keys".into()));
        }
        let mut join = PendingJoin::new(self.join.capacity());
        for _ in 0..r.len(40)? {
            let (key, pred, out, pos, packed) = (r.u64()?, r.f64()?, r.f64()?, r.i64()?, r.u64()?);
            // At a smaller budget than before, the oldest go first, as at run time.
            join.insert(Pending {
                key,
                pred,
                out,
                pos,
                ts_s: packed as u32,
                label: (packed >> 32) as u16,
                cell: (packed >> 48) as u16,
            });
        }
        let mut windows = BTreeMap::new();
        for _ in 0..r.len(40)? {
            let k = r.i64()?;
            let mut win = PerfWindow {
                predictions: r.u64()?,
                first_ms: r.i64()?,
                last_ms: r.i64()?,
                ..PerfWindow::default()
            };
            let flags = r.u8()?;
            win.closed = flags & 1 != 0;
            win.dirty = flags & 2 != 0;
            win.reported_tenths = r.i64()? as i32;
            for _ in 0..r.len(3)? {
                let m = metric_of(r.u8()?)?;
                let stage = if r.u8()? == 1 {
                    Stage::Final
                } else {
                    Stage::Provisional
                };
                win.raised.push((m, stage, severity_of(r.u8()?)?));
            }
            for _ in 0..r.len(2)? {
                let m = metric_of(r.u8()?)?;
                win.raised_estimate.push((m, severity_of(r.u8()?)?));
            }
            win.acc = PerfAcc::read(r)?;
            win.cbpe = CbpeAcc::read(r)?;
            if r.u8()? == 1 {
                let e = (0..r.len(2)?)
                    .map(|_| Ok((metric_of(r.u8()?)?, read_opt_f64(r)?)))
                    .collect::<Result<Vec<_>, CodecError>>()?;
                win.estimates = Some(e);
            }
            for _ in 0..r.len(24)? {
                let key = (r.u64()? as u16, r.u64()? as u16);
                let predictions = r.u64()?;
                let acc = PerfAcc::read(r)?;
                win.groups.insert(key, GroupAcc { predictions, acc });
            }
            for _ in 0..r.len(11)? {
                let k = r.u64()? as u16;
                let m = metric_of(r.u8()?)?;
                let stage = if r.u8()? == 1 {
                    Stage::Final
                } else {
                    Stage::Provisional
                };
                win.raised_gap.push((k, m, stage, severity_of(r.u8()?)?));
            }
            windows.insert(k, win);
        }
        self.now_ms = now_ms;
        self.counts = counts;
        self.classes.restore(names);
        self.segments.restore(values, cells);
        self.awaiting = join.iter().filter(|e| !e.has_outcome()).count() as u64;
        self.join = join;
        self.windows = windows;
        Ok(())
    }
}

impl PerfAcc {
    pub(crate) fn write(&self, w: &mut Writer) {
        let (k, confusion, pairs, sums, ece, reg) = self.parts();
        w.u64(self.n);
        w.len(k);
        for &c in confusion {
            w.u64(c);
        }
        for list in [pairs.0, pairs.1] {
            w.len(list.len());
            for &(s, y) in list {
                w.f64(s);
                w.u8(u8::from(y));
            }
        }
        w.f64(sums.0);
        w.f64(sums.1);
        w.len(ece.len());
        for &(n, s, y) in ece {
            w.u64(n);
            w.f64(s);
            w.u64(y);
        }
        for &x in reg {
            w.f64(x);
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<PerfAcc, CodecError> {
        let n = r.u64()?;
        let k = r.len(0)?;
        if k > 1000 {
            return Err(CodecError(format!("{k} classes")));
        }
        let confusion = (0..k * k).map(|_| r.u64()).collect::<Result<Vec<_>, _>>()?;
        let mut list = || {
            (0..r.len(9)?)
                .map(|_| Ok((r.f64()?, r.u8()? == 1)))
                .collect::<Result<Vec<_>, CodecError>>()
        };
        let pairs = (list()?, list()?);
        let sums = (r.f64()?, r.f64()?);
        let ece = (0..r.len(24)?)
            .map(|_| Ok((r.u64()?, r.f64()?, r.u64()?)))
            .collect::<Result<Vec<_>, CodecError>>()?;
        let mut reg = [0.0; 5];
        for x in &mut reg {
            *x = r.f64()?;
        }
        Ok(PerfAcc::from_parts(n, k, confusion, pairs, sums, ece, reg))
    }
}

impl CbpeAcc {
    pub(crate) fn write(&self, w: &mut Writer) {
        let (n, sums, scores) = self.parts();
        w.u64(n);
        for x in sums {
            w.f64(x);
        }
        w.len(scores.len());
        for &(s, p) in scores {
            w.f64(s);
            w.f64(p);
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<CbpeAcc, CodecError> {
        let n = r.u64()?;
        let mut sums = [0.0; 4];
        for x in &mut sums {
            *x = r.f64()?;
        }
        let scores = (0..r.len(16)?)
            .map(|_| Ok((r.f64()?, r.f64()?)))
            .collect::<Result<Vec<_>, CodecError>>()?;
        Ok(CbpeAcc::from_parts(n, sums, scores))
    }
}
