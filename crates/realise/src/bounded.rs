//! Reading a whole document from a source drv does not control (a binary
//! cache, a package index) without letting the source decide how much
//! memory drv spends: the read stops one byte past the limit, so an endless
//! or oversized body costs at most `limit + 1` bytes however long it is.

use std::io::{self, Read};

/// A document read with [`read_bounded`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Bounded {
    /// The whole document, at most the limit long.
    Complete(Vec<u8>),
    /// The source had more than the limit; what was read is dropped.
    TooLarge,
}

/// Read `reader` to its end, unless it holds more than `limit` bytes.
///
/// Contract: never reads more than `limit + 1` bytes from `reader` and never
/// holds more than that in memory.
pub(crate) fn read_bounded(reader: impl Read, limit: u64) -> io::Result<Bounded> {
    let mut out = Vec::new();
    reader.take(limit.saturating_add(1)).read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Ok(Bounded::TooLarge);
    }
    Ok(Bounded::Complete(out))
}

/// A reader that fails once more than `limit` bytes came through: for
/// streams whose length was declared beforehand (a NAR's `FileSize`), so a
/// source that sends more is stopped while it streams, not after.
pub(crate) struct LimitedReader<R> {
    inner: R,
    remaining: u64,
    limit: u64,
    what: &'static str,
}

impl<R> LimitedReader<R> {
    pub(crate) fn new(inner: R, limit: u64, what: &'static str) -> Self {
        Self { inner, remaining: limit, limit, what }
    }
}

impl<R: Read> Read for LimitedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // One byte more than allowed is asked for, so a longer stream is
        // told apart from one that ends exactly at the limit.
        let want = buf.len().min(usize::try_from(self.remaining.saturating_add(1)).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > self.remaining {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is longer than its declared {} bytes", self.what, self.limit),
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An endless source: counts what was taken from it.
    struct Endless(u64);
    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            buf.fill(b'j');
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
    }

    #[test]
    fn an_endless_source_is_read_one_byte_past_the_limit() {
        let mut src = Endless(0);
        assert_eq!(read_bounded(&mut src, 1000).unwrap(), Bounded::TooLarge);
        assert_eq!(src.0, 1001);
        assert_eq!(read_bounded(&b"abc"[..], 3).unwrap(), Bounded::Complete(b"abc".to_vec()));
        assert_eq!(read_bounded(&b"abcd"[..], 3).unwrap(), Bounded::TooLarge);
    }

    #[test]
    fn a_declared_length_is_enforced_while_streaming() {
        let mut exact = LimitedReader::new(&b"12345"[..], 5, "NAR file");
        let mut out = Vec::new();
        exact.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"12345");
        let mut src = Endless(0);
        let err = LimitedReader::new(&mut src, 4096, "NAR file").read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(src.0 <= 4096 + 8192, "read {} bytes", src.0);
    }
}
