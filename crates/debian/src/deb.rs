//! Reading one binary package, a `.deb`, as deb(5) describes it.
//!
//! A `.deb` is an `ar` archive whose members are, in this order:
//! `debian-binary` (the format version, `2.0\n`), `control.tar[.gz|.xz|.zst]`
//! (the package's metadata, `./control` among it) and
//! `data.tar[.gz|.xz|.zst]` (the files to install). deb(5) also lets members
//! whose names start with `_` sit between them (to be ignored) and further
//! members follow `data.tar` (ignored too).
//!
//! [`Deb::open`] reads the version and the control fields; [`Deb::data`]
//! then streams the uncompressed `data.tar`, which is all a caller unpacking
//! the package needs. Nothing here writes to the file system. Every error
//! names the `.deb`.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek};
use std::path::{Path, PathBuf};

/// The first bytes of every `ar` archive.
const AR_MAGIC: &[u8; 8] = b"!<arch>\n";

/// Largest `control.tar` this reader unpacks into memory (uncompressed).
/// Real ones are a few kB (maintainer scripts, md5sums); the bound keeps a
/// hostile package from making us allocate without limit.
const MAX_CONTROL_TAR: u64 = 64 << 20;

/// What can go wrong reading a `.deb`. Each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum DebError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{} is not a .deb: not an ar archive", path.display())]
    NotAr { path: PathBuf },
    #[error("{} is not a .deb of format 2.x: debian-binary is {found:?}", path.display())]
    FormatVersion { path: PathBuf, found: String },
    #[error("{}: member {expected} missing (found {found})", path.display())]
    MissingMember { path: PathBuf, expected: &'static str, found: String },
    #[error("{}: member {member} has a compression this reader does not know (gz, xz, zst or none)", path.display())]
    UnknownCompression { path: PathBuf, member: String },
    #[error("{}: truncated in member {member}", path.display())]
    Truncated { path: PathBuf, member: String },
    #[error("{}: member {member} is corrupt: {source}", path.display())]
    Corrupt { path: PathBuf, member: String, source: io::Error },
    #[error("{}: control file: {reason}", path.display())]
    Control { path: PathBuf, reason: String },
}

/// How a `control.tar` or `data.tar` member is compressed, from its name's
/// suffix (deb(5)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Xz,
    Zstd,
}

impl Compression {
    /// The compression of member `name` if it is `stem` (`data.tar`) with a
    /// known suffix; `Err(())` if it is `stem` with another suffix
    /// (`data.tar.bz2`); `None` if it is not `stem` at all.
    fn of_member(name: &str, stem: &str) -> Option<Result<Self, ()>> {
        let rest = name.strip_prefix(stem)?;
        Some(match rest {
            "" => Ok(Self::None),
            ".gz" => Ok(Self::Gzip),
            ".xz" => Ok(Self::Xz),
            ".zst" => Ok(Self::Zstd),
            _ if rest.starts_with('.') => Err(()),
            _ => return None,
        })
    }
}

/// The fields of `./control` that identify a package (Debian Policy §5.3).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Control {
    /// `Package`: checked against Debian Policy §5.6.1 (lower-case letters,
    /// digits, `+`, `-`, `.`; at least two characters, starting with a
    /// letter or digit).
    pub package: String,
    /// `Version`, as written (Policy §5.6.12).
    pub version: String,
    /// `Architecture` (`amd64`, `all`): one word.
    pub architecture: String,
}

/// An open `.deb` whose format version and control fields have been read.
pub struct Deb {
    path: PathBuf,
    control: Control,
    archive: Archive,
    data_index: usize,
    data_member: String,
}

impl std::fmt::Debug for Deb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deb").field("path", &self.path).field("control", &self.control).finish_non_exhaustive()
    }
}

impl Deb {
    /// Open the `.deb` at `path`: check it is an `ar` archive with the
    /// members deb(5) requires, that `debian-binary` has a 2.x version
    /// (deb(5): readers accept a higher minor version and extra lines), and
    /// read `./control` from `control.tar*`.
    pub fn open(path: &Path) -> Result<Self, DebError> {
        let io_err = |source| DebError::Io { path: path.to_owned(), source };
        let mut file = File::open(path).map_err(io_err)?;
        let mut magic = [0u8; 8];
        match file.read_exact(&mut magic) {
            Ok(()) if &magic == AR_MAGIC => {}
            Ok(()) => return Err(DebError::NotAr { path: path.to_owned() }),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(DebError::NotAr { path: path.to_owned() })
            }
            Err(e) => return Err(io_err(e)),
        }
        file.rewind().map_err(io_err)?;
        let length = file.metadata().map_err(io_err)?.len();
        let mut archive = ar::Archive::new(BufReader::with_capacity(128 << 10, file));
        let names = member_names(&mut archive, path, length)?;
        let layout = layout(path, &names)?;
        // `layout` returned indices into `names`.
        let name_of = |i: usize| names.get(i).cloned().unwrap_or_default();

        let mut version = Vec::new();
        let (_, reader) = member(&mut archive, path, layout.debian_binary, "debian-binary")?;
        // A version line and perhaps a few more: no reason to read further.
        reader.take(4096).read_to_end(&mut version).map_err(|e| member_error(path, "debian-binary", e))?;
        check_format_version(path, &version)?;

        let control_name = name_of(layout.control);
        let compression = member_compression(path, &control_name, "control.tar")?;
        let (size, mut reader) = member(&mut archive, path, layout.control, &control_name)?;
        if size > MAX_CONTROL_TAR {
            return Err(DebError::Control { path: path.to_owned(), reason: format!("{control_name} is {size} bytes") });
        }
        let mut control_tar = Vec::new();
        reader.read_to_end(&mut control_tar).map_err(|e| member_error(path, &control_name, e))?;
        drop(reader);
        let control = read_control(path, &control_name, decompress(path, &control_tar[..], compression)?)?;

        let data_member = name_of(layout.data);
        member_compression(path, &data_member, "data.tar")?;
        Ok(Self { path: path.to_owned(), control, archive, data_index: layout.data, data_member })
    }

    /// The `.deb`'s path, as given to [`Deb::open`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn control(&self) -> &Control {
        &self.control
    }

    /// The uncompressed `data.tar`, streamed. A read fails with
    /// [`io::ErrorKind::UnexpectedEof`] if the `.deb` ends before the member
    /// does; [`DataTar::finish`] reads what the caller left and tells a
    /// truncated or corrupt member apart with the `.deb` named.
    pub fn data(&mut self) -> Result<DataTar<'_>, DebError> {
        let path = self.path.as_path();
        let compression = member_compression(path, &self.data_member, "data.tar")?;
        let (_, reader) = member(&mut self.archive, path, self.data_index, &self.data_member)?;
        let reader = decompress(path, reader, compression)?;
        Ok(DataTar { path, member: self.data_member.clone(), reader })
    }
}

/// The uncompressed `data.tar` of a [`Deb`].
pub struct DataTar<'a> {
    path: &'a Path,
    member: String,
    reader: Box<dyn Read + 'a>,
}

impl DataTar<'_> {
    /// The member's name in the `.deb` (`data.tar.xz`).
    pub fn member(&self) -> &str {
        &self.member
    }

    /// Turn an error met while reading this stream into a [`DebError`]
    /// naming the `.deb` and the member.
    pub fn error(&self, error: io::Error) -> DebError {
        member_error(self.path, &self.member, error)
    }

    /// Read and discard the rest of the stream (a tar's end-of-archive
    /// padding, say), so that a truncated member or a failed integrity
    /// check of the compressed stream is an error.
    pub fn finish(mut self) -> Result<(), DebError> {
        io::copy(&mut self.reader, &mut io::sink()).map(drop).map_err(|e| self.error(e))
    }
}

impl Read for DataTar<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

/// The stated sizes of a `.deb`'s three required members, and where they
/// are in the archive (`ar` entry indices).
#[derive(Clone, Copy)]
struct Layout {
    debian_binary: usize,
    control: usize,
    data: usize,
}

/// Reads the rest of an `ar` member, failing with
/// [`io::ErrorKind::UnexpectedEof`] if the archive ends before the stated
/// size (the `ar` crate reports a short member as a short read).
struct Exact<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the archive ends inside this member"));
        }
        self.remaining = self.remaining.saturating_sub(n as u64);
        Ok(n)
    }
}

type Archive = ar::Archive<BufReader<File>>;
type MemberReader<'a> = Exact<ar::Entry<'a, BufReader<File>>>;

/// The names of the archive's members, in order; `length` is the file's.
fn member_names(archive: &mut Archive, path: &Path, length: u64) -> Result<Vec<String>, DebError> {
    let count = archive.count_entries().map_err(|e| member_error(path, "(ar header)", e))?;
    let mut names = Vec::with_capacity(count);
    // The least the archive's length can be: the magic, each header and
    // each member's data (padding and any GNU name table come on top).
    let mut least_length = AR_MAGIC.len() as u64;
    for i in 0..count {
        let entry = archive.jump_to_entry(i).map_err(|e| member_error(path, "(ar header)", e))?;
        names.push(member_name(entry.header().identifier()));
        least_length = least_length.saturating_add(60).saturating_add(entry.header().size());
        // Dropping an entry reads the rest of it; `jump_to_entry` seeks,
        // so skipping that read (a whole `data.tar`) loses nothing.
        std::mem::forget(entry);
    }
    // The scan stops quietly where the file ends, so a `.deb` cut inside a
    // member would otherwise look like one with members missing.
    if length < least_length {
        let member = names.last().cloned().unwrap_or_default();
        return Err(DebError::Truncated { path: path.to_owned(), member });
    }
    Ok(names)
}

/// Where the three members deb(5) requires are: `debian-binary`,
/// `control.tar*`, `data.tar*` in that order, members whose names start
/// with `_` ignored between them and anything ignored after `data.tar`.
fn layout(path: &Path, names: &[String]) -> Result<Layout, DebError> {
    let mut candidates = names.iter().enumerate().filter(|(_, n)| !n.starts_with('_'));
    let mut next = |expected: &'static str, accepts: fn(&str) -> bool| match candidates.next() {
        Some((i, name)) if accepts(name) => Ok(i),
        other => {
            let found = other.map_or_else(|| "the end of the archive".to_owned(), |(_, n)| format!("member {n:?}"));
            Err(DebError::MissingMember { path: path.to_owned(), expected, found })
        }
    };
    Ok(Layout {
        debian_binary: next("debian-binary", |n| n == "debian-binary")?,
        control: next("control.tar", |n| Compression::of_member(n, "control.tar").is_some())?,
        data: next("data.tar", |n| Compression::of_member(n, "data.tar").is_some())?,
    })
}

/// Entry `index` of the archive (known to exist), as a reader that checks
/// the member is complete.
fn member<'a>(
    archive: &'a mut Archive,
    path: &Path,
    index: usize,
    name: &str,
) -> Result<(u64, MemberReader<'a>), DebError> {
    let entry = archive.jump_to_entry(index).map_err(|e| member_error(path, name, e))?;
    let size = entry.header().size();
    Ok((size, Exact { inner: entry, remaining: size }))
}

/// An `ar` member name as text: GNU `ar` ends names with `/`, and names
/// are ASCII in every `.deb` (anything else is shown lossily and will not
/// match an expected name).
fn member_name(identifier: &[u8]) -> String {
    let name = identifier.strip_suffix(b"/").unwrap_or(identifier);
    String::from_utf8_lossy(name).into_owned()
}

fn member_compression(path: &Path, name: &str, stem: &str) -> Result<Compression, DebError> {
    match Compression::of_member(name, stem) {
        Some(Ok(c)) => Ok(c),
        _ => Err(DebError::UnknownCompression { path: path.to_owned(), member: name.to_owned() }),
    }
}

impl DebError {
    /// The error for `error`, met reading member `member` of the `.deb` at
    /// `path` (or a stream decoded from it): [`DebError::Truncated`] if the
    /// data ended early, else [`DebError::Corrupt`].
    pub fn in_member(path: &Path, member: &str, error: io::Error) -> Self {
        member_error(path, member, error)
    }
}

fn member_error(path: &Path, member: &str, error: io::Error) -> DebError {
    if error.kind() == io::ErrorKind::UnexpectedEof {
        DebError::Truncated { path: path.to_owned(), member: member.to_owned() }
    } else {
        DebError::Corrupt { path: path.to_owned(), member: member.to_owned(), source: error }
    }
}

/// deb(5): the first line is `2.N`; later lines, and a higher minor
/// number, are for newer readers to use and older ones to ignore.
fn check_format_version(path: &Path, bytes: &[u8]) -> Result<(), DebError> {
    let text = String::from_utf8_lossy(bytes);
    let ok = text.split_once('\n').is_some_and(|(first, _)| {
        first.strip_prefix("2.").is_some_and(|minor| !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit()))
    });
    if ok {
        Ok(())
    } else {
        Err(DebError::FormatVersion { path: path.to_owned(), found: text.into_owned() })
    }
}

fn decompress<'a, R: Read + 'a>(
    path: &Path,
    reader: R,
    compression: Compression,
) -> Result<Box<dyn Read + 'a>, DebError> {
    Ok(match compression {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(reader)),
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new(reader)),
        Compression::Zstd => Box::new(
            // Only fails when zstd cannot allocate its context.
            zstd::stream::read::Decoder::new(reader).map_err(|e| DebError::Io { path: path.to_owned(), source: e })?,
        ),
    })
}

/// Find `./control` in a `control.tar` and take its identifying fields.
fn read_control(path: &Path, member: &str, tar: Box<dyn Read + '_>) -> Result<Control, DebError> {
    let mut archive = tar::Archive::new(tar);
    let entries = archive.entries().map_err(|e| member_error(path, member, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| member_error(path, member, e))?;
        let name = entry.path_bytes();
        if name.as_ref() != b"./control" && name.as_ref() != b"control" {
            continue;
        }
        if entry.size() > MAX_CONTROL_TAR {
            return Err(DebError::Control { path: path.to_owned(), reason: "./control is too large".into() });
        }
        let mut text = Vec::new();
        entry.read_to_end(&mut text).map_err(|e| member_error(path, member, e))?;
        return parse_control(&text).map_err(|reason| DebError::Control { path: path.to_owned(), reason });
    }
    Err(DebError::Control { path: path.to_owned(), reason: format!("{member} has no ./control") })
}

/// The identifying fields of a binary package's control paragraph
/// (deb-control(5)), read with the crate's one deb822 parser
/// ([`crate::control`]).
fn parse_control(bytes: &[u8]) -> Result<Control, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())?;
    let paragraphs = crate::control::parse(text).map_err(|e| e.to_string())?;
    let [paragraph] = paragraphs.as_slice() else {
        return Err(format!("{} paragraphs where one is expected", paragraphs.len()));
    };
    let field = |name: &str| paragraph.get(name).map(str::to_owned).ok_or(format!("no {name} field"));
    let (package, version, architecture) = (field("Package")?, field("Version")?, field("Architecture")?);
    // Policy §5.6.1; the name goes into paths of error messages and the
    // manifest, so it must be what Debian allows.
    if !crate::relation::valid_package_name(&package) {
        return Err(format!("package name {package:?} is not a Debian package name"));
    }
    // Policy §5.6.12: alphanumerics and `.+-~:`.
    if version.is_empty() || !version.chars().all(|c| c.is_ascii_alphanumeric() || ".+-~:".contains(c)) {
        return Err(format!("version {version:?} of {package} is not a Debian version"));
    }
    if architecture.is_empty() || !architecture.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(format!("architecture {architecture:?} of {package} is not one word"));
    }
    Ok(Control { package, version, architecture })
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;
    use crate::test_debs::*;

    fn open_bytes(bytes: &[u8]) -> (tempfile::TempDir, Result<Deb, DebError>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.deb");
        std::fs::write(&path, bytes).unwrap();
        let deb = Deb::open(&path);
        (dir, deb)
    }

    #[test]
    fn control_fields_and_data_in_every_compression() {
        for compression in [Compression::None, Compression::Gzip, Compression::Xz, Compression::Zstd] {
            let (_dir, deb) = open_bytes(&deb_bytes("hello", &[file("./usr/x", b"x")], compression));
            let mut deb = deb.unwrap();
            assert_eq!(
                deb.control(),
                &Control { package: "hello".into(), version: "1.0-1".into(), architecture: "amd64".into() }
            );
            let mut data = deb.data().unwrap();
            assert_eq!(data.member(), format!("data.tar{}", suffix(compression)));
            let mut tar = Vec::new();
            data.read_to_end(&mut tar).unwrap();
            assert_eq!(tar, tar_of(&[file("./usr/x", b"x")]));
            data.finish().unwrap();
        }
    }

    #[test]
    fn members_deb5_says_to_ignore() {
        let control_tar = tar_of(&[file("./control", b"Package: a1\nVersion: 1\nArchitecture: all\n")]);
        let bytes = ar_of(&[
            ("debian-binary", b"2.1\nmore\n".to_vec()),
            ("_extra", b"ignored".to_vec()),
            ("control.tar", control_tar),
            ("data.tar", tar_of(&[])),
            ("trailer", b"ignored".to_vec()),
        ]);
        let (_dir, deb) = open_bytes(&bytes);
        assert_eq!(deb.unwrap().control().package, "a1");
    }

    #[test]
    fn malformed_packages() {
        let control_tar = tar_of(&[file("./control", b"Package: a1\nVersion: 1\nArchitecture: all\n")]);
        type Members<'a> = Vec<(&'a str, Vec<u8>)>;
        let cases: Vec<(Members, &str)> = vec![
            (
                vec![("debian-binary", b"3.0\n".to_vec()), ("control.tar", control_tar.clone()), ("data.tar", vec![])],
                "format 2.x",
            ),
            (vec![("debian-binary", b"2.0\n".to_vec())], "member control.tar missing"),
            (vec![("control.tar", control_tar.clone())], "member debian-binary missing"),
            (
                vec![
                    ("debian-binary", b"2.0\n".to_vec()),
                    ("control.tar", control_tar.clone()),
                    ("data.tar.bz2", vec![]),
                ],
                "compression this reader does not know",
            ),
            (
                vec![
                    ("debian-binary", b"2.0\n".to_vec()),
                    ("control.tar", tar_of(&[file("./control", b"Version: 1\n")])),
                    ("data.tar", vec![]),
                ],
                "no Package field",
            ),
            (
                vec![
                    ("debian-binary", b"2.0\n".to_vec()),
                    (
                        "control.tar",
                        tar_of(&[file("./control", b"Package: Bad/Name\nVersion: 1\nArchitecture: all\n")]),
                    ),
                    ("data.tar", vec![]),
                ],
                "not a Debian package name",
            ),
        ];
        for (members, expected) in cases {
            let (_dir, deb) = open_bytes(&ar_of(&members));
            let error = deb.unwrap_err().to_string();
            assert!(error.contains(expected) && error.contains("p.deb"), "{error}");
        }
    }

    #[test]
    fn corrupt_data_is_named() {
        let mut bytes = deb_bytes("hello", &[file("./usr/x", &[1; 100_000])], Compression::Xz);
        // Flip a byte near the end of data.tar.xz: the xz check fails.
        let at = bytes.len() - 40;
        bytes[at] ^= 0xff;
        let (_dir, deb) = open_bytes(&bytes);
        let mut deb = deb.unwrap();
        let data = deb.data().unwrap();
        let error = data.finish().unwrap_err();
        assert!(matches!(error, DebError::Corrupt { .. } | DebError::Truncated { .. }), "{error}");
        assert!(error.to_string().contains("data.tar.xz"));
    }
}
