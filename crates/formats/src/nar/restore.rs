//! Unpacking a NAR into the file system: drv's one NAR decoder.
//!
//! Entries are created relative to the descriptor of the directory they
//! belong to, with `O_EXCL`/`O_NOFOLLOW`, so nothing is written outside the
//! destination whatever the archive says. Directories being unpacked are
//! kept on an explicit stack rather than by recursion: Nix's `parseDump` has
//! no depth limit, and neither does drv, while a hostile archive nested a
//! million levels deep ends with "too many open files", not a stack overflow.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rustix::fs::{mkdirat, openat, symlinkat, Mode, OFlags};

use super::wire::{self, TokenReader};

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// A directory being unpacked, and the name of its last entry (entries
/// must come in strictly increasing byte order, which also rules out
/// duplicates).
struct Open {
    fd: OwnedFd,
    previous: Option<Vec<u8>>,
}

/// Unpack the NAR on `reader` at `destination` (which must not exist; its
/// parent must). Leaves a partial tree on error: the caller removes it.
pub(super) fn restore(reader: impl Read, destination: &Path) -> io::Result<()> {
    let name = destination
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the destination must end in a file name"))?;
    let parent_path = destination.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let parent = rustix::fs::open(parent_path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;

    let mut r = TokenReader { inner: reader };
    r.expect(wire::MAGIC).map_err(|e| invalid(format!("not a NAR: {e}")))?;
    let mut names = Vec::new();
    let mut stack: Vec<Open> = Vec::new();
    if let Some(fd) = node(&mut r, parent.as_fd(), name)? {
        stack.push(Open { fd, previous: None });
    }
    while let Some(top) = stack.last_mut() {
        let token = r.control()?;
        match &token[..] {
            b")" => {
                stack.pop();
                // The entry holding the directory ends too.
                if !stack.is_empty() {
                    r.expect(b")")?;
                }
            }
            b"entry" => {
                r.expect(b"(")?;
                r.expect(b"name")?;
                r.read_into(&mut names, wire::MAX_METADATA, "entry name")?;
                if !wire::is_valid_name(&names) {
                    return Err(invalid(format!("invalid entry name {:?}", String::from_utf8_lossy(&names))));
                }
                if top.previous.as_ref().is_some_and(|p| names <= *p) {
                    return Err(invalid(format!(
                        "entry {:?} is not after {:?} (entries must be sorted and unique)",
                        String::from_utf8_lossy(&names),
                        String::from_utf8_lossy(top.previous.as_deref().unwrap_or_default())
                    )));
                }
                r.expect(b"node")?;
                let child = node(&mut r, top.fd.as_fd(), OsStr::from_bytes(&names))?;
                top.previous = Some(std::mem::take(&mut names));
                match child {
                    Some(fd) => stack.push(Open { fd, previous: None }),
                    None => r.expect(b")")?,
                }
            }
            other => {
                return Err(invalid(format!("expected \"entry\" or \")\", got {:?}", String::from_utf8_lossy(other))));
            }
        }
    }
    if !r.at_end()? {
        return Err(invalid("data after the end of the archive".into()));
    }
    Ok(())
}

/// Read one node and create it as `name` in `dir`. A regular file or
/// symlink is complete on return; a directory is created and returned
/// open, its entries still to come.
fn node<R: Read>(r: &mut TokenReader<R>, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<OwnedFd>> {
    r.expect(b"(")?;
    r.expect(b"type")?;
    let kind = r.control()?;
    match &kind[..] {
        b"regular" => {
            let executable = match &r.control()?[..] {
                b"executable" => {
                    r.expect(b"")?;
                    r.expect(b"contents")?;
                    true
                }
                b"contents" => false,
                other => {
                    return Err(invalid(format!("expected \"contents\", got {:?}", String::from_utf8_lossy(other))))
                }
            };
            let size = r.read_u64()?;
            let fd = openat(
                dir,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o666),
            )?;
            let mut file = fs::File::from(fd);
            let copied = io::copy(&mut (&mut r.inner).take(size), &mut file)?;
            if copied < size {
                return Err(invalid("the archive is truncated".into()));
            }
            r.read_padding(size)?;
            r.expect(b")")?;
            file.flush()?;
            file.set_permissions(fs::Permissions::from_mode(if executable { 0o755 } else { 0o644 }))?;
            Ok(None)
        }
        b"symlink" => {
            r.expect(b"target")?;
            let mut target = Vec::new();
            r.read_into(&mut target, wire::MAX_METADATA, "symlink target")?;
            r.expect(b")")?;
            symlinkat(OsStr::from_bytes(&target), dir, name)?;
            Ok(None)
        }
        b"directory" => {
            mkdirat(dir, name, Mode::from_raw_mode(0o777))?;
            let fd = openat(dir, name, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
            Ok(Some(fd))
        }
        other => Err(invalid(format!("unknown node type {:?}", String::from_utf8_lossy(other)))),
    }
}
