//! Project names.

/// A project name in its normal form (PEP 503, "Normalized Names"):
/// lower case, every run of `-`, `_` and `.` one `-`. `Flask`, `flask`
/// and `FLASK` name one project; so do `zope.interface` and
/// `zope_interface`.
pub fn normalize(name: &str) -> String {
    collapse_separators(name, '-')
}

/// `s` in lower case with every run of `-`, `_` and `.` replaced by one
/// `sep`: with `-`, PEP 503's normal form of a project name; with `_`, the
/// escaped name that wheel and sdist file names carry (PEP 427, PEP 625).
pub fn collapse_separators(s: &str, sep: char) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_run = false;
    for c in s.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_run {
                out.push(sep);
            }
            in_run = true;
        } else {
            out.extend(c.to_lowercase());
            in_run = false;
        }
    }
    out
}

/// Whether `name` is a valid project name (PEP 508 "Names"): ASCII
/// letters, digits, `-`, `_`, `.`, starting and ending with a letter or
/// digit.
pub fn is_valid(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalize_as_pep_503_says() {
        for (given, normal) in [
            ("Flask", "flask"),
            ("zope.interface", "zope-interface"),
            ("Zope__Interface", "zope-interface"),
            ("a-_.b", "a-b"),
            ("MarkupSafe", "markupsafe"),
        ] {
            assert_eq!(normalize(given), normal, "{given}");
        }
        assert!(is_valid("zope.interface") && is_valid("a") && !is_valid("-a") && !is_valid("a b") && !is_valid(""));
    }
}
