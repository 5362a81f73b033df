//! Debian archive indices, for `drv lock`: one suite's `InRelease` and its
//! `Packages.xz`, fetched through a mirror name and checked.
//!
//! The chain of trust is apt's (Debian wiki, "SecureApt"): the `InRelease`
//! file is signed by the archive's key, and lists the sha256 and size of
//! every index; the index lists the sha256 of every `.deb`, which the lock
//! records. The signature is checked by `gpgv` — the verifier apt itself
//! runs — against the archive keyring (`debian-archive-keyring`'s
//! `/usr/share/keyrings/debian-archive-keyring.gpg`, or one given); when
//! either is missing the index is used unverified and the caller is told
//! so ([`Verification::Unverified`]). Only the text `gpgv` vouches for is
//! read. A bad signature, or an index whose sha256 or size is not the
//! listed one, is an error.

use std::path::{Path, PathBuf};
use std::process::Command;

use drv_debian::release::Release;

use crate::fetch::{FetchError, FetchSource, Fetcher};

/// The keyring of Debian's `debian-archive-keyring` package.
pub const DEBIAN_ARCHIVE_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// The largest decompressed `Packages` index drv reads: Debian's biggest
/// (main, amd64) is about 100 MiB.
pub const PACKAGES_LIMIT: u64 = 1024 * 1024 * 1024;

/// What can go wrong reading an archive's indices.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("{url}: the signature does not verify against {}: {detail}", keyring.display())]
    BadSignature { url: String, keyring: PathBuf, detail: String },
    #[error("{url}: {message}")]
    Release { url: String, message: String },
    #[error("{url}: the release lists no {index}")]
    NoIndex { url: String, index: String },
    #[error("{url}: sha256 {got} ({got_size} bytes), but the release lists {expected} ({expected_size} bytes)")]
    IndexMismatch { url: String, expected: String, expected_size: u64, got: String, got_size: u64 },
    #[error("{url}: cannot decompress: {error}")]
    Decompress { url: String, error: std::io::Error },
    #[error("cannot run gpgv: {0}")]
    Gpgv(std::io::Error),
    #[error("the keyring {} does not exist", .0.display())]
    NoKeyring(PathBuf),
}

/// Whether a release file's signature was checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verification {
    Verified { keyring: PathBuf },
    /// Why not (no keyring, no gpgv).
    Unverified { reason: String },
}

/// One suite's `main` index for one architecture, checked.
#[derive(Debug)]
pub struct SuiteIndex {
    /// The release file's `Date:`.
    pub date: String,
    pub verification: Verification,
    /// The `Packages` text (decompressed).
    pub packages: String,
}

/// Fetch `mirror://<mirror>/dists/<suite>/InRelease`, check its signature
/// with `keyring` (default [`DEBIAN_ARCHIVE_KEYRING`]), then fetch the
/// `<component>/binary-<architecture>/Packages.xz` it lists and check its
/// sha256 and size.
pub fn fetch_suite_index(
    fetcher: &Fetcher,
    mirror: &str,
    suite: &str,
    component: &str,
    architecture: &str,
    keyring: Option<&Path>,
) -> Result<SuiteIndex, ArchiveError> {
    let release_url = format!("mirror://{mirror}/dists/{suite}/InRelease");
    let fetched = fetcher.prefetch(&FetchSource::Url(release_url.clone()))?;
    // A keyring the user named must be there; only the default one may be
    // missing (then the index is used unverified, and the caller says so).
    if let Some(k) = keyring.filter(|k| !k.is_file()) {
        return Err(ArchiveError::NoKeyring(k.to_owned()));
    }
    let keyring = keyring.map(Path::to_owned).unwrap_or_else(|| PathBuf::from(DEBIAN_ARCHIVE_KEYRING));
    let (text, verification) = verify(&fetched.file, &keyring, &fetched.url)?;
    let parsed = match verification {
        // gpgv wrote out the signed text alone.
        Verification::Verified { .. } => Release::parse(&text),
        Verification::Unverified { .. } => Release::parse_inrelease(&text),
    };
    let release = parsed.map_err(|e| ArchiveError::Release { url: fetched.url.clone(), message: e.to_string() })?;

    let index = format!("{component}/binary-{architecture}/Packages.xz");
    let (expected, expected_size) = release
        .sha256_of(&index)
        .map(|(h, s)| (h.to_ascii_lowercase(), s))
        .ok_or_else(|| ArchiveError::NoIndex { url: fetched.url.clone(), index: index.clone() })?;
    let packages_url = format!("mirror://{mirror}/dists/{suite}/{index}");
    let got = fetcher.prefetch(&FetchSource::Url(packages_url))?;
    if got.sha256.to_hex() != expected || got.size != expected_size {
        return Err(ArchiveError::IndexMismatch {
            url: got.url.clone(),
            expected,
            expected_size,
            got: got.sha256.to_hex(),
            got_size: got.size,
        });
    }
    let decompress_error = |error| ArchiveError::Decompress { url: got.url.clone(), error };
    let file = std::fs::File::open(&got.file).map_err(decompress_error)?;
    // Bounded while it decompresses: an index sent unverified (no keyring)
    // could be a few KiB of xz that expands without end.
    let packages = match crate::bounded::read_bounded(liblzma::read::XzDecoder::new(file), PACKAGES_LIMIT) {
        Ok(crate::bounded::Bounded::Complete(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        Ok(crate::bounded::Bounded::TooLarge) => {
            return Err(decompress_error(std::io::Error::other(format!("Packages is larger than {PACKAGES_LIMIT} bytes"))))
        }
        Err(e) => return Err(decompress_error(e)),
    };
    Ok(SuiteIndex { date: release.date().unwrap_or_default().to_owned(), verification, packages })
}

/// The text of a clearsigned release file that `gpgv` vouches for, or
/// the whole file unverified when there is no keyring or no `gpgv`.
fn verify(file: &Path, keyring: &Path, url: &str) -> Result<(String, Verification), ArchiveError> {
    let read = |p: &Path| {
        std::fs::read(p)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|error| ArchiveError::Fetch(FetchError::Io { path: p.to_owned(), error }))
    };
    if !keyring.is_file() {
        let reason = format!("no archive keyring at {} (install debian-archive-keyring)", keyring.display());
        return Ok((read(file)?, Verification::Unverified { reason }));
    }
    let dir = tempfile::tempdir().map_err(ArchiveError::Gpgv)?;
    let signed = dir.path().join("Release");
    let result = Command::new("gpgv")
        .arg("--quiet")
        .arg("--keyring")
        .arg(keyring)
        .arg("--output")
        .arg(&signed)
        .arg(file)
        .output();
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let reason = "gpgv is not installed (Debian package gpgv)".to_owned();
            Ok((read(file)?, Verification::Unverified { reason }))
        }
        Err(e) => Err(ArchiveError::Gpgv(e)),
        Ok(o) if !o.status.success() => Err(ArchiveError::BadSignature {
            url: url.to_owned(),
            keyring: keyring.to_owned(),
            detail: String::from_utf8_lossy(&o.stderr).trim().to_owned(),
        }),
        Ok(_) => Ok((read(&signed)?, Verification::Verified { keyring: keyring.to_owned() })),
    }
}
