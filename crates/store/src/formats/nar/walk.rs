//! The file-system walk that feeds `nix-archive`'s incremental `Encoder`.
//!
//! `nix-archive`'s own `encode_path` is correct but costs two `stat`s per
//! entry and reads payloads 8 KiB at a time; on a tree of many files that
//! file-system work, not SHA-256, dominates. This walk makes one `statat` per
//! entry and sizes each read to the file (one syscall for most files), and
//! leaves all of NAR's framing, name and ordering rules to the crate's
//! `Encoder`. Like the crate's walk, it is descriptor-relative and never
//! follows a symlink, so a tree changed under it cannot redirect it.

use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix_archive::nar::Encoder;
use rustix::fs::{openat, readlinkat, statat, AtFlags, Dir, FileType, Mode, OFlags, CWD};

use super::super::FormatError;

const READ_BUFFER: usize = 1 << 20;

/// Write the NAR serialisation of `path` into `writer`.
pub(super) fn encode(path: &Path, writer: &mut (impl Write + ?Sized)) -> Result<(), FormatError> {
    let err = |reason: String| FormatError::Nar { path: path.display().to_string(), reason };
    let mut encoder = Encoder::new(writer).map_err(|e| err(e.to_string()))?;
    let mut buffer = Vec::new();
    let mut walk = Walk { encoder: &mut encoder, buffer: &mut buffer };
    let name = CString::new(path.as_os_str().as_bytes()).map_err(|_| err("path contains NUL".into()))?;
    walk.node(CWD, &name, None, path)?;
    encoder.finish().map_err(|e| err(e.to_string()))?;
    Ok(())
}

struct Walk<'a, W: Write> {
    encoder: &'a mut Encoder<W>,
    buffer: &'a mut Vec<u8>,
}

impl<W: Write> Walk<'_, W> {
    /// Encode the entry `name` of directory `dir` (`shown` names it in errors).
    fn node(&mut self, dir: BorrowedFd<'_>, name: &CString, nar_name: Option<&[u8]>, shown: &Path) -> Result<(), FormatError> {
        let io = |e: std::io::Error| FormatError::Nar { path: shown.display().to_string(), reason: e.to_string() };
        let enc = |e: nix_archive::nar::Error| FormatError::Nar { path: shown.display().to_string(), reason: e.to_string() };
        let st = statat(dir, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW).map_err(|e| io(e.into()))?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => {
                let fd = openat(dir, name.as_c_str(), OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
                    .map_err(|e| io(e.into()))?;
                let size = st.st_size as u64;
                // Nix's rule: the owner's execute bit makes a file executable.
                let executable = st.st_mode & 0o100 != 0;
                let mut out = self.encoder.start_regular(nar_name, executable, size).map_err(enc)?;
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
                    out.write_all(&self.buffer[..n]).map_err(io)?;
                    remaining -= n as u64;
                    if n < want {
                        break;
                    }
                }
                if remaining != 0 {
                    return Err(io(std::io::Error::other("file changed size while being read")));
                }
                out.finish().map_err(enc)
            }
            FileType::Symlink => {
                let target = readlinkat(dir, name.as_c_str(), Vec::new()).map_err(|e| io(e.into()))?;
                self.encoder.symlink(nar_name, target.as_bytes()).map_err(enc)
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
                self.encoder.start_directory(nar_name).map_err(enc)?;
                for child in &names {
                    let shown = shown.join(std::ffi::OsStr::from_bytes(child.as_bytes()));
                    self.node(fd.as_fd(), child, Some(child.as_bytes()), &shown)?;
                }
                self.encoder.end_directory().map_err(enc)
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
