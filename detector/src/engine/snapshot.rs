//! A monitor's state as bytes, and back: what a driver checkpoints so a restart or
//! another instance continues exactly where this one stopped. It holds the window
//! sequence (`closed_before`, the count, the watermark), the latest timestamp of the
//! skew bound, and every open window's values in arrival order, so a restored monitor
//! gives bit-identical reports to one that never stopped.
//!
//! With `[performance]` it also holds the performance state (`perf/snapshot.rs`:
//! predictions awaiting outcomes, windows open to outcomes), under version 2; a plan
//! without it writes version 1, as before.
//!
//! Only a monitoring system with no closed window awaiting evaluation has a snapshot: a
//! reference still being collected is rebuilt from Kafka (the driver holds its offsets).

use chrono::{DateTime, Utc};

use super::monitor::Phase;
use super::*;
use crate::codec::{CodecError, Reader, Writer};
use crate::input::batch::quick_key;

const VERSION: u8 = 1;
/// Version 1 followed by the performance state.
const VERSION_PERF: u8 = 2;

fn write_ts(w: &mut Writer, t: Option<DateTime<Utc>>) {
    match t {
        None => w.u8(0),
        Some(t) => {
            w.u8(1);
            w.i64(t.timestamp());
            w.u64(u64::from(t.timestamp_subsec_nanos()));
        }
    }
}

fn read_ts(r: &mut Reader<'_>) -> Result<Option<DateTime<Utc>>, CodecError> {
    match r.u8()? {
        0 => Ok(None),
        _ => {
            let (s, n) = (r.i64()?, r.u64()?);
            DateTime::from_timestamp(s, n as u32)
                .map(Some)
                .ok_or_else(|| CodecError("a timestamp out of range".into()))
        }
    }
}

/// One window: its counts, times, each signal's values, and (version 2) the windows of
/// its groups of people.
fn write_window(w: &mut Writer, win: &Window, with_cells: bool) {
    w.len(win.events);
    w.len(win.outcomes);
    write_ts(w, win.first);
    write_ts(w, win.last);
    for acc in &win.signals {
        w.len(acc.num.len());
        for x in &acc.num {
            w.f64(*x);
        }
        w.len(acc.missing);
        w.len(acc.type_errors);
        w.u8(u8::from(acc.cat.map.is_some()));
        let cats: Vec<(&String, &u64)> = acc.cat.iter().collect();
        w.len(cats.len());
        for (c, n) in cats {
            w.str(c);
            w.u64(*n);
        }
    }
    if with_cells {
        w.len(win.cells.len());
        for (g, cell) in &win.cells {
            w.u64(u64::from(*g));
            // A group's window has no groups of its own.
            write_window(w, cell, false);
        }
    }
}

fn read_window(
    r: &mut Reader<'_>,
    signals: &[crate::plan::Signal],
    with_cells: bool,
) -> Result<Window, CodecError> {
    let mut win = Window::new(signals, 0);
    win.events = r.len(0)?;
    win.outcomes = r.len(0)?;
    win.first = read_ts(r)?;
    win.last = read_ts(r)?;
    for acc in &mut win.signals {
        let n = r.len(8)?;
        acc.num = (0..n).map(|_| r.f64()).collect::<Result<_, _>>()?;
        acc.missing = r.len(0)?;
        acc.type_errors = r.len(0)?;
        let as_map = r.u8()? == 1;
        let mut cat = CatCounts::default();
        let pairs = (0..r.len(16)?)
            .map(|_| Ok((r.str()?, r.u64()?)))
            .collect::<Result<Vec<_>, CodecError>>()?;
        if as_map {
            cat.map = Some(pairs.into_iter().collect());
        } else {
            cat.list = pairs
                .into_iter()
                .map(|(c, n)| (quick_key(&c), c, n))
                .collect();
        }
        acc.cat = cat;
    }
    if with_cells {
        for _ in 0..r.len(16)? {
            let g = r.u64()? as u16;
            let cell = read_window(r, signals, false)?;
            win.cells.insert(g, cell);
        }
    }
    Ok(win)
}

impl Monitor {
    /// The state to checkpoint, with the reference version it was computed against;
    /// `None` while the reference is collected or windows await evaluation.
    pub fn snapshot(&self) -> Option<(String, Vec<u8>)> {
        let Phase::Monitoring { reference, windows } = &self.phase else {
            return None;
        };
        if !self.held.is_empty() {
            return None;
        }
        let mut w = Writer::default();
        w.u8(if self.perf.is_some() {
            VERSION_PERF
        } else {
            VERSION
        });
        w.i64(windows.closed_before);
        w.i64(windows.seq);
        w.i64(windows.watermark);
        w.i64(self.skew.latest_ms);
        w.len(self.signals.len());
        w.len(windows.open.len());
        let with_cells = self.perf.is_some();
        for (k, win) in &windows.open {
            w.i64(*k);
            write_window(&mut w, win, with_cells);
        }
        if let Some(t) = &self.perf {
            t.write(&mut w);
        }
        Some((reference.version.clone(), w.0))
    }

    /// Continue from a snapshot taken against reference `version`. Refused (the monitor
    /// unchanged) if the monitor is not monitoring, its reference is another, or the
    /// bytes are damaged or of another plan's shape.
    pub fn restore(&mut self, version: &str, bytes: &[u8]) -> Result<(), CodecError> {
        let signals = &self.signals;
        let Phase::Monitoring { reference, windows } = &mut self.phase else {
            return Err(CodecError("the reference is still being collected".into()));
        };
        if reference.version != version {
            return Err(CodecError(format!(
                "taken against reference {version}, this monitor has {}",
                reference.version
            )));
        }
        let mut r = Reader::new(bytes);
        let version_byte = r.u8()?;
        let with_perf = match version_byte {
            VERSION => false,
            VERSION_PERF => true,
            _ => return Err(CodecError("unknown snapshot version".into())),
        };
        if with_perf != self.perf.is_some() {
            return Err(CodecError("a plan with another [performance] table".into()));
        }
        let closed_before = r.i64()?;
        let seq = r.i64()?;
        let watermark = r.i64()?;
        let latest_ms = r.i64()?;
        if r.u64()? != signals.len() as u64 {
            return Err(CodecError("a plan with other signals".into()));
        }
        let mut open = std::collections::BTreeMap::new();
        for _ in 0..r.len(16)? {
            let k = r.i64()?;
            let win = read_window(&mut r, signals, with_perf)?;
            open.insert(k, win);
        }
        // Read into a copy, so damaged bytes leave the tracker as it was.
        let perf = match &self.perf {
            Some(t) => {
                let mut t = t.fresh();
                t.read(&mut r)?;
                Some(t)
            }
            None => None,
        };
        if !r.done() {
            return Err(CodecError("trailing bytes".into()));
        }
        if perf.is_some() {
            self.perf = perf;
        }
        windows.open = open;
        windows.closed_before = closed_before;
        windows.seq = seq;
        windows.watermark = watermark;
        self.skew.latest_ms = latest_ms;
        Ok(())
    }
}
