//! NAR's token layer (Nix's `src/libutil/archive.cc` and `serialise.cc`):
//! every token is a little-endian `u64` length, the bytes, and zero
//! padding to a multiple of 8.

use std::io::{self, Read, Write};

pub(super) const MAGIC: &[u8] = b"nix-archive-1";
/// The token `)`, encoded: it closes every node and entry.
pub(super) const CLOSE: [u8; 16] = [1, 0, 0, 0, 0, 0, 0, 0, b')', 0, 0, 0, 0, 0, 0, 0];
pub(super) const ZEROS: [u8; 8] = [0; 8];
/// The longest entry name or symlink target drv reads: far above Linux's
/// limits (255 and 4095 bytes), so no real tree is refused, while a
/// malformed archive cannot ask for an unbounded allocation.
pub(super) const MAX_METADATA: u64 = 1 << 20;
/// The longest structural token (`directory`, `executable`, ...).
const MAX_CONTROL: u64 = 16;

pub(super) fn pad_len(len: u64) -> usize {
    ((8 - len % 8) % 8) as usize
}

pub(super) fn write_token(out: &mut (impl Write + ?Sized), bytes: &[u8]) -> io::Result<()> {
    out.write_all(&(bytes.len() as u64).to_le_bytes())?;
    out.write_all(bytes)?;
    out.write_all(&ZEROS[..pad_len(bytes.len() as u64)])
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Reads NAR tokens, refusing over-long ones and non-zero padding.
pub(super) struct TokenReader<R> {
    pub(super) inner: R,
}

impl<R: Read> TokenReader<R> {
    pub(super) fn read_u64(&mut self) -> io::Result<u64> {
        let mut b = [0u8; 8];
        self.inner.read_exact(&mut b).map_err(truncated)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Check the zero padding after `len` bytes of payload.
    pub(super) fn read_padding(&mut self, len: u64) -> io::Result<()> {
        let n = pad_len(len);
        let mut pad = [0u8; 8];
        self.inner.read_exact(&mut pad[..n]).map_err(truncated)?;
        if pad[..n].iter().any(|&b| b != 0) {
            return Err(invalid("non-zero padding".into()));
        }
        Ok(())
    }

    /// A token of at most `max` bytes into `buf` (cleared first).
    pub(super) fn read_into(&mut self, buf: &mut Vec<u8>, max: u64, what: &str) -> io::Result<()> {
        let len = self.read_u64()?;
        if len > max {
            return Err(invalid(format!("{what} of {len} bytes (at most {max})")));
        }
        buf.clear();
        (&mut self.inner).take(len).read_to_end(buf)?;
        if (buf.len() as u64) < len {
            return Err(truncated(io::ErrorKind::UnexpectedEof.into()));
        }
        self.read_padding(len)
    }

    /// A structural token.
    pub(super) fn control(&mut self) -> io::Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(MAX_CONTROL as usize);
        self.read_into(&mut buf, MAX_CONTROL, "token")?;
        Ok(buf)
    }

    pub(super) fn expect(&mut self, token: &[u8]) -> io::Result<()> {
        let got = self.control()?;
        if got != token {
            return Err(invalid(format!(
                "expected {:?}, got {:?}",
                String::from_utf8_lossy(token),
                String::from_utf8_lossy(&got)
            )));
        }
        Ok(())
    }

    /// Whether the archive ends here (nothing may follow it).
    pub(super) fn at_end(&mut self) -> io::Result<bool> {
        let mut b = [0u8; 1];
        loop {
            match self.inner.read(&mut b) {
                Ok(0) => return Ok(true),
                Ok(_) => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

fn truncated(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        invalid("the archive is truncated".into())
    } else {
        e
    }
}

/// Whether `name` can be a directory entry: non-empty, not `.` or `..`,
/// free of `/` and NUL (Nix's `parseDump` refuses the rest).
pub(super) fn is_valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}
