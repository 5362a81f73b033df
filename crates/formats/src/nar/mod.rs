//! NAR (Nix ARchive): streaming serialisation, hashing, safe restore and
//! reference scanning.
//!
//! Walking ([`walk`]) and unpacking ([`restore`](self::restore)) are drv's own,
//! with no depth limit (Nix has none; `nix-archive` stops at 64 levels);
//! single-file NARs and reference scanning are `nix-archive`'s. No case
//! hack: drv's store is Linux-only and Nix disables the hack there.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;

use nix_archive::nar as cnar;

use super::hash::Sha256;
use super::path::StorePath;
use super::FormatError;

mod restore;
mod walk;
mod wire;

/// NAR hash and size of a tree: what a store path's metadata records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NarHash {
    pub sha256: Sha256,
    pub size: u64,
}

impl From<cnar::NarHash> for NarHash {
    fn from(h: cnar::NarHash) -> Self {
        Self {
            sha256: Sha256(h.sha256),
            size: h.size,
        }
    }
}


/// Serialise the file system object at `path` (file, directory or symlink;
/// symlinks are not followed) as a NAR into `writer`, streaming.
pub fn dump_path(path: &Path, writer: &mut (impl Write + ?Sized)) -> Result<(), FormatError> {
    walk::encode(path, writer)
}

/// NAR hash and size of `path`, without keeping the NAR.
///
/// Pipelined: one thread walks the tree and reads the files, the calling
/// thread only hashes, so on two cores the time is that of SHA-256 alone
/// rather than hashing plus file system work (`nix-hash` does both in one
/// thread).
pub fn hash_path(path: &Path) -> Result<NarHash, FormatError> {
    // Up to 64 MiB of read-ahead: enough for the walker to bank time on
    // large files and spend it on stretches of small ones, where it is
    // slower than SHA-256.
    const CHUNK: usize = 1 << 18;
    const IN_FLIGHT: usize = 256;
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(IN_FLIGHT);
    // Spent chunks go back to the walker; it allocates only while there is
    // none to reuse, so memory stays bounded by the channel's capacity.
    let (empty_tx, empty_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::scope(|s| {
        let walker = s.spawn(move || {
            let mut sink = ChunkSender { current: Vec::with_capacity(CHUNK), full: full_tx, empty: empty_rx };
            let result = walk::encode(path, &mut sink);
            if result.is_ok() {
                let last = std::mem::take(&mut sink.current);
                let _ = sink.full.send(last);
            }
            result
        });
        let mut hasher = super::hash::Sha256Writer::new();
        let mut size = 0u64;
        for mut chunk in full_rx.iter() {
            hasher.update(&chunk);
            size += chunk.len() as u64;
            chunk.clear();
            // The walker may have finished and dropped its receiver.
            let _ = empty_tx.send(chunk);
        }
        walker.join().expect("NAR walker panicked")?;
        Ok(NarHash { sha256: hasher.finish(), size })
    })
}

/// Collects NAR bytes into large chunks and hands them to the hasher.
struct ChunkSender {
    current: Vec<u8>,
    full: std::sync::mpsc::SyncSender<Vec<u8>>,
    empty: std::sync::mpsc::Receiver<Vec<u8>>,
}

impl Write for ChunkSender {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let written = buf.len();
        while !buf.is_empty() {
            let room = self.current.capacity() - self.current.len();
            let n = room.min(buf.len());
            self.current.extend_from_slice(&buf[..n]);
            buf = &buf[n..];
            if self.current.len() == self.current.capacity() {
                let next = self.empty.try_recv().unwrap_or_else(|_| Vec::with_capacity(self.current.capacity()));
                let full = std::mem::replace(&mut self.current, next);
                self.full.send(full).map_err(|_| io::Error::other("NAR hasher stopped"))?;
            }
        }
        Ok(written)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// NAR hash and size of a single in-memory regular file.
pub fn hash_regular(contents: &[u8], executable: bool) -> NarHash {
    cnar::hash_regular(contents, executable).into()
}

/// Write a NAR holding a single regular file.
pub fn dump_regular(
    contents: &[u8],
    executable: bool,
    writer: &mut (impl Write + ?Sized),
) -> Result<(), FormatError> {
    cnar::encode_regular(writer, contents, executable).map_err(|e| FormatError::Nar {
        path: "<memory>".into(),
        reason: e.to_string(),
    })
}

/// Unpack a NAR read from `reader` at `destination`, which must not exist.
///
/// Malformed archives (bad magic, unsorted or duplicate entries, names that
/// are empty, `.`, `..` or contain `/` or NUL, truncated or trailing data,
/// unknown node types) are refused. Entries are created relative to
/// directory handles, so nothing can be written outside `destination`; on
/// any error whatever was unpacked is removed again, so a failed restore
/// leaves nothing behind.
pub fn restore(reader: &mut (impl Read + ?Sized), destination: &Path) -> Result<(), FormatError> {
    if fs::symlink_metadata(destination).is_ok() {
        return Err(FormatError::Nar {
            path: destination.display().to_string(),
            reason: "destination already exists".into(),
        });
    }
    let buffered = io::BufReader::with_capacity(256 * 1024, reader);
    match restore::restore(buffered, destination) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = remove_tree(destination);
            Err(FormatError::Nar { path: destination.display().to_string(), reason: e.to_string() })
        }
    }
}

/// Remove a tree even where it was made read-only (store paths are).
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if meta.is_dir() {
        make_tree_writable(path)?;
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

fn make_tree_writable(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Ok(());
    }
    let mode = meta.permissions().mode();
    if mode & 0o700 != 0o700 {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o700))?;
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            make_tree_writable(&entry.path())?;
        }
    }
    Ok(())
}

/// Which of `candidates` a tree refers to (by the hash part occurring in any
/// file contents, symlink target or name), together with its NAR hash: one
/// pass over the tree serves both.
pub fn scan_references(
    path: &Path,
    candidates: &BTreeSet<StorePath>,
) -> Result<(NarHash, BTreeSet<StorePath>), FormatError> {
    let mut scanner = ReferenceScanningWriter::new(HashingWriter::new(io::sink()), candidates);
    walk::encode(path, &mut scanner)?;
    let (hashed, found) = scanner.finish();
    Ok((hashed.into_parts().1, found))
}

/// Passes bytes on to `inner` and takes the sha256 and size of what was
/// written: a NAR's hash while it streams somewhere.
pub struct HashingWriter<W> {
    inner: W,
    hash: super::hash::Sha256Writer,
    size: u64,
}

impl<W> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self { inner, hash: super::hash::Sha256Writer::new(), size: 0 }
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// The writer and the hash and size of everything written through it.
    pub fn into_parts(self) -> (W, NarHash) {
        (self.inner, NarHash { sha256: self.hash.finish(), size: self.size })
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A `Write` adaptor that records which candidates' hash parts pass
/// through it: for scanning a NAR while it streams elsewhere.
pub struct ReferenceScanningWriter<W> {
    inner: cnar::ReferenceWriter<W>,
    candidates: Vec<StorePath>,
}

impl<W: Write> ReferenceScanningWriter<W> {
    pub fn new(inner: W, candidates: &BTreeSet<StorePath>) -> Self {
        let candidates: Vec<StorePath> = candidates.iter().cloned().collect();
        let parts: Vec<String> = candidates.iter().map(|p| p.hash_part()).collect();
        let pattern = cnar::ReferencePattern::new(&parts)
            .expect("store path hash parts are 32 nixbase32 characters");
        Self {
            inner: pattern.writer(inner),
            candidates,
        }
    }

    pub fn finish(self) -> (W, BTreeSet<StorePath>) {
        let (w, scanner) = self.inner.into_parts();
        let found = scanner
            .matches()
            .map(|i| self.candidates[i].clone())
            .collect();
        (w, found)
    }
}

impl<W: Write> Write for ReferenceScanningWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{symlink, PermissionsExt};

    /// NAR token: u64 length, bytes, zero padding to 8.
    fn tok(out: &mut Vec<u8>, s: &[u8]) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s);
        out.resize(out.len() + (8 - s.len() % 8) % 8, 0);
    }

    fn nar_dir(entries: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut n = Vec::new();
        for t in [&b"nix-archive-1"[..], b"(", b"type", b"directory"] {
            tok(&mut n, t);
        }
        for (name, contents) in entries {
            for t in [&b"entry"[..], b"(", b"name", name, b"node", b"(", b"type", b"regular", b"contents", contents, b")", b")"] {
                tok(&mut n, t);
            }
        }
        tok(&mut n, b")");
        n
    }

    fn sample_tree(dir: &Path) {
        fs::create_dir_all(dir.join("sub/empty")).unwrap();
        fs::write(dir.join("a"), b"hello").unwrap();
        fs::write(dir.join("sub/exe"), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(dir.join("sub/exe"), fs::Permissions::from_mode(0o755)).unwrap();
        symlink("../a", dir.join("sub/link")).unwrap();
        symlink("/does/not/exist", dir.join("dangling")).unwrap();
        let odd = std::ffi::OsStr::from_bytes(b"caf\xe9-latin1");
        fs::write(dir.join(odd), b"not utf-8 name").unwrap();
    }

    #[test]
    fn dump_restore_dump_is_identity_with_non_utf8_names() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        sample_tree(&src);
        let dst = t.path().join("dst");
        let (nar, again) = super::proptests::dump_restore_dump(&src, &dst);
        assert_eq!(nar, again);
        assert_eq!(hash_path(&dst).unwrap().size, nar.len() as u64);
        assert!(dst.join(std::ffi::OsStr::from_bytes(b"caf\xe9-latin1")).exists());
        assert_eq!(fs::read_link(dst.join("dangling")).unwrap(), Path::new("/does/not/exist"));
    }

    #[test]
    fn malformed_archives_are_refused_and_leave_nothing() {
        let t = tempfile::tempdir().unwrap();
        let good = nar_dir(&[(b"a", b"1"), (b"b", b"2")]);
        restore(&mut &good[..], &t.path().join("ok")).unwrap();

        let mut bad_magic = good.clone();
        bad_magic[8] = b'X';
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("bad magic", bad_magic),
            ("unsorted", nar_dir(&[(b"b", b"1"), (b"a", b"2")])),
            ("duplicate", nar_dir(&[(b"a", b"1"), (b"a", b"2")])),
            ("slash", nar_dir(&[(b"a/b", b"1")])),
            ("dot", nar_dir(&[(b".", b"1")])),
            ("dotdot", nar_dir(&[(b"..", b"1")])),
            ("nul", nar_dir(&[(b"a\0b", b"1")])),
            ("empty name", nar_dir(&[(b"", b"1")])),
            ("truncated", good[..good.len() - 12].to_vec()),
            ("trailing", [good.clone(), vec![0; 8]].concat()),
        ];
        for (what, nar) in cases {
            let dst = t.path().join(what);
            assert!(restore(&mut &nar[..], &dst).is_err(), "{what} accepted");
            assert!(fs::symlink_metadata(&dst).is_err(), "{what} left files behind");
        }
        // nothing escaped next to the targets either
        let names: Vec<_> = fs::read_dir(t.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn symlink_entries_cannot_redirect_later_writes() {
        // a symlink "a" pointing outside, followed by a directory entry
        // that tries to write through it, is refused (names must be unique
        // and sorted, and creation is relative to directory handles).
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        fs::create_dir(&outside).unwrap();
        let mut n = Vec::new();
        for tk in [&b"nix-archive-1"[..], b"(", b"type", b"directory",
                   b"entry", b"(", b"name", b"a", b"node", b"(", b"type", b"symlink", b"target", outside.as_os_str().as_bytes(), b")", b")",
                   b"entry", b"(", b"name", b"a", b"node", b"(", b"type", b"directory",
                   b"entry", b"(", b"name", b"pwned", b"node", b"(", b"type", b"regular", b"contents", b"x", b")", b")",
                   b")", b")", b")"] {
            tok(&mut n, tk);
        }
        let dst = t.path().join("dst");
        assert!(restore(&mut &n[..], &dst).is_err());
        assert!(!outside.join("pwned").exists());
        assert!(!dst.exists());
    }

    #[test]
    fn scanning_finds_exactly_the_references_present() {
        let t = tempfile::tempdir().unwrap();
        let a: StorePath = "ikcfqh9q2jd5v5azikbfn5gqrmfcdc4c-a".parse().unwrap();
        let b: StorePath = "sa54706c73s1kg3sswp5ym9rhmdvj6c7-b".parse().unwrap();
        let c: StorePath = "zwx6xaxcggwglfv7x2x1xblw5w2w6877-c".parse().unwrap();
        let dir = t.path().join("d");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("f"), format!("xx/store/{a}/bin yy")).unwrap();
        symlink(format!("/store/{b}"), dir.join("l")).unwrap();
        let candidates = BTreeSet::from([a.clone(), b.clone(), c]);
        let (hash, refs) = scan_references(&dir, &candidates).unwrap();
        assert_eq!(refs, BTreeSet::from([a, b]));
        assert_eq!(hash, hash_path(&dir).unwrap());
    }
}

#[cfg(test)]
pub(crate) mod proptests {
    use super::*;
    use proptest::prelude::*;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{symlink, PermissionsExt};

    #[derive(Debug, Clone)]
    enum Node {
        File(Vec<u8>, bool),
        Link(Vec<u8>),
        Dir(Vec<(Vec<u8>, Node)>),
    }

    fn name() -> impl Strategy<Value = Vec<u8>> {
        // any bytes but '/' and NUL, not "." or ".."
        proptest::collection::vec(1u8..=255, 1..12)
            .prop_map(|v| v.into_iter().map(|b| if b == b'/' { b'_' } else { b }).collect::<Vec<u8>>())
            .prop_filter("dot names", |n| n != b"." && n != b"..")
    }

    fn node() -> impl Strategy<Value = Node> {
        let leaf = prop_oneof![
            (proptest::collection::vec(any::<u8>(), 0..300), any::<bool>()).prop_map(|(c, x)| Node::File(c, x)),
            proptest::collection::vec(1u8..=255, 1..40).prop_map(Node::Link),
        ];
        leaf.prop_recursive(4, 40, 6, |inner| {
            proptest::collection::btree_map(name(), inner, 0..6).prop_map(|m| Node::Dir(m.into_iter().collect()))
        })
    }

    fn write(path: &Path, node: &Node) {
        match node {
            Node::File(c, x) => {
                fs::write(path, c).unwrap();
                fs::set_permissions(path, fs::Permissions::from_mode(if *x { 0o755 } else { 0o644 })).unwrap();
            }
            Node::Link(t) => symlink(std::ffi::OsStr::from_bytes(t), path).unwrap(),
            Node::Dir(children) => {
                fs::create_dir(path).unwrap();
                for (n, c) in children {
                    write(&path.join(std::ffi::OsStr::from_bytes(n)), c);
                }
            }
        }
    }

    /// The NAR of `src`, restored at `dst`, and the NAR of `dst`: equal
    /// when the round trip keeps everything a NAR holds.
    pub(crate) fn dump_restore_dump(src: &Path, dst: &Path) -> (Vec<u8>, Vec<u8>) {
        let mut nar = Vec::new();
        dump_path(src, &mut nar).unwrap();
        restore(&mut &nar[..], dst).unwrap();
        let mut again = Vec::new();
        dump_path(dst, &mut again).unwrap();
        (nar, again)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Any tree: dump → restore → dump is the identity, and the
        /// pipelined hash is the hash of the dumped bytes.
        #[test]
        fn dump_restore_round_trips(tree in node()) {
            let t = tempfile::tempdir().unwrap();
            let src = t.path().join("src");
            write(&src, &tree);
            let (nar, again) = dump_restore_dump(&src, &t.path().join("dst"));
            prop_assert_eq!(&nar, &again);
            let h = hash_path(&src).unwrap();
            prop_assert_eq!(h.size, nar.len() as u64);
            prop_assert_eq!(h.sha256, Sha256::digest(&nar));
        }
    }

    /// A valid NAR with one byte changed, or bytes inserted or cut: inputs
    /// near valid archives, where a decoder accepts what it should not.
    pub(crate) fn mutated_nar() -> impl Strategy<Value = Vec<u8>> {
        (node(), any::<proptest::sample::Index>(), any::<u8>(), 0u8..3).prop_map(|(tree, at, byte, how)| {
            let t = tempfile::tempdir().unwrap();
            let src = t.path().join("src");
            write(&src, &tree);
            let mut nar = Vec::new();
            dump_path(&src, &mut nar).unwrap();
            let i = at.index(nar.len());
            match how {
                0 => nar[i] = byte,
                1 => nar.insert(i, byte),
                _ => nar.truncate(i),
            }
            nar
        })
    }

    /// The parse ⇔ render contract of [`restore`] for one input: an
    /// archive it accepts dumps back to exactly its bytes (NAR has one
    /// spelling per tree), and one it refuses leaves nothing.
    pub(crate) fn check_nar_round_trip(nar: &[u8]) -> Result<(), TestCaseError> {
        let t = tempfile::tempdir().unwrap();
        let dst = t.path().join("dst");
        match restore(&mut &nar[..], &dst) {
            Ok(()) => {
                let mut again = Vec::new();
                dump_path(&dst, &mut again).unwrap();
                prop_assert_eq!(&again[..], nar);
            }
            Err(_) => prop_assert!(fs::symlink_metadata(&dst).is_err(), "a refused archive left {}", dst.display()),
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn restored_archives_dump_to_their_bytes(nar in mutated_nar()) {
            check_nar_round_trip(&nar)?;
        }
    }

    /// The `nar-depth-limit` report: Nix has no depth limit, so neither
    /// has drv. A chain of 300 directories is hashed, dumped and restored,
    /// byte for byte what NAR's grammar says.
    #[test]
    fn deep_trees_are_dumped_and_restored() {
        const DEPTH: usize = 300;
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("deep");
        let mut leaf = src.clone();
        for _ in 0..DEPTH {
            leaf.push("d");
        }
        fs::create_dir_all(&leaf).unwrap();
        fs::write(leaf.join("f"), b"leaf\n").unwrap();
        fs::set_permissions(leaf.join("f"), fs::Permissions::from_mode(0o644)).unwrap();

        fn tok(out: &mut Vec<u8>, s: &[u8]) {
            out.extend_from_slice(&(s.len() as u64).to_le_bytes());
            out.extend_from_slice(s);
            out.resize(out.len() + (8 - s.len() % 8) % 8, 0);
        }
        let mut want = Vec::new();
        tok(&mut want, b"nix-archive-1");
        // deep and its DEPTH nested d's; the innermost holds f.
        for level in 0..=DEPTH {
            let name: &[u8] = if level == DEPTH { b"f" } else { b"d" };
            for t in [&b"("[..], b"type", b"directory", b"entry", b"(", b"name", name, b"node"] {
                tok(&mut want, t);
            }
        }
        for t in [&b"("[..], b"type", b"regular", b"contents", b"leaf\n", b")"] {
            tok(&mut want, t);
        }
        for _ in 0..2 * (DEPTH + 1) {
            tok(&mut want, b")");
        }

        let mut nar = Vec::new();
        dump_path(&src, &mut nar).unwrap();
        assert!(nar == want, "the deep NAR is not NAR's grammar");
        let h = hash_path(&src).unwrap();
        assert_eq!((h.sha256, h.size), (Sha256::digest(&nar), nar.len() as u64));
        let dst = t.path().join("back");
        restore(&mut &nar[..], &dst).unwrap();
        let mut again = Vec::new();
        dump_path(&dst, &mut again).unwrap();
        assert!(again == nar);
        remove_tree(&dst).unwrap();
        assert!(fs::symlink_metadata(&dst).is_err());
    }
}
