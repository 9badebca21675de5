use super::*;
use proptest::prelude::*;

impl Spool {
    /// Records from `from` on, at most `max`, as the sender's reader sees them.
    fn read(&self, from: u64, max: usize) -> io::Result<Vec<(u64, SpoolRecord)>> {
        let mut out = Vec::new();
        SpoolReader::new(&self.dir, from)
            .read(self.next_seq, max, &mut out)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(out)
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("dw-spool-{name}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn rec(i: u64) -> SpoolRecord {
    SpoolRecord {
        key: format!("system-{}", i % 3),
        payload: format!(
            "{{\"n\":{i},\"pad\":\"{}\"}}",
            "x".repeat((i % 50) as usize)
        )
        .into_bytes(),
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

/// Records 1..=100 in ten appends of 10 with 1,000-byte segments: several segments,
/// since segments roll between appends.
fn write_hundred_in_small_segments(dir: &Path) {
    let (mut s, _) = Spool::open(dir, 1_000, FsyncPolicy::Always).expect("open");
    for b in 0..10 {
        let batch: Vec<SpoolRecord> = (b * 10 + 1..=b * 10 + 10).map(rec).collect();
        s.append(&batch).expect("append");
    }
}

/// Damage one byte of a file, as a bad disk would.
fn flip_byte(path: &Path, at: usize) {
    let mut bytes = fs::read(path).expect("read");
    bytes[at] ^= 0xff;
    fs::write(path, bytes).expect("write");
}

#[test]
fn append_read_confirm_and_reopen() {
    let d = TempDir::new("basic");
    let (mut s, r) = Spool::open(&d.0, 2_000, FsyncPolicy::Always).expect("open");
    assert_eq!(r, Recovery::default());
    let batch: Vec<SpoolRecord> = (1..=100).map(rec).collect();
    assert_eq!(s.append(&batch).expect("append"), 100);
    assert_eq!(s.append(&batch[..10]).expect("append"), 110);
    assert!(segments(&d.0).len() > 1, "small segments roll");
    let got = s.read(95, 10).expect("read");
    assert_eq!(
        got.iter().map(|(q, _)| *q).collect::<Vec<_>>(),
        (95..105).collect::<Vec<_>>()
    );
    assert_eq!(got[0].1, rec(95));
    s.confirm(60).expect("confirm");
    drop(s);
    let (s, r) = Spool::open(&d.0, 2_000, FsyncPolicy::Always).expect("reopen");
    assert_eq!(r, Recovery::default());
    assert_eq!(s.confirmed(), 60);
    assert_eq!(s.next_seq(), 111);
    let rest = s.read(61, usize::MAX).expect("read");
    assert_eq!(rest.len(), 50);
    assert_eq!(rest[0], (61, rec(61)));
    assert_eq!(rest[49], (110, rec(10)));
}

#[test]
fn confirmed_segments_are_deleted_but_never_the_open_one() {
    let d = TempDir::new("delete");
    let (mut s, _) = Spool::open(&d.0, 1_000, FsyncPolicy::Interval).expect("open");
    let batch: Vec<SpoolRecord> = (1..=200).map(rec).collect();
    s.append(&batch).expect("append");
    s.sync().expect("sync");
    let before = segments(&d.0).len();
    s.confirm(200).expect("confirm");
    assert_eq!(
        segments(&d.0).len(),
        1,
        "from {before} segments to the open one"
    );
    assert!(s
        .read(1, usize::MAX)
        .expect("read")
        .iter()
        .all(|(q, _)| *q <= 200));
    assert_eq!(s.append(&[rec(7)]).expect("append"), 201);
}

#[test]
fn a_torn_tail_is_truncated_and_the_spool_serves() {
    let d = TempDir::new("torn");
    let (mut s, _) = Spool::open(&d.0, 1 << 20, FsyncPolicy::Always).expect("open");
    s.append(&(1..=20).map(rec).collect::<Vec<_>>())
        .expect("append");
    drop(s);
    let last = segments(&d.0).pop().expect("segment");
    let len = fs::metadata(&last).expect("meta").len();
    OpenOptions::new()
        .write(true)
        .open(&last)
        .expect("open")
        .set_len(len - 5)
        .expect("cut");
    let (mut s, r) = Spool::open(&d.0, 1 << 20, FsyncPolicy::Always).expect("reopen");
    assert!(r.truncated_bytes > 0 && r.quarantined.is_empty(), "{r:?}");
    assert_eq!(
        s.next_seq(),
        20,
        "the torn record was never acknowledged; its seq is reused"
    );
    assert_eq!(s.read(1, usize::MAX).expect("read").len(), 19);
    assert_eq!(s.append(&[rec(99)]).expect("append"), 20);
}

#[test]
fn a_corrupt_segment_is_quarantined_counted_and_the_rest_served() {
    let d = TempDir::new("corrupt");
    write_hundred_in_small_segments(&d.0);
    let segs = segments(&d.0);
    assert!(segs.len() >= 3);
    flip_byte(&segs[0], 30);
    let (mut s, r) = Spool::open(&d.0, 1_000, FsyncPolicy::Always).expect("reopen, never crash");
    assert_eq!(r.quarantined.len(), 1);
    assert!(r.quarantined[0].to_string_lossy().ends_with(".seg.corrupt"));
    assert!(r.lost >= 1, "{r:?}");
    let rest = s.read(1, usize::MAX).expect("read");
    assert!(!rest.is_empty() && rest.iter().all(|(q, r)| *r == rec(*q)));
    assert_eq!(rest.last().map(|(q, _)| *q), Some(100));
    assert_eq!(s.append(&[rec(1)]).expect("append"), 101);
}

#[test]
fn a_corrupt_middle_segment_loses_only_the_damaged_record() {
    let d = TempDir::new("middle");
    write_hundred_in_small_segments(&d.0);
    let segs = segments(&d.0);
    assert!(segs.len() >= 4);
    let first_of = |p: &PathBuf| -> u64 {
        p.file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse().ok())
            .expect("seq")
    };
    // Byte 20 is in the first record of the second segment.
    let damaged = first_of(&segs[1]);
    flip_byte(&segs[1], 20);
    let (s, r) = Spool::open(&d.0, 1_000, FsyncPolicy::Always).expect("reopen");
    assert_eq!(r.quarantined.len(), 1, "the damaged file is kept: {r:?}");
    assert_eq!(r.lost, 1, "{r:?}");
    let got = s.read(1, usize::MAX).expect("read");
    assert!(got.iter().all(|(q, r)| *r == rec(*q)));
    let seqs: Vec<u64> = got.iter().map(|(q, _)| *q).collect();
    let expected: Vec<u64> = (1..=100).filter(|q| *q != damaged).collect();
    assert_eq!(seqs, expected, "every record but the damaged one is served");
}

/// One flipped byte at a quarter of the only segment: the records after it are no torn
/// tail. They are served, and the one damaged record is counted lost (it used to cut
/// 2,248 of 3,000 acknowledged records with nothing counted).
#[test]
fn damage_inside_the_last_segment_is_not_a_torn_tail() {
    let d = TempDir::new("lastmid");
    let (mut s, _) = Spool::open(&d.0, 1 << 24, FsyncPolicy::Always).expect("open");
    s.append(&(1..=3000).map(rec).collect::<Vec<_>>())
        .expect("append");
    drop(s);
    let segs = segments(&d.0);
    assert_eq!(segs.len(), 1);
    let len = fs::metadata(&segs[0]).expect("meta").len() as usize;
    flip_byte(&segs[0], len / 4);
    let (mut s, r) = Spool::open(&d.0, 1 << 24, FsyncPolicy::Always).expect("reopen");
    assert_eq!(r.lost, 1, "{r:?}");
    assert_eq!(r.truncated_bytes, 0, "{r:?}");
    assert_eq!(r.quarantined.len(), 1, "kept for inspection: {r:?}");
    let got = s.read(1, usize::MAX).expect("read");
    assert_eq!(got.len(), 2999);
    assert!(got.iter().all(|(q, r)| *r == rec(*q)));
    assert_eq!(s.append(&[rec(3001)]).expect("append"), 3001);
    drop(s);
    // A clean restart finds nothing more to repair.
    let (s, r) = Spool::open(&d.0, 1 << 24, FsyncPolicy::Always).expect("reopen");
    assert_eq!(r, Recovery::default());
    assert_eq!(s.read(1, usize::MAX).expect("read").len(), 3000);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// One byte damaged anywhere in any segment: every record recovered is intact, and
    /// every acknowledged, unconfirmed record not recovered is counted lost, except the
    /// final record of the last segment, which a torn write can explain.
    #[test]
    fn damage_anywhere_is_recovered_around_or_counted(
        n in 1u64..300,
        segment_bytes in 200u64..4_000,
        confirmed_share in 0u64..4,
        at_share in 0.0f64..1.0,
    ) {
        let d = TempDir::new("damage");
        let confirmed = n * confirmed_share / 4;
        {
            let (mut s, _) = Spool::open(&d.0, segment_bytes, FsyncPolicy::Always).expect("open");
            for chunk in (1..=n).collect::<Vec<_>>().chunks(7) {
                s.append(&chunk.iter().copied().map(rec).collect::<Vec<_>>()).expect("append");
            }
            s.confirm(confirmed).expect("confirm");
        }
        let segs = segments(&d.0);
        let sizes: Vec<usize> = segs.iter().map(|p| fs::metadata(p).map_or(0, |m| m.len() as usize)).collect();
        let total: usize = sizes.iter().sum();
        prop_assume!(total > 0);
        let mut at = ((total as f64) * at_share) as usize % total;
        let mut seg = 0;
        while at >= sizes[seg] {
            at -= sizes[seg];
            seg += 1;
        }
        flip_byte(&segs[seg], at);
        let (mut s, r) = Spool::open(&d.0, segment_bytes, FsyncPolicy::Always).expect("reopen, never crash");
        let got = s.read(confirmed + 1, usize::MAX).expect("read");
        prop_assert!(got.iter().all(|(q, r)| *r == rec(*q)), "recovered records are intact");
        let seen: std::collections::HashSet<u64> = got.iter().map(|(q, _)| *q).collect();
        let missing: Vec<u64> = (confirmed + 1..=n).filter(|q| !seen.contains(q)).collect();
        prop_assert!(missing.len() <= 1, "one byte loses at most one record: {missing:?}");
        let torn_final = missing == [n] && r.lost == 0 && seg + 1 == segs.len();
        prop_assert!(
            r.lost == missing.len() as u64 || torn_final,
            "lost {} but missing {missing:?} ({r:?})", r.lost
        );
        let next = s.append(&[rec(n + 1)]).expect("append after recovery");
        prop_assert!(next == n + 1 || (torn_final && next == n));
    }
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<u16>),
    Confirm(u8),
    Restart,
    TornWrite(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => proptest::collection::vec(any::<u16>(), 1..20).prop_map(Op::Append),
        2 => any::<u8>().prop_map(Op::Confirm),
        1 => Just(Op::Restart),
        1 => any::<u8>().prop_map(Op::TornWrite),
    ]
}

fn record_of(v: u16) -> SpoolRecord {
    SpoolRecord {
        key: format!("k{}", v % 7),
        payload: vec![(v % 251) as u8; (v % 300) as usize],
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The spool against an in-memory model: after any sequence of appends, confirms,
    /// restarts and torn writes (a crash mid-append), the unconfirmed records on disk
    /// are exactly the model's, in order, with their sequence numbers; and a reader
    /// following the log as the sender does (restarted with the process) has seen
    /// exactly the model's records since it started, across rolls and deletions.
    #[test]
    fn spool_matches_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let d = TempDir::new("model");
        let open = || Spool::open(&d.0, 4_000, FsyncPolicy::Interval).expect("open");
        let (mut s, _) = open();
        let mut model: Vec<(u64, SpoolRecord)> = Vec::new();
        let mut confirmed = 0u64;
        let mut follower = SpoolReader::new(&d.0, 1);
        let mut followed: Vec<(u64, SpoolRecord)> = Vec::new();
        let mut follow_from = 1u64;
        for op in ops {
            match op {
                Op::Append(vals) => {
                    let recs: Vec<SpoolRecord> = vals.iter().map(|v| record_of(*v)).collect();
                    let first = s.next_seq();
                    let last = s.append(&recs).expect("append");
                    prop_assert_eq!(last, first + recs.len() as u64 - 1);
                    for (i, r) in recs.into_iter().enumerate() {
                        model.push((first + i as u64, r));
                    }
                }
                Op::Confirm(frac) => {
                    let pending: Vec<u64> = model.iter().map(|(q, _)| *q).filter(|q| *q > confirmed).collect();
                    if let Some(&q) = pending.get((frac as usize * pending.len()) / 256) {
                        s.confirm(q).expect("confirm");
                        confirmed = q;
                    }
                }
                Op::Restart => {
                    drop(s);
                    let (s2, r) = open();
                    prop_assert_eq!(r, Recovery::default());
                    s = s2;
                    follower = SpoolReader::new(&d.0, confirmed + 1);
                    followed.clear();
                    follow_from = confirmed + 1;
                }
                Op::TornWrite(cut) => {
                    // A crash while writing the last record: only an unconfirmed record in
                    // the open segment can be torn (a confirmed one was fully written).
                    let Some((q, r)) = model.last().cloned() else { continue };
                    let seg = segments(&d.0).pop().expect("segment");
                    let size = (HEADER + 2 + r.key.len() + r.payload.len()) as u64;
                    let len = fs::metadata(&seg).expect("meta").len();
                    if q <= confirmed || len < size {
                        continue;
                    }
                    drop(s);
                    let cut = 1 + u64::from(cut) % size;
                    OpenOptions::new().write(true).open(&seg).expect("open").set_len(len - cut).expect("cut");
                    let (s2, r) = open();
                    // The part of the record left behind is cut; a cut of the whole record
                    // leaves nothing to truncate (the write never began).
                    prop_assert_eq!(r.truncated_bytes, size - cut);
                    prop_assert!(r.quarantined.is_empty());
                    model.pop();
                    s = s2;
                    follower = SpoolReader::new(&d.0, confirmed + 1);
                    followed.clear();
                    follow_from = confirmed + 1;
                }
            }
            follower.read(s.next_seq(), usize::MAX, &mut followed).expect("follow");
            let since: Vec<(u64, SpoolRecord)> =
                model.iter().filter(|(q, _)| *q >= follow_from).cloned().collect();
            prop_assert_eq!(&followed, &since);
            let on_disk = s.read(confirmed + 1, usize::MAX).expect("read");
            let expected: Vec<(u64, SpoolRecord)> =
                model.iter().filter(|(q, _)| *q > confirmed).cloned().collect();
            prop_assert_eq!(on_disk, expected);
            prop_assert_eq!(s.confirmed(), confirmed);
        }
    }
}

fn read_all(r: &mut SpoolReader, upto: u64) -> Vec<u64> {
    let mut out = Vec::new();
    r.read(upto, usize::MAX, &mut out).expect("read");
    out.into_iter().map(|(seq, _)| seq).collect()
}

#[test]
fn the_reader_follows_the_writer_across_segments_and_stops_at_the_published_end() {
    let d = TempDir::new("follow");
    let (mut s, _) = Spool::open(&d.0, 1_000, FsyncPolicy::Interval).expect("open");
    let mut r = SpoolReader::new(&d.0, 1);
    assert!(read_all(&mut r, 1).is_empty());
    let mut seen = Vec::new();
    for b in 0..10u64 {
        let batch: Vec<SpoolRecord> = (b * 10 + 1..=b * 10 + 10).map(rec).collect();
        let last = s.append(&batch).expect("append");
        // Only half of this batch is published yet: the reader must not pass it.
        seen.extend(read_all(&mut r, last - 4));
        assert_eq!(r.position(), last - 4);
        seen.extend(read_all(&mut r, last + 1));
    }
    assert_eq!(seen, (1..=100).collect::<Vec<_>>());
    assert!(segments(&d.0).len() > 3);
    // A reader starting inside deleted (confirmed) segments resumes at the next record
    // still on disk.
    s.confirm(60).expect("confirm");
    let mut again = SpoolReader::new(&d.0, 55);
    let rest = read_all(&mut again, 101);
    assert!(rest[0] <= 61 && rest.ends_with(&[99, 100]), "{rest:?}");
    assert!(rest.windows(2).all(|w| w[1] == w[0] + 1));
}

#[test]
fn the_reader_rereads_bytes_a_failed_write_left_behind() {
    // A reader that buffered past the published end must not trust those bytes: after a
    // failed write is cut back, the same sequences are written again with other content.
    let a = TempDir::new("stale-a");
    let b = TempDir::new("stale-b");
    let same_size = |tag: u8, i: u64| SpoolRecord {
        key: "k".into(),
        payload: vec![tag; 20 + i as usize],
    };
    let (mut sa, _) = Spool::open(&a.0, 1 << 20, FsyncPolicy::Interval).expect("open");
    sa.append(&(1..=3).map(|i| same_size(b'a', i)).collect::<Vec<_>>())
        .expect("append");
    let (mut sb, _) = Spool::open(&b.0, 1 << 20, FsyncPolicy::Interval).expect("open");
    sb.append(&(1..=3).map(|i| same_size(b'b', i)).collect::<Vec<_>>())
        .expect("append");
    let mut r = SpoolReader::new(&a.0, 1);
    let mut out = Vec::new();
    r.read(2, usize::MAX, &mut out).expect("read");
    assert_eq!(out.len(), 1);
    // The "rewritten" file: record 1 identical in length, 2 and 3 with new content.
    let seg = segments(&a.0).remove(0);
    let fresh = fs::read(&segments(&b.0)[0]).expect("read");
    fs::write(&seg, fresh).expect("write");
    out.clear();
    r.read(4, usize::MAX, &mut out).expect("read");
    let got: Vec<(u64, u8)> = out.iter().map(|(s, r)| (*s, r.payload[0])).collect();
    assert_eq!(got, [(2, b'b'), (3, b'b')]);
}

#[test]
fn the_budget_reclaims_a_fully_confirmed_open_segment() {
    let d = TempDir::new("budget");
    let (mut s, _) = Spool::open(&d.0, 1 << 20, FsyncPolicy::Interval).expect("open");
    let last = s
        .append(&(1..=20).map(rec).collect::<Vec<_>>())
        .expect("append");
    let used = s.bytes();
    assert!(
        !s.has_room(used, used + 10).expect("room"),
        "unconfirmed bytes count"
    );
    s.confirm(last).expect("confirm");
    // The open segment is never deleted, so a full-but-confirmed spool rolls first.
    assert!(s.has_room(used, used + 10).expect("room"));
    assert_eq!(s.bytes(), 0);
    assert_eq!(s.append(&[rec(21)]).expect("append"), last + 1);
}

#[test]
fn the_reader_skips_a_quarantined_middle_segment() {
    let d = TempDir::new("gap");
    write_hundred_in_small_segments(&d.0);
    let segs = segments(&d.0);
    flip_byte(&segs[1], 20);
    let (s, recovery) = Spool::open(&d.0, 1_000, FsyncPolicy::Always).expect("open");
    assert!(recovery.lost > 0);
    let mut r = SpoolReader::new(&d.0, 1);
    let got = read_all(&mut r, s.next_seq());
    let first_lost = got.windows(2).find(|w| w[1] != w[0] + 1).expect("a gap");
    assert_eq!(got.len() as u64 + (first_lost[1] - first_lost[0] - 1), 100);
    assert_eq!(got.last(), Some(&100));
}

#[test]
fn a_budget_larger_than_the_filesystem_is_warned_about() {
    let here = filesystem_bytes(Path::new(env!("CARGO_MANIFEST_DIR"))).expect("statvfs");
    assert!(here > 0);
    // A data_dir that does not exist yet is measured on its nearest existing ancestor.
    let missing = Path::new(env!("CARGO_MANIFEST_DIR")).join("no/such/dir/yet");
    assert_eq!(filesystem_bytes(&missing), Some(here));
    let w = capacity_warning(here + 1, Some(here)).expect("warned");
    assert!(
        w.contains("spool.max_spool_bytes") && w.contains(&here.to_string()),
        "{w}"
    );
    assert_eq!(capacity_warning(here, Some(here)), None);
    assert_eq!(capacity_warning(u64::MAX, None), None);
}
