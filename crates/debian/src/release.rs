//! `Release` and `InRelease` files: a suite's description and the sha256
//! of each index it lists (Debian wiki "DebianRepository/Format").
//!
//! A `Release` file is one deb822 paragraph ([`crate::control`]). An
//! `InRelease` file is the same text as an OpenPGP cleartext-signed message
//! (RFC 4880 §7). This module only takes the signed text out of it; the
//! signature must be checked by the caller (with `gpgv` over the whole
//! file) before anything here is trusted. Because of that split, the
//! extraction is strict: exactly one signed message, nothing but blank
//! lines around it, so that the text parsed here is the text `gpgv`
//! checked.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::control::{self, ControlError};

/// What is wrong with a `Release` or `InRelease` file. Line numbers are
/// 1-based lines of the file as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("a Release file is one paragraph; found {count}")]
    Paragraphs { count: usize },
    #[error("the Release file has no SHA256 field")]
    MissingSha256,
    #[error("line {line}: malformed SHA256 entry {text:?}: {reason}")]
    Sha256Entry { line: usize, text: String, reason: &'static str },
    #[error("line {line}: not a clearsigned message: {reason}")]
    ClearSigned { line: usize, reason: &'static str },
}

pub type Result<T, E = ReleaseError> = std::result::Result<T, E>;

/// One index file listed under `SHA256:`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listed {
    sha256: String,
    size: u64,
}

/// The fields of a `Release` file that locking needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    suite: Option<String>,
    codename: Option<String>,
    date: Option<String>,
    architectures: Vec<String>,
    components: Vec<String>,
    /// Path below `dists/<suite>/` → hash and size.
    sha256: BTreeMap<String, Listed>,
}

impl Release {
    /// Parse a plain `Release` file.
    ///
    /// Errors: malformed deb822 ([`ReleaseError::Control`]), not exactly
    /// one paragraph, no `SHA256:` field, or a `SHA256:` line that is not
    /// `<64 hex digits> <size> <path>` (or lists a path twice).
    pub fn parse(text: &str) -> Result<Release> {
        Release::parse_at(text, 0)
    }

    /// Parse an `InRelease` file: [`clearsigned_text`], then
    /// [`Release::parse`]. The signature is not verified here.
    pub fn parse_inrelease(text: &str) -> Result<Release> {
        let (signed, offset) = signed_text(text)?;
        Release::parse_at(&signed, offset)
    }

    /// `offset`: lines of the file before `text`, for error messages.
    fn parse_at(text: &str, offset: usize) -> Result<Release> {
        let paragraphs = control::parse(text).map_err(|mut e| {
            e.line += offset;
            e
        })?;
        let [paragraph] = paragraphs.as_slice() else {
            return Err(ReleaseError::Paragraphs { count: paragraphs.len() });
        };
        let words = |name| -> Vec<String> {
            paragraph.get(name).map(|v| v.split_whitespace().map(str::to_owned).collect()).unwrap_or_default()
        };
        let sha256_field = paragraph.field("SHA256").ok_or(ReleaseError::MissingSha256)?;
        let mut sha256 = BTreeMap::new();
        for (i, line) in sha256_field.value.lines().enumerate() {
            let line_number = sha256_field.value_line + offset + i;
            let entry = line.trim_ascii();
            if entry.is_empty() {
                continue;
            }
            let bad = |reason| ReleaseError::Sha256Entry { line: line_number, text: entry.to_owned(), reason };
            let mut parts = entry.split_ascii_whitespace();
            let (Some(hash), Some(size), Some(path), None) = (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(bad("expected `<sha256> <size> <path>`"));
            };
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad("the hash is not 64 hexadecimal digits"));
            }
            let size = size.parse::<u64>().map_err(|_| bad("the size is not a number"))?;
            let listed = Listed { sha256: hash.to_ascii_lowercase(), size };
            if sha256.insert(path.to_owned(), listed).is_some() {
                return Err(bad("path listed twice"));
            }
        }
        Ok(Release {
            suite: paragraph.get("Suite").map(str::to_owned),
            codename: paragraph.get("Codename").map(str::to_owned),
            date: paragraph.get("Date").map(str::to_owned),
            architectures: words("Architectures"),
            components: words("Components"),
            sha256,
        })
    }

    /// `Suite:` (`stable`, `oldstable`, `bookworm-security`…).
    pub fn suite(&self) -> Option<&str> {
        self.suite.as_deref()
    }

    /// `Codename:` (`bookworm`).
    pub fn codename(&self) -> Option<&str> {
        self.codename.as_deref()
    }

    /// `Date:`, as written (RFC 2822 in UTC).
    pub fn date(&self) -> Option<&str> {
        self.date.as_deref()
    }

    /// `Architectures:`, in the file's order.
    pub fn architectures(&self) -> &[String] {
        &self.architectures
    }

    /// `Components:`, in the file's order.
    pub fn components(&self) -> &[String] {
        &self.components
    }

    /// The sha256 (64 lowercase hex digits) and size of the index at
    /// `path` below the suite's directory (`main/binary-amd64/Packages.xz`).
    pub fn sha256_of(&self, path: &str) -> Option<(&str, u64)> {
        self.sha256.get(path).map(|l| (l.sha256.as_str(), l.size))
    }

    /// Every path listed under `SHA256:`, sorted.
    pub fn sha256_paths(&self) -> impl Iterator<Item = &str> {
        self.sha256.keys().map(String::as_str)
    }
}

/// The signed text of a cleartext-signed message (RFC 4880 §7), with
/// dash-escaping (`- ` at the start of a line, §7.1) undone. The line
/// ending before `-----BEGIN PGP SIGNATURE-----` is not part of the signed
/// text and is not returned.
///
/// Borrows from `text` when no line was dash-escaped.
///
/// Errors ([`ReleaseError::ClearSigned`]): anything but blank lines before
/// `-----BEGIN PGP SIGNED MESSAGE-----` or after
/// `-----END PGP SIGNATURE-----`; an armor header that is not `Key: value`;
/// a text line starting with `-` that is not dash-escaped (which is how a
/// second message hidden inside the first would look); a missing
/// signature or end line.
pub fn clearsigned_text(text: &str) -> Result<Cow<'_, str>> {
    signed_text(text).map(|(signed, _)| signed)
}

/// [`clearsigned_text`] and the number of lines of `text` before it.
fn signed_text(text: &str) -> Result<(Cow<'_, str>, usize)> {
    #[derive(PartialEq)]
    enum State {
        Before,
        Headers,
        Text,
        Signature,
        After,
    }
    let mut state = State::Before;
    // Byte range of the signed text, and its first line number.
    let mut start = 0;
    let mut end = 0;
    let mut text_line = 0;
    let mut escaped = false;
    let mut offset = 0;
    for (i, raw) in text.split_inclusive('\n').enumerate() {
        let number = i + 1;
        let line = raw.trim_end_matches(['\n', '\r']);
        let fail = |reason| Err(ReleaseError::ClearSigned { line: number, reason });
        let line_start = offset;
        offset += raw.len();
        match state {
            State::Before => {
                if line.trim_end() == "-----BEGIN PGP SIGNED MESSAGE-----" {
                    state = State::Headers;
                } else if !line.trim().is_empty() {
                    return fail("expected `-----BEGIN PGP SIGNED MESSAGE-----`");
                }
            }
            State::Headers => {
                if line.trim().is_empty() {
                    state = State::Text;
                    start = offset;
                    end = offset;
                    text_line = number;
                } else if !line.contains(": ") {
                    return fail("expected an armor header `Key: value` or a blank line");
                }
            }
            State::Text => {
                if line.trim_end() == "-----BEGIN PGP SIGNATURE-----" {
                    // `end` already stops before the preceding line ending,
                    // which RFC 4880 §7.1 excludes from the signed text.
                    state = State::Signature;
                } else {
                    if line.starts_with('-') {
                        if !line.starts_with("- ") {
                            return fail("a line starting with `-` is not dash-escaped");
                        }
                        escaped = true;
                    }
                    end = line_start + line.len();
                }
            }
            State::Signature => {
                if line.trim_end() == "-----END PGP SIGNATURE-----" {
                    state = State::After;
                }
            }
            State::After => {
                if !line.trim().is_empty() {
                    return fail("text after the signature");
                }
            }
        }
    }
    if state != State::After {
        let reason = match state {
            State::Before => "no `-----BEGIN PGP SIGNED MESSAGE-----`",
            State::Headers | State::Text => "no `-----BEGIN PGP SIGNATURE-----`",
            _ => "no `-----END PGP SIGNATURE-----`",
        };
        return Err(ReleaseError::ClearSigned { line: text.lines().count(), reason });
    }
    let signed = text.get(start..end).unwrap_or_default();
    if !escaped {
        return Ok((Cow::Borrowed(signed), text_line));
    }
    let mut owned = String::with_capacity(signed.len());
    for line in signed.split_inclusive('\n') {
        owned.push_str(line.strip_prefix("- ").unwrap_or(line));
    }
    Ok((Cow::Owned(owned), text_line))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH_A: &str = "0a0b0c0d0e0f000102030405060708090a0b0c0d0e0f00010203040506070809";
    const HASH_B: &str = "1111111111111111111111111111111111111111111111111111111111111111";

    fn release_text() -> String {
        format!(
            "Origin: Debian\nSuite: oldstable\nCodename: bookworm\nDate: Sat, 09 Nov 2024 10:46:33 UTC\n\
             Architectures: all amd64 arm64\nComponents: main contrib\n\
             MD5Sum:\n 0ed6d4c8891eb86358b94bb35d9e4da4  1484322 main/binary-amd64/Packages.xz\n\
             SHA256:\n {HASH_A}  8786012 main/binary-amd64/Packages.xz\n {HASH_B} 45107392 main/binary-amd64/Packages\n"
        )
    }

    #[test]
    fn plain_release() {
        let r = Release::parse(&release_text()).unwrap();
        assert_eq!(r.suite(), Some("oldstable"));
        assert_eq!(r.codename(), Some("bookworm"));
        assert_eq!(r.date(), Some("Sat, 09 Nov 2024 10:46:33 UTC"));
        assert_eq!(r.architectures(), ["all", "amd64", "arm64"]);
        assert_eq!(r.components(), ["main", "contrib"]);
        assert_eq!(r.sha256_of("main/binary-amd64/Packages.xz"), Some((HASH_A, 8786012)));
        assert_eq!(r.sha256_of("main/binary-amd64/Packages"), Some((HASH_B, 45107392)));
        assert_eq!(r.sha256_of("main/binary-i386/Packages.xz"), None);
    }

    #[test]
    fn inrelease_with_dash_escapes() {
        // RFC 4880 §7.1 lets a signer dash-escape any line, not only those
        // that start with `-`.
        let body = release_text().replace("Origin: Debian\n", "Origin: Debian\nX-Note: a\n");
        let escaped = body.replace("\nX-Note", "\n- X-Note");
        let text = format!(
            "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n{escaped}-----BEGIN PGP SIGNATURE-----\n\niQIz\n=abcd\n-----END PGP SIGNATURE-----\n"
        );
        // The line ending before the signature is not signed text.
        assert_eq!(clearsigned_text(&text).unwrap(), body.trim_end_matches('\n'));
        let r = Release::parse_inrelease(&text).unwrap();
        assert_eq!(r, Release::parse(&body).unwrap());
        assert_eq!(r.sha256_of("main/binary-amd64/Packages.xz"), Some((HASH_A, 8786012)));

        let plain = text.replace("\n- X-Note", "\nX-Note");
        assert!(matches!(clearsigned_text(&plain).unwrap(), Cow::Borrowed(_)));
    }

    #[test]
    fn clearsigned_errors() {
        let good = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nA: b\nSHA256:\n-----BEGIN PGP SIGNATURE-----\nx\n-----END PGP SIGNATURE-----\n";
        assert_eq!(clearsigned_text(good).unwrap(), "A: b\nSHA256:");
        let cases = [
            (format!("junk\n{good}"), 1),
            (good.replace("Hash: SHA256", "Hash SHA256"), 2),
            (good.replace("A: b", "-A: b"), 4),
            (good.replace("A: b", "-----BEGIN PGP SIGNED MESSAGE-----"), 4),
            (format!("{good}trailing\n"), 9),
            (good.replace("-----END PGP SIGNATURE-----\n", ""), 7),
            (good.replace("-----BEGIN PGP SIGNATURE-----\nx\n-----END PGP SIGNATURE-----\n", ""), 5),
        ];
        for (text, line) in cases {
            match clearsigned_text(&text) {
                Err(ReleaseError::ClearSigned { line: l, .. }) => assert_eq!(l, line, "{text}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn release_errors() {
        assert_eq!(Release::parse("Suite: x\n"), Err(ReleaseError::MissingSha256));
        assert_eq!(Release::parse("Suite: x\n\nSuite: y\n"), Err(ReleaseError::Paragraphs { count: 2 }));
        let bad_hash = format!("Suite: x\nSHA256:\n {HASH_A} 1 a\n 12 1 b\n");
        assert_eq!(
            Release::parse(&bad_hash),
            Err(ReleaseError::Sha256Entry { line: 4, text: "12 1 b".into(), reason: "the hash is not 64 hexadecimal digits" })
        );
        let bad_size = format!("Suite: x\nSHA256:\n {HASH_A} big a\n");
        assert!(matches!(Release::parse(&bad_size), Err(ReleaseError::Sha256Entry { line: 3, .. })));
        let short = format!("Suite: x\nSHA256: {HASH_A} 1\n");
        assert!(matches!(Release::parse(&short), Err(ReleaseError::Sha256Entry { line: 2, .. })));
        let twice = format!("Suite: x\nSHA256:\n {HASH_A} 1 a\n {HASH_B} 2 a\n");
        assert!(matches!(Release::parse(&twice), Err(ReleaseError::Sha256Entry { line: 4, .. })));
        // Lines are counted in the InRelease file, headers included.
        let signed = format!(
            "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n{bad_hash}-----BEGIN PGP SIGNATURE-----\n-----END PGP SIGNATURE-----\n"
        );
        assert!(matches!(Release::parse_inrelease(&signed), Err(ReleaseError::Sha256Entry { line: 7, .. })));
    }
}
