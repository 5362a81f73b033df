//! Project names.

/// A project name in its normal form (PEP 503, "Normalized Names"):
/// lower case, every run of `-`, `_` and `.` one `-`. `Flask`, `flask`
/// and `FLASK` name one project; so do `zope.interface` and
/// `zope_interface`.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut separator = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            separator = true;
            continue;
        }
        if separator && !out.is_empty() {
            out.push('-');
        }
        separator = false;
        out.push(c.to_ascii_lowercase());
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
