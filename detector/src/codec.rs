//! A small binary codec for checkpoints: little-endian integers and floats (bit-exact),
//! length-prefixed strings and byte runs. The reader checks every length against what
//! is left, so damaged input is an error, never a panic or a huge allocation.

/// Damaged or foreign checkpoint bytes.
#[derive(Debug, thiserror::Error)]
#[error("checkpoint: {0}")]
pub struct CodecError(pub String);

/// Appends values to a buffer.
#[derive(Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    /// Eight bytes.
    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    /// Eight bytes.
    pub fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    /// A length or count.
    pub fn len(&mut self, n: usize) {
        self.u64(n as u64);
    }
    /// Bit-exact.
    pub fn f64(&mut self, v: f64) {
        self.0.extend_from_slice(&v.to_bits().to_le_bytes());
    }
    /// Length, then UTF-8 bytes.
    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    /// Length, then bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.0.extend_from_slice(b);
    }
}

/// Reads values in the order a [`Writer`] wrote them.
pub struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// Read `buf` from its start.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, at: 0 }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| CodecError(format!("truncated at byte {}", self.at)))?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn eight(&mut self) -> Result<[u8; 8], CodecError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(a)
    }
    /// One byte.
    pub fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }
    /// Eight bytes.
    pub fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(self.eight()?))
    }
    /// Eight bytes.
    pub fn i64(&mut self) -> Result<i64, CodecError> {
        Ok(i64::from_le_bytes(self.eight()?))
    }
    /// A count of items of at least `item` bytes each: refused if the rest of the input
    /// cannot hold that many.
    pub fn len(&mut self, item: usize) -> Result<usize, CodecError> {
        let n = self.u64()?;
        let left = (self.buf.len() - self.at) as u64;
        if n.saturating_mul(item.max(1) as u64) > left {
            return Err(CodecError(format!(
                "a count of {n} at byte {} exceeds the input",
                self.at
            )));
        }
        Ok(n as usize)
    }
    /// Bit-exact.
    pub fn f64(&mut self) -> Result<f64, CodecError> {
        Ok(f64::from_bits(self.u64()?))
    }
    /// A string.
    pub fn str(&mut self) -> Result<String, CodecError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| CodecError("a string is not UTF-8".into()))
    }
    /// A byte run.
    pub fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let n = self.len(1)?;
        self.take(n)
    }
    /// Whether everything was read.
    pub fn done(&self) -> bool {
        self.at == self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage_is_an_error() {
        let mut w = Writer::default();
        w.u8(7);
        w.i64(-5);
        w.f64(-0.1);
        w.f64(f64::NAN);
        w.str("région");
        let mut r = Reader::new(&w.0);
        assert_eq!(r.u8().expect("u8"), 7);
        assert_eq!(r.i64().expect("i64"), -5);
        assert_eq!(r.f64().expect("f64").to_bits(), (-0.1f64).to_bits());
        assert!(r.f64().expect("nan").is_nan());
        assert_eq!(r.str().expect("str"), "région");
        assert!(r.done());
        for cut in 0..w.0.len() {
            let mut r = Reader::new(&w.0[..cut]);
            let all = (|| -> Result<(), CodecError> {
                r.u8()?;
                r.i64()?;
                r.f64()?;
                r.f64()?;
                r.str()?;
                Ok(())
            })();
            assert!(all.is_err(), "cut at {cut}");
        }
        // A count larger than the input is refused before anything is allocated.
        let mut w = Writer::default();
        w.u64(u64::MAX);
        assert!(Reader::new(&w.0).len(8).is_err());
    }
}
