//! Two drivers of the same engine: [`mod@file`] (`driftwatch replay`, a backtest over files)
//! and [`kafka`] (`driftwatch detect`, the service). Both read events, drop repeated
//! predictions with [`dedup::Dedup`], resolve references through a
//! [`crate::reference_store::ReferenceStore`], and feed each system's
//! [`crate::engine::Monitor`] through its one entry, [`crate::engine::Input`], so a
//! backtest and production give the same window reports and alert ids.

pub mod dedup;
pub mod file;
pub mod kafka;
