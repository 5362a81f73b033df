//! How two results of one build differ, file by file, for `drv build
//! --check` and `--vary`: which files differ, their sizes and first
//! differing byte, and what that byte is in the file's format: an ELF
//! file's section, a `.pyc` header field or its code, a tar or zip (wheel)
//! member and its metadata, lines of text as a unified diff. [`diffoscope`] runs the
//! field's own tool when it is installed, for everything else.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// How many lines of a unified diff are shown.
const DIFF_LINES: usize = 20;
/// How many differing members of an archive are described.
const MEMBERS: usize = 5;
/// Compressed members are read up to this size.
const MAX_UNPACKED: u64 = 256 << 20;

/// Files that differ between two trees (or two files): per file a first
/// line `PATH: sizes A and B, first difference at byte N`, or what exists
/// on one side only, followed by indented lines saying what the bytes are
/// where the format is known.
pub fn tree_differences(a: &Path, b: &Path) -> io::Result<Vec<String>> {
    // `root.join("")` is `root/`, which is not the file a single-file
    // output is (ENOTDIR) and follows a symlink output: the top is `root`.
    fn at(root: &Path, rel: &Path) -> PathBuf {
        if rel.as_os_str().is_empty() {
            root.to_owned()
        } else {
            root.join(rel)
        }
    }
    fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, fs::Metadata>) -> io::Result<()> {
        let p = at(root, rel);
        let m = fs::symlink_metadata(&p)?;
        let is_dir = m.is_dir();
        out.insert(rel.to_owned(), m);
        if is_dir {
            for e in fs::read_dir(&p)? {
                walk(root, &rel.join(e?.file_name()), out)?;
            }
        }
        Ok(())
    }
    let (mut ta, mut tb) = (BTreeMap::new(), BTreeMap::new());
    walk(a, Path::new(""), &mut ta)?;
    walk(b, Path::new(""), &mut tb)?;
    let mut diffs = Vec::new();
    let all: BTreeSet<&PathBuf> = ta.keys().chain(tb.keys()).collect();
    for rel in all {
        let shown = if rel.as_os_str().is_empty() { ".".to_owned() } else { rel.display().to_string() };
        match (ta.get(rel), tb.get(rel)) {
            (Some(_), None) => diffs.push(format!("  {shown}: only in the first build")),
            (None, Some(_)) => diffs.push(format!("  {shown}: only in the second build")),
            (Some(ma), Some(mb)) => {
                if ma.file_type() != mb.file_type() {
                    diffs.push(format!("  {shown}: file type differs"));
                } else if ma.is_file() {
                    let (ca, cb) = (fs::read(at(a, rel))?, fs::read(at(b, rel))?);
                    if ca != cb {
                        let offset = first_difference(&ca, &cb);
                        let mut text =
                            format!("  {shown}: sizes {} and {}, first difference at byte {offset}", ca.len(), cb.len());
                        let name = rel.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                        for line in describe(&name, &ca, &cb, offset) {
                            text.push_str("\n      ");
                            text.push_str(&line);
                        }
                        diffs.push(text);
                    }
                } else if ma.file_type().is_symlink() && fs::read_link(at(a, rel))? != fs::read_link(at(b, rel))? {
                    diffs.push(format!("  {shown}: symlink target differs"));
                }
                if ma.is_file() && (ma.permissions() != mb.permissions()) {
                    diffs.push(format!("  {shown}: permissions differ"));
                }
            }
            (None, None) => {}
        }
    }
    Ok(diffs)
}

fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()))
}

/// What the first difference is in the file's format, as lines; nothing
/// for a format not known here.
pub fn describe(name: &str, a: &[u8], b: &[u8], offset: usize) -> Vec<String> {
    if a.starts_with(b"\x7fELF") && b.starts_with(b"\x7fELF") {
        return elf(a, offset).into_iter().collect();
    }
    if name.ends_with(".pyc") && a.len() >= 16 && b.len() >= 16 {
        return vec![pyc(a, offset)];
    }
    if is_tar(a) && is_tar(b) {
        return tar_members(a, b);
    }
    if is_zip(a) && is_zip(b) {
        return zip_members(a, b);
    }
    if a.starts_with(&[0x1f, 0x8b]) && b.starts_with(&[0x1f, 0x8b]) {
        let inner = name.strip_suffix(".gz").or_else(|| name.strip_suffix(".tgz").map(|_| "x.tar")).unwrap_or(name);
        return match (gunzip(a), gunzip(b)) {
            (Some(ua), Some(ub)) if ua == ub => vec!["gzip: the same contents, another gzip header (its mtime or name)".into()],
            (Some(ua), Some(ub)) => {
                let at = first_difference(&ua, &ub);
                let mut lines = vec![format!("gzip: the contents differ from byte {at}")];
                lines.extend(describe(inner, &ua, &ub, at));
                lines
            }
            _ => Vec::new(),
        };
    }
    text_diff(a, b)
}

/// The ELF section (or header) that holds `offset` in the first file.
fn elf(data: &[u8], offset: usize) -> Option<String> {
    use object::{Object, ObjectSection};
    let file = object::File::parse(data).ok()?;
    let offset = offset as u64;
    for section in file.sections() {
        if let Some((start, size)) = section.file_range() {
            if (start..start + size).contains(&offset) {
                let name = section.name().unwrap_or("?");
                return Some(format!("ELF: in section {name} (byte {} of it)", offset - start));
            }
        }
    }
    let header = if file.is_64() { 64 } else { 52 };
    Some(if offset < header { "ELF: in the file header".into() } else { "ELF: outside every section (program or section headers)".into() })
}

/// A `.pyc`'s 16-byte header (PEP 552) or its marshalled code.
fn pyc(a: &[u8], offset: usize) -> String {
    let flags = u32::from_le_bytes([a[4], a[5], a[6], a[7]]);
    let hash_based = flags & 1 == 1;
    let field = match offset {
        0..=3 => "the magic number (another Python version)",
        4..=7 => "the flags (timestamp-based or hash-based)",
        8..=15 if hash_based => "the source hash (another source)",
        8..=11 => "the source's mtime (a timestamp-based .pyc: set SOURCE_DATE_EPOCH or compile with --invalidation-mode checked-hash)",
        12..=15 => "the source's size",
        _ => "the code object (marshalled), not the header",
    };
    format!(".pyc: in {field}")
}

fn is_tar(data: &[u8]) -> bool {
    data.len() >= 512 && &data[257..262] == b"ustar"
}

/// One member of a tar archive: its metadata and contents.
#[derive(PartialEq, Eq)]
struct Member {
    path: String,
    /// (field, value), in the same order for every member.
    metadata: Vec<(&'static str, String)>,
    contents: Vec<u8>,
}

fn tar_members_of(data: &[u8]) -> io::Result<Vec<Member>> {
    let mut archive = tar::Archive::new(data);
    let mut members = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let h = entry.header();
        let metadata = vec![
            ("mode", format!("{:o}", h.mode().unwrap_or(0))),
            ("uid", h.uid().unwrap_or(0).to_string()),
            ("gid", h.gid().unwrap_or(0).to_string()),
            ("owner", format!("{:?}", h.username().ok().flatten().unwrap_or(""))),
            ("group", format!("{:?}", h.groupname().ok().flatten().unwrap_or(""))),
            ("mtime", h.mtime().unwrap_or(0).to_string()),
            ("type", format!("{:?}", h.entry_type())),
        ];
        let path = entry.path()?.display().to_string();
        let mut contents = Vec::new();
        (&mut entry).take(MAX_UNPACKED).read_to_end(&mut contents)?;
        members.push(Member { path, metadata, contents });
    }
    Ok(members)
}

/// The members of two tar archives that differ: order, metadata, contents.
fn tar_members(a: &[u8], b: &[u8]) -> Vec<String> {
    let (Ok(ma), Ok(mb)) = (tar_members_of(a), tar_members_of(b)) else {
        return vec!["tar: cannot read both archives".into()];
    };
    members_differ("tar", "sort them: tar --sort=name", &ma, &mb)
}

fn is_zip(data: &[u8]) -> bool {
    data.starts_with(b"PK\x03\x04")
}

fn zip_members_of(data: &[u8]) -> zip::result::ZipResult<Vec<Member>> {
    let mut archive = zip::ZipArchive::new(io::Cursor::new(data))?;
    let mut members = Vec::new();
    for i in 0..archive.len() {
        let mut file = archive.by_index(i)?;
        let modified = file.last_modified().map(|t| {
            format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02}", t.year(), t.month(), t.day(), t.hour(), t.minute(), t.second())
        });
        let metadata = vec![
            ("mtime", modified.unwrap_or_default()),
            ("mode", file.unix_mode().map(|m| format!("{m:o}")).unwrap_or_default()),
            ("compression", file.compression().to_string()),
            ("comment", format!("{:?}", file.comment())),
        ];
        let path = file.name().to_owned();
        let mut contents = Vec::new();
        (&mut file).take(MAX_UNPACKED).read_to_end(&mut contents)?;
        members.push(Member { path, metadata, contents });
    }
    Ok(members)
}

/// The members of two zip archives (wheels, jars) that differ.
fn zip_members(a: &[u8], b: &[u8]) -> Vec<String> {
    let (Ok(ma), Ok(mb)) = (zip_members_of(a), zip_members_of(b)) else {
        return vec!["zip: cannot read both archives".into()];
    };
    let mut lines = members_differ("zip", "sort them when archiving", &ma, &mb);
    if lines.is_empty() {
        lines.push("zip: the same members, other archive headers (a comment, extra fields)".into());
    }
    lines
}

/// How the members of two archives differ: order, presence, metadata,
/// contents (each described in its own format).
fn members_differ(kind: &str, sort_hint: &str, ma: &[Member], mb: &[Member]) -> Vec<String> {
    let mut lines = Vec::new();
    let order = |m: &[Member]| m.iter().map(|m| m.path.clone()).collect::<Vec<_>>();
    let (oa, ob) = (order(ma), order(mb));
    if oa != ob {
        let (sa, sb): (BTreeSet<_>, BTreeSet<_>) = (oa.iter().collect(), ob.iter().collect());
        if sa == sb {
            lines.push(format!("{kind}: the same members in another order ({sort_hint})"));
        }
        for p in sa.difference(&sb).take(MEMBERS) {
            lines.push(format!("{kind}: member {p} only in the first"));
        }
        for p in sb.difference(&sa).take(MEMBERS) {
            lines.push(format!("{kind}: member {p} only in the second"));
        }
    }
    let by_path: BTreeMap<&str, &Member> = mb.iter().map(|m| (m.path.as_str(), m)).collect();
    let mut shown = 0;
    for x in ma {
        let Some(y) = by_path.get(x.path.as_str()) else { continue };
        if shown == MEMBERS {
            lines.push(format!("{kind}: … and more members"));
            break;
        }
        if x.metadata != y.metadata {
            let fields: Vec<String> = x
                .metadata
                .iter()
                .zip(&y.metadata)
                .filter(|(a, b)| a != b)
                .map(|((field, a), (_, b))| format!("{field} {a} → {b}"))
                .collect();
            lines.push(format!("{kind}: member {}: {}", x.path, fields.join(", ")));
            shown += 1;
        }
        if x.contents != y.contents {
            let at = first_difference(&x.contents, &y.contents);
            lines.push(format!(
                "{kind}: member {}: contents differ, sizes {} and {}, first difference at byte {at}",
                x.path,
                x.contents.len(),
                y.contents.len()
            ));
            let name = Path::new(&x.path).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            lines.extend(describe(&name, &x.contents, &y.contents, at).into_iter().map(|l| format!("  {l}")));
            shown += 1;
        }
    }
    lines
}

fn gunzip(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data).take(MAX_UNPACKED).read_to_end(&mut out).ok()?;
    Some(out)
}

/// A unified diff of the first differing lines, for text files.
fn text_diff(a: &[u8], b: &[u8]) -> Vec<String> {
    let (Ok(ta), Ok(tb)) = (std::str::from_utf8(a), std::str::from_utf8(b)) else { return Vec::new() };
    if ta.contains('\0') || tb.contains('\0') {
        return Vec::new();
    }
    let diff = similar::TextDiff::from_lines(ta, tb);
    let text = diff.unified_diff().context_radius(1).header("first build", "second build").to_string();
    let mut lines: Vec<String> = text.lines().take(DIFF_LINES).map(str::to_owned).collect();
    if text.lines().count() > DIFF_LINES {
        lines.push("…".into());
    }
    lines
}

/// diffoscope's report on `a` and `b`, written as text to `report`, when
/// diffoscope is installed: `Some(report)` once written, `None` when it
/// is not installed or could not compare.
pub fn diffoscope(a: &Path, b: &Path, report: &Path) -> Option<PathBuf> {
    if let Some(dir) = report.parent() {
        fs::create_dir_all(dir).ok()?;
    }
    let status = Command::new("diffoscope")
        .arg("--no-progress")
        .arg("--text")
        .arg(report)
        .arg(a)
        .arg(b)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    // 0: the same, 1: differences found; anything else is its failure.
    (matches!(status.code(), Some(0 | 1)) && report.exists()).then(|| report.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_file_and_symlink_outputs_are_compared_as_themselves() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        fs::write(&a, [0u8, 1, 2, 3, 4, 5]).unwrap();
        fs::write(&b, [0u8, 1, 2, 3, 9, 5]).unwrap();
        assert_eq!(tree_differences(&a, &b).unwrap(), vec!["  .: sizes 6 and 6, first difference at byte 4"]);
        fs::write(&b, [0u8, 1, 2, 3, 4, 5]).unwrap();
        assert!(tree_differences(&a, &b).unwrap().is_empty());

        let (la, lb) = (t.path().join("la"), t.path().join("lb"));
        std::os::unix::fs::symlink("a", &la).unwrap();
        std::os::unix::fs::symlink("b", &lb).unwrap();
        assert_eq!(tree_differences(&la, &lb).unwrap(), vec!["  .: symlink target differs"]);
    }

    #[test]
    fn text_is_shown_as_a_unified_diff() {
        let lines = describe("log", b"one\ntwo\nthree\n", b"one\nTWO\nthree\n", 4);
        assert!(lines.contains(&"-two".to_owned()) && lines.contains(&"+TWO".to_owned()), "{lines:?}");
        assert!(describe("bin", b"\0\x01", b"\0\x02", 1).is_empty());
    }

    #[test]
    fn pyc_headers_are_told_from_code() {
        let mut a = vec![0x6f, 0x0d, 0x0d, 0x0a, 0, 0, 0, 0, 1, 2, 3, 4, 5, 0, 0, 0, 0xe3, 0];
        let mut b = a.clone();
        b[9] = 7;
        assert!(describe("m.cpython-311.pyc", &a, &b, 9)[0].contains("mtime"));
        a[4] = 1;
        b[4] = 1;
        assert!(describe("m.pyc", &a, &b, 9)[0].contains("source hash"));
        assert!(describe("m.pyc", &a, &b, 17)[0].contains("code object"));
    }

    fn tar_of(members: &[(&str, &[u8], u64)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data, mtime) in members {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(*mtime);
            h.set_cksum();
            builder.append_data(&mut h, path, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn tar_members_are_compared_by_metadata_contents_and_order() {
        let a = tar_of(&[("a", b"x", 1), ("b", b"same", 1)]);
        let b = tar_of(&[("a", b"x", 2), ("b", b"same", 1)]);
        let lines = describe("out.tar", &a, &b, first_difference(&a, &b));
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0], "tar: member a: mtime 1 → 2", "{lines:?}");

        let c = tar_of(&[("b", b"same", 1), ("a", b"x", 1)]);
        let lines = describe("out.tar", &a, &c, first_difference(&a, &c));
        assert_eq!(lines, vec!["tar: the same members in another order (sort them: tar --sort=name)"]);

        let d = tar_of(&[("a", b"y", 1), ("b", b"same", 1)]);
        let lines = describe("out.tar", &a, &d, first_difference(&a, &d));
        assert!(lines[0].contains("member a: contents differ"), "{lines:?}");
        assert!(lines.iter().any(|l| l.contains("+y")), "{lines:?}");
    }

    fn zip_of(members: &[(&str, &[u8], u16)]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        for (name, data, minute) in members {
            let time = zip::DateTime::from_date_and_time(2020, 1, 1, 0, *minute as u8, 0).unwrap();
            let options = zip::write::SimpleFileOptions::default().last_modified_time(time);
            w.start_file(*name, options).unwrap();
            std::io::Write::write_all(&mut w, data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn wheel_members_are_compared_by_metadata_and_contents() {
        let a = zip_of(&[("pkg/__init__.py", b"x = 1\n", 0), ("pkg-1.dist-info/RECORD", b"r\n", 0)]);
        let b = zip_of(&[("pkg/__init__.py", b"x = 2\n", 0), ("pkg-1.dist-info/RECORD", b"r\n", 5)]);
        let lines = describe("pkg-1-py3-none-any.whl", &a, &b, first_difference(&a, &b));
        assert!(lines.iter().any(|l| l.starts_with("zip: member pkg/__init__.py: contents differ")), "{lines:?}");
        assert!(lines.iter().any(|l| l.contains("+x = 2")), "{lines:?}");
        assert!(lines.iter().any(|l| l == "zip: member pkg-1.dist-info/RECORD: mtime 2020-01-01 00:00:00 → 2020-01-01 00:05:00"), "{lines:?}");
    }

    #[test]
    fn elf_differences_name_the_section() {
        // This test binary itself: a byte of its .text changed.
        let exe = fs::read(std::env::current_exe().unwrap()).unwrap();
        let file = object::File::parse(&*exe).unwrap();
        use object::{Object, ObjectSection};
        let text = file.section_by_name(".text").unwrap();
        let (start, _) = text.file_range().unwrap();
        let at = start as usize + 16;
        let mut other = exe.clone();
        other[at] ^= 0xff;
        assert_eq!(describe("prog", &exe, &other, at), vec!["ELF: in section .text (byte 16 of it)"]);
    }
}
