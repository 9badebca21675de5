//! The on-disk record: `len: u32 LE | crc: u32 LE | seq: u64 LE | body`, where
//! `body = key_len: u16 LE | key | payload` and `crc` is CRC32C over `seq | body`.

/// Bytes before the body: len, crc, seq.
pub(super) const HEADER: usize = 4 + 4 + 8;
/// Largest body accepted (a record must fit in a Kafka message anyway).
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// One event as it will be produced: the Kafka key and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolRecord {
    /// Kafka key (the system id).
    pub key: String,
    /// Kafka payload.
    pub payload: Vec<u8>,
}

pub(super) fn encode(seq: u64, r: &SpoolRecord, out: &mut Vec<u8>) {
    let key = &r.key.as_bytes()[..r.key.len().min(u16::MAX as usize)];
    let body_len = 2 + key.len() + r.payload.len();
    let start = out.len();
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&r.payload);
    let crc = crc32c::crc32c(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// What lies at a position of a segment buffer.
pub(super) enum Decoded {
    /// A record: sequence, record, bytes taken.
    Record(u64, SpoolRecord, usize),
    /// The buffer ends inside the record (a torn tail, or a read racing a write).
    Incomplete,
    /// Length or CRC check failed.
    Corrupt,
}

pub(super) fn decode_at(buf: &[u8], at: usize) -> Decoded {
    let Some(head) = buf.get(at..at + HEADER) else {
        return Decoded::Incomplete;
    };
    let word = |r: std::ops::Range<usize>| {
        let mut b = [0u8; 8];
        b[..r.len()].copy_from_slice(&head[r]);
        u64::from_le_bytes(b)
    };
    let len = word(0..4) as usize;
    if !(2..=MAX_BODY).contains(&len) {
        return Decoded::Corrupt;
    }
    let crc = word(4..8) as u32;
    let seq = word(8..16);
    let Some(body) = buf.get(at + HEADER..at + HEADER + len) else {
        return Decoded::Incomplete;
    };
    if crc32c::crc32c(&buf[at + 8..at + HEADER + len]) != crc {
        return Decoded::Corrupt;
    }
    let key_len = u16::from_le_bytes([body[0], body[1]]) as usize;
    let Some(key) = body
        .get(2..2 + key_len)
        .and_then(|k| std::str::from_utf8(k).ok())
    else {
        return Decoded::Corrupt;
    };
    Decoded::Record(
        seq,
        SpoolRecord {
            key: key.to_owned(),
            payload: body[2 + key_len..].to_vec(),
        },
        HEADER + len,
    )
}
