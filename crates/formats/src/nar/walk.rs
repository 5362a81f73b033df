//! The file-system walk that writes a NAR: drv's one NAR encoder.
//!
//! One `statat` per entry and reads sized to the file (one syscall for most
//! files); descriptor-relative and never following a symlink, so a tree
//! changed under it cannot redirect it. The walk keeps its own stack of open
//! directories instead of recursing, so depth is bounded by nothing but the
//! process's descriptor limit: Nix's `dumpPath` has no depth limit, and a
//! build output or source 64 levels deep must be hashable and storable.
//! The bytes are those of Nix's `src/libutil/archive.cc` (`dump`): entries
//! sorted by raw name, the owner's execute bit making a file executable.

use std::ffi::CString;
use std::io::{BufWriter, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{openat, readlinkat, statat, AtFlags, Dir, FileType, Mode, OFlags, CWD};

use super::super::FormatError;
use super::wire;

const READ_BUFFER: usize = 1 << 20;

/// Write the NAR serialisation of `path` into `writer`.
pub(super) fn encode(path: &Path, writer: &mut (impl Write + ?Sized)) -> Result<(), FormatError> {
    let err = |reason: String| FormatError::Nar { path: path.display().to_string(), reason };
    // Tokens are small; one buffer turns them into few writes downstream.
    let mut out = BufWriter::with_capacity(64 * 1024, writer);
    wire::write_token(&mut out, wire::MAGIC).map_err(|e| err(e.to_string()))?;
    let name = CString::new(path.as_os_str().as_bytes()).map_err(|_| err("path contains NUL".into()))?;
    let mut walk = Walk { out: &mut out, buffer: Vec::new() };
    let mut stack: Vec<Frame> = Vec::new();
    if let Some(frame) = walk.node(CWD, &name, path)? {
        stack.push(frame);
    }
    while let Some(top) = stack.last_mut() {
        let shown = top.shown.clone();
        let io = |e: std::io::Error| FormatError::Nar { path: shown.display().to_string(), reason: e.to_string() };
        let Some(child) = top.names.get(top.next).cloned() else {
            // The directory's node ends, and with it the entry that holds
            // it (the root directory is in no entry).
            stack.pop();
            walk.out.write_all(&wire::CLOSE).map_err(io)?;
            if !stack.is_empty() {
                walk.out.write_all(&wire::CLOSE).map_err(io)?;
            }
            continue;
        };
        top.next += 1;
        for t in [&b"entry"[..], b"(", b"name", child.as_bytes(), b"node"] {
            wire::write_token(walk.out, t).map_err(io)?;
        }
        let child_shown = shown.join(std::ffi::OsStr::from_bytes(child.as_bytes()));
        match walk.node(top.fd.as_fd(), &child, &child_shown)? {
            Some(frame) => stack.push(frame),
            None => walk.out.write_all(&wire::CLOSE).map_err(io)?,
        }
    }
    out.flush().map_err(|e| err(e.to_string()))?;
    Ok(())
}

/// A directory being written: its entries, sorted, and how many are done.
struct Frame {
    fd: OwnedFd,
    names: Vec<CString>,
    next: usize,
    shown: PathBuf,
}

struct Walk<'a, W: Write> {
    out: &'a mut W,
    buffer: Vec<u8>,
}

impl<W: Write> Walk<'_, W> {
    /// Write the node of entry `name` of directory `dir` (`shown` names it
    /// in errors). A regular file or symlink is written whole; a directory
    /// is opened and returned for the caller to write its entries.
    fn node(&mut self, dir: BorrowedFd<'_>, name: &CString, shown: &Path) -> Result<Option<Frame>, FormatError> {
        let io = |e: std::io::Error| FormatError::Nar { path: shown.display().to_string(), reason: e.to_string() };
        let st = statat(dir, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW).map_err(|e| io(e.into()))?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => {
                let fd = openat(dir, name.as_c_str(), OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
                    .map_err(|e| io(e.into()))?;
                let size = st.st_size as u64;
                // Nix's rule: the owner's execute bit makes a file executable.
                let executable = st.st_mode & 0o100 != 0;
                for t in [&b"("[..], b"type", b"regular"] {
                    wire::write_token(self.out, t).map_err(io)?;
                }
                if executable {
                    wire::write_token(self.out, b"executable").map_err(io)?;
                    wire::write_token(self.out, b"").map_err(io)?;
                }
                wire::write_token(self.out, b"contents").map_err(io)?;
                self.out.write_all(&size.to_le_bytes()).map_err(io)?;
                let mut remaining = size;
                loop {
                    // One byte more than expected, so a grown file is noticed
                    // and a short read means end of file: one read for most files.
                    let want = (remaining as usize).saturating_add(1).min(READ_BUFFER);
                    if self.buffer.len() < want {
                        self.buffer.resize(want, 0);
                    }
                    let n = rustix::io::read(&fd, &mut self.buffer[..want]).map_err(|e| io(e.into()))?;
                    if n as u64 > remaining {
                        return Err(io(std::io::Error::other("file changed size while being read")));
                    }
                    self.out.write_all(&self.buffer[..n]).map_err(io)?;
                    remaining -= n as u64;
                    if n < want {
                        break;
                    }
                }
                if remaining != 0 {
                    return Err(io(std::io::Error::other("file changed size while being read")));
                }
                self.out.write_all(&wire::ZEROS[..wire::pad_len(size)]).map_err(io)?;
                self.out.write_all(&wire::CLOSE).map_err(io)?;
                Ok(None)
            }
            FileType::Symlink => {
                let target = readlinkat(dir, name.as_c_str(), Vec::new()).map_err(|e| io(e.into()))?;
                for t in [&b"("[..], b"type", b"symlink", b"target", target.as_bytes()] {
                    wire::write_token(self.out, t).map_err(io)?;
                }
                self.out.write_all(&wire::CLOSE).map_err(io)?;
                Ok(None)
            }
            FileType::Directory => {
                let fd = openat(
                    dir,
                    name.as_c_str(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| io(e.into()))?;
                let mut names = Vec::new();
                for entry in Dir::read_from(&fd).map_err(|e| io(e.into()))? {
                    let entry = entry.map_err(|e| io(e.into()))?;
                    let n = entry.file_name();
                    if n.to_bytes() != b"." && n.to_bytes() != b".." {
                        names.push(n.to_owned());
                    }
                }
                names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
                for t in [&b"("[..], b"type", b"directory"] {
                    wire::write_token(self.out, t).map_err(io)?;
                }
                Ok(Some(Frame { fd, names, next: 0, shown: shown.to_owned() }))
            }
            _ => Err(io(std::io::Error::other("not a regular file, directory or symlink"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};

    /// The fast walk gives exactly the crate's reference encoding.
    #[test]
    fn agrees_with_nix_archive_encode_path() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("d");
        fs::create_dir_all(d.join("e/empty")).unwrap();
        fs::write(d.join("small"), b"x").unwrap();
        fs::write(d.join("exactly-8"), b"12345678").unwrap();
        fs::write(d.join("zero"), b"").unwrap();
        fs::write(d.join("big"), vec![3u8; READ_BUFFER * 2 + 5]).unwrap();
        fs::write(d.join("e/x"), b"#!").unwrap();
        fs::set_permissions(d.join("e/x"), fs::Permissions::from_mode(0o744)).unwrap();
        fs::write(d.join("e/group-exec-only"), b"g").unwrap();
        fs::set_permissions(d.join("e/group-exec-only"), fs::Permissions::from_mode(0o654)).unwrap();
        symlink("nowhere", d.join("e/dangling")).unwrap();
        fs::write(d.join(std::ffi::OsStr::from_bytes(b"\xff\xfe")), b"binary name").unwrap();
        for root in [d.clone(), d.join("small"), d.join("e/dangling"), d.join("e/empty")] {
            let mut ours = Vec::new();
            encode(&root, &mut ours).unwrap();
            let mut theirs = Vec::new();
            nix_archive::nar::encode_path(&mut theirs, &root, nix_archive::nar::CaseHack::Disabled).unwrap();
            assert_eq!(ours, theirs, "{}", root.display());
        }
    }

    #[test]
    fn unsupported_files_and_missing_paths_are_errors() {
        let t = tempfile::tempdir().unwrap();
        let fifo = t.path().join("fifo");
        rustix::fs::mknodat(CWD, &fifo, FileType::Fifo, Mode::from_raw_mode(0o644), 0).unwrap();
        assert!(encode(&fifo, &mut Vec::new()).is_err());
        assert!(encode(&t.path().join("missing"), &mut Vec::new()).is_err());
    }
}
