//! Building small `.deb`s (and ELF files) in tests, so that no test needs
//! the network or a real package. Member names are written raw, so that
//! hostile archives (`../x`, `/x`) can be made too.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::deb::Compression;

/// One member of a test package's `data.tar`.
#[derive(Clone, Debug)]
pub enum Entry {
    Dir(&'static str),
    File(&'static str, Vec<u8>, u32),
    Symlink(&'static str, &'static str),
    HardLink(&'static str, &'static str),
    Fifo(&'static str),
}

pub use Entry::*;

/// A regular file with mode 0644.
pub fn file(name: &'static str, contents: &[u8]) -> Entry {
    File(name, contents.to_vec(), 0o644)
}

/// A regular file with mode 0755.
pub fn exe(name: &'static str, contents: &[u8]) -> Entry {
    File(name, contents.to_vec(), 0o755)
}

fn header(name: &str, kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    let raw = name.as_bytes();
    h.as_old_mut().name[..raw.len()].copy_from_slice(raw);
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(1_700_000_000);
    h
}

/// A tar archive of `entries`, in order.
pub fn tar_of(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let (mut h, data): (tar::Header, &[u8]) = match e {
            Dir(n) => (header(n, tar::EntryType::Directory, 0, 0o755), &[]),
            File(n, c, mode) => (header(n, tar::EntryType::Regular, c.len() as u64, *mode), c),
            Symlink(n, t) | HardLink(n, t) => {
                let kind = if matches!(e, Symlink(..)) { tar::EntryType::Symlink } else { tar::EntryType::Link };
                let mut h = header(n, kind, 0, 0o777);
                h.set_link_name_literal(t).unwrap();
                (h, &[])
            }
            Fifo(n) => (header(n, tar::EntryType::Fifo, 0, 0o644), &[]),
        };
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

pub fn compress(bytes: &[u8], compression: Compression) -> Vec<u8> {
    match compression {
        Compression::None => bytes.to_vec(),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(bytes).unwrap();
            e.finish().unwrap()
        }
        Compression::Xz => {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
            e.write_all(bytes).unwrap();
            e.finish().unwrap()
        }
        Compression::Zstd => zstd::stream::encode_all(bytes, 1).unwrap(),
    }
}

pub fn suffix(compression: Compression) -> &'static str {
    match compression {
        Compression::None => "",
        Compression::Gzip => ".gz",
        Compression::Xz => ".xz",
        Compression::Zstd => ".zst",
    }
}

/// An `ar` archive with these members, in order.
pub fn ar_of(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut b = ar::Builder::new(Vec::new());
    for (name, data) in members {
        b.append(&ar::Header::new(name.as_bytes().to_vec(), data.len() as u64), &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

/// The bytes of a `.deb` of `package` with `entries` as its data.
pub fn deb_bytes(package: &str, entries: &[Entry], compression: Compression) -> Vec<u8> {
    let control = format!("Package: {package}\nVersion: 1.0-1\nArchitecture: amd64\nDescription: test\n two lines\n");
    let control_tar = tar_of(&[file("./control", control.as_bytes())]);
    ar_of(&[
        ("debian-binary", b"2.0\n".to_vec()),
        (&format!("control.tar{}", suffix(compression)), compress(&control_tar, compression)),
        (&format!("data.tar{}", suffix(compression)), compress(&tar_of(entries), compression)),
    ])
}

/// Write a `.deb` of `package` into `dir` and return its path.
pub fn write_deb(dir: &Path, package: &str, entries: &[Entry], compression: Compression) -> PathBuf {
    let path = dir.join(format!("{package}_1.0-1_amd64.deb"));
    std::fs::write(&path, deb_bytes(package, entries, compression)).unwrap();
    path
}

/// A minimal 64-bit little-endian x86-64 ELF shared object or executable:
/// one `PT_LOAD` covering the file, a `PT_INTERP` if `interpreter` is
/// given, and a `PT_DYNAMIC` with `DT_NEEDED` for each of `needed` and a
/// `DT_RUNPATH` if `runpath` is given. Enough for the loader's view.
pub fn elf(interpreter: Option<&str>, needed: &[&str], runpath: Option<&str>) -> Vec<u8> {
    const EHDR: usize = 64;
    const PHDR: usize = 56;
    let phnum = if interpreter.is_some() { 3 } else { 2 };
    let mut strtab = vec![0u8];
    let mut add = |s: &str| {
        let at = strtab.len() as u64;
        strtab.extend_from_slice(s.as_bytes());
        strtab.push(0);
        at
    };
    let interp_at = interpreter.map(&mut add);
    let mut dyns: Vec<(u64, u64)> = needed.iter().map(|n| (1, add(n))).collect();
    if let Some(r) = runpath {
        dyns.push((29, add(r)));
    }
    // The loader (and `object`) want the dynamic section 8-byte aligned.
    strtab.resize(strtab.len().next_multiple_of(8), 0);
    let strtab_off = (EHDR + PHDR * phnum) as u64;
    dyns.push((5, strtab_off)); // DT_STRTAB, an address = offset (vaddr 0)
    dyns.push((10, strtab.len() as u64)); // DT_STRSZ
    dyns.push((0, 0));
    let dyn_off = strtab_off + strtab.len() as u64;
    let total = dyn_off + 16 * dyns.len() as u64;

    let mut out = Vec::new();
    out.extend_from_slice(b"\x7fELF\x02\x01\x01");
    out.resize(16, 0);
    out.extend_from_slice(&3u16.to_le_bytes()); // ET_DYN
    out.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes()); // entry
    out.extend_from_slice(&(EHDR as u64).to_le_bytes()); // phoff
    out.extend_from_slice(&0u64.to_le_bytes()); // shoff
    out.extend_from_slice(&0u32.to_le_bytes()); // flags
    for v in [EHDR as u16, PHDR as u16, phnum as u16, 64, 0, 0] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let mut phdr = |kind: u32, offset: u64, size: u64| {
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&4u32.to_le_bytes());
        for v in [offset, offset, offset, size, size, 8] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    };
    phdr(1, 0, total); // PT_LOAD
    if let Some(at) = interp_at {
        let len = interpreter.map_or(0, |i| i.len() as u64 + 1);
        phdr(3, strtab_off + at, len); // PT_INTERP
    }
    phdr(2, dyn_off, 16 * dyns.len() as u64); // PT_DYNAMIC
    out.extend_from_slice(&strtab);
    for (tag, val) in dyns {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&val.to_le_bytes());
    }
    out
}
