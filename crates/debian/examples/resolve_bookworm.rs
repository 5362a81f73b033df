//! Resolve the toolchain's package names against the real bookworm indices
//! that `apt-get update` left in /var/lib/apt/lists, and time each step.
//!
//! ```text
//! cargo run --release -p drv-debian --example resolve_bookworm -- [--lists DIR] [--arch ARCH] [--list] [NAME…]
//! ```
//!
//! For each suite (bookworm, bookworm-updates, bookworm-security, in that
//! order of preference) it reads `*_dists_<suite>_InRelease` and
//! `*_dists_<suite>_main_binary-<arch>_Packages[.xz|.gz|.lz4]`, checks the
//! uncompressed index against the `SHA256:` of the `InRelease` (the
//! signature is not checked here), builds the index and resolves. apt
//! stores its lists lz4-compressed on some systems; there is no lz4 crate
//! in the workspace, so those go through the `lz4cat` program.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use drv_debian::release::Release;
use drv_debian::resolve::{resolve, Index};
use sha2::{Digest, Sha256};

const SUITES: [&str; 3] = ["bookworm", "bookworm-updates", "bookworm-security"];
const TOOLCHAIN: [&str; 15] = [
    "gcc", "binutils", "make", "libc6-dev", "coreutils", "dash", "sed", "grep", "mawk", "diffutils", "findutils",
    "tar", "bzip2", "gzip", "xz-utils",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut lists = PathBuf::from("/var/lib/apt/lists");
    let mut arch = String::from("amd64");
    let mut list = false;
    let mut names = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--lists" => lists = args.next().ok_or("--lists needs a directory")?.into(),
            "--arch" => arch = args.next().ok_or("--arch needs an architecture")?,
            "--list" => list = true,
            _ => names.push(a),
        }
    }
    if names.is_empty() {
        names = TOOLCHAIN.iter().map(|s| s.to_string()).collect();
    }

    let mut index = Index::new();
    let mut parse_total = 0.0;
    for suite in SUITES {
        let Some(release_file) = find(&lists, &format!("_dists_{suite}_InRelease"))? else {
            eprintln!("{suite}: no InRelease in {}; skipped", lists.display());
            continue;
        };
        let release = Release::parse_inrelease(&std::fs::read_to_string(&release_file)?)?;
        let Some(packages_file) = find(&lists, &format!("_dists_{suite}_main_binary-{arch}_Packages"))? else {
            eprintln!("{suite}: no Packages index for {arch}; skipped");
            continue;
        };
        let text = decompress(&packages_file)?;
        let listed = release.sha256_of(&format!("main/binary-{arch}/Packages")).ok_or("Packages not listed in InRelease")?;
        let actual = Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect::<String>();
        let matches = listed == (actual.as_str(), text.len() as u64);
        let start = Instant::now();
        let stanzas = drv_debian::control::paragraphs(&text).count();
        let deb822 = start.elapsed().as_secs_f64();
        let start = Instant::now();
        index.add_packages(&text, suite)?;
        let seconds = start.elapsed().as_secs_f64();
        parse_total += seconds;
        println!(
            "{suite}: codename {:?}, date {:?}: {} bytes, sha256 {} InRelease; {stanzas} stanzas: deb822 alone {:.1} ms, parsed and indexed in {:.1} ms",
            release.codename().unwrap_or("?"),
            release.date().unwrap_or("?"),
            text.len(),
            if matches { "matches" } else { "DOES NOT MATCH" },
            deb822 * 1e3,
            seconds * 1e3
        );
    }
    println!("{} packages indexed in {:.1} ms", index.packages().len(), parse_total * 1e3);

    // Every relation field of the archive must parse, not only the few
    // that a resolution reads.
    let start = Instant::now();
    let mut relations = 0;
    for p in index.packages() {
        match p.relations() {
            Ok(r) => relations += r.len(),
            Err(e) => println!("unparsable: {e}"),
        }
    }
    println!("all Pre-Depends/Depends parsed ({relations} elements) in {:.1} ms", start.elapsed().as_secs_f64() * 1e3);

    let start = Instant::now();
    let locked = resolve(&index, &arch, &names)?;
    let seconds = start.elapsed().as_secs_f64();
    println!("resolved {} names to {} packages in {:.2} ms", names.len(), locked.len(), seconds * 1e3);
    if list {
        for p in &locked {
            let provides = if p.provides.is_empty() { String::new() } else { format!(" provides {}", p.provides.join(",")) };
            println!("{} {} {} {}{provides}", p.name, p.version, p.architecture, p.repository);
        }
    }
    Ok(())
}

/// The file in `dir` whose name ends with `suffix`, optionally followed by
/// a compression extension.
fn find(dir: &Path, suffix: &str) -> std::io::Result<Option<PathBuf>> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let stem = name.strip_suffix(".xz").or(name.strip_suffix(".gz")).or(name.strip_suffix(".lz4")).unwrap_or(name);
        if stem.ends_with(suffix) {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

fn decompress(path: &Path) -> Result<String, Box<dyn std::error::Error>> {
    let file = std::fs::File::open(path)?;
    let mut text = String::new();
    match path.extension().and_then(|e| e.to_str()) {
        Some("xz") => liblzma::read::XzDecoder::new(file).read_to_string(&mut text).map(drop)?,
        Some("gz") => flate2::read::GzDecoder::new(file).read_to_string(&mut text).map(drop)?,
        Some("lz4") => {
            let out = std::process::Command::new("lz4cat").arg(path).output()?;
            if !out.status.success() {
                return Err(format!("lz4cat {} failed", path.display()).into());
            }
            text = String::from_utf8(out.stdout)?;
        }
        _ => std::io::BufReader::new(file).read_to_string(&mut text).map(drop)?,
    }
    Ok(text)
}
