//! Requirements files in pip's hash-checking mode ("Secure installs" in
//! pip's user guide; the format of `pip-compile --generate-hashes` and
//! `uv pip compile --generate-hashes`): every requirement pinned with `==`
//! and carrying at least one `--hash=sha256:HEX`.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use pep508_rs::{Requirement, VersionOrUrl};

use crate::error::LockFileError;
use crate::lock::{check_sha256, LockFormat, LockedPackage, PythonLock};

/// Options that only say where to download from or how to resolve: drv
/// downloads through its own mirror configuration and resolves nothing.
const IGNORED_OPTIONS: &[&str] = &[
    "-i",
    "--index-url",
    "--extra-index-url",
    "--no-index",
    "-f",
    "--find-links",
    "--trusted-host",
    "--require-hashes",
    "--prefer-binary",
    "--only-binary",
    "--no-binary",
    "--pre",
];

pub(crate) fn parse(file: &str, text: &str) -> Result<PythonLock, LockFileError> {
    let err = |line: usize, message: String| LockFileError::Line { file: file.to_owned(), line, message };
    let mut packages: BTreeMap<String, LockedPackage> = BTreeMap::new();
    for (line_no, logical) in logical_lines(text) {
        let line = strip_comment(&logical);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('-') {
            let option = line.split([' ', '=', '\t']).next().unwrap_or(line);
            if IGNORED_OPTIONS.contains(&option) {
                continue;
            }
            return Err(err(
                line_no,
                match option {
                    "-r" | "--requirement" | "-c" | "--constraint" => {
                        format!("{option}: drv reads one requirements file; name each file in the recipe instead")
                    }
                    "-e" | "--editable" => "an editable requirement has no hash to pin: build it with a recipe of its own".into(),
                    _ => format!("unknown option {option}"),
                },
            ));
        }
        // The requirement, then `--hash=ALGO:HEX` (or `--hash ALGO:HEX`).
        let mut words = line.split_whitespace().peekable();
        let mut spec = Vec::new();
        let mut hashes = BTreeSet::new();
        let mut other_algorithms = Vec::new();
        while let Some(w) = words.next() {
            let value = if let Some(v) = w.strip_prefix("--hash=") {
                v.to_owned()
            } else if w == "--hash" {
                words.next().ok_or_else(|| err(line_no, "--hash without a value".into()))?.to_owned()
            } else if w.starts_with("--") {
                return Err(err(line_no, format!("unknown option {w} in a requirement")));
            } else {
                spec.push(w);
                continue;
            };
            match value.split_once(':') {
                Some(("sha256", hex)) => {
                    hashes.insert(check_sha256(hex).map_err(|m| err(line_no, format!("--hash: {m}")))?);
                }
                Some((algo, _)) => other_algorithms.push(algo.to_owned()),
                None => return Err(err(line_no, format!("--hash={value}: expected ALGORITHM:HEX"))),
            }
        }
        let spec = spec.join(" ");
        let req = Requirement::<pep508_rs::VerbatimUrl>::from_str(&spec).map_err(|e| err(line_no, format!("{spec:?}: {e}")))?;
        let name = req.name.to_string();
        let version = match &req.version_or_url {
            Some(VersionOrUrl::VersionSpecifier(specs)) => {
                let pinned: Vec<_> = specs
                    .iter()
                    .filter(|s| matches!(s.operator(), pep440_rs::Operator::Equal | pep440_rs::Operator::ExactEqual))
                    .collect();
                match (pinned.as_slice(), specs.len()) {
                    ([one], 1) => one.version().to_string(),
                    _ => return Err(err(line_no, format!("{name} is not pinned: write {name}==VERSION (hash-checking mode pins every package)"))),
                }
            }
            Some(VersionOrUrl::Url(_)) => return Err(err(line_no, format!("{name}: a URL requirement; pin a version from the index with ==VERSION and --hash"))),
            None => return Err(err(line_no, format!("{name} is not pinned: write {name}==VERSION (hash-checking mode pins every package)"))),
        };
        if hashes.is_empty() {
            let also = if other_algorithms.is_empty() {
                String::new()
            } else {
                format!(" (drv checks sha256; this line has only {})", other_algorithms.join(", "))
            };
            return Err(err(line_no, format!("{name}=={version} has no --hash=sha256:…{also}: hash-checking mode needs one on every line")));
        }
        let marker = (!req.marker.is_true()).then_some(req.marker.clone());
        if let Some(previous) = packages.get(&name) {
            // Two lines for one package are fine only under markers that
            // split it (pip-compile for several platforms does that).
            if previous.marker.is_none() || marker.is_none() {
                return Err(err(line_no, format!("{name} is required twice (line {} too)", previous.line)));
            }
        }
        packages.insert(
            name.clone(),
            LockedPackage { name: name.clone(), version, line: line_no, marker, files: Vec::new(), hashes, extras: req.extras.iter().map(|e| e.to_string()).collect(), dependencies: None },
        );
    }
    let roots = packages.keys().map(|k| (k.clone(), None)).collect();
    Ok(PythonLock { format: LockFormat::Requirements, file: file.to_owned(), packages, roots })
}

/// Lines joined where one ends in a backslash, each with the number of
/// its first physical line.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let (start, mut acc) = current.take().unwrap_or((i + 1, String::new()));
        // A comment line inside a continuation ends nothing (pip drops it).
        if !acc.is_empty() && raw.trim_start().starts_with('#') {
            current = Some((start, acc));
            continue;
        }
        match raw.strip_suffix('\\') {
            Some(head) => {
                acc.push_str(head);
                acc.push(' ');
                current = Some((start, acc));
            }
            None => {
                acc.push_str(raw);
                out.push((start, acc));
            }
        }
    }
    if let Some(rest) = current {
        out.push(rest);
    }
    out
}

/// The line without a comment: `#` at its start or after whitespace.
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()) {
            return &line[..i];
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use crate::lock::{LockFormat, PythonLock};

    fn parse(text: &str) -> Result<PythonLock, String> {
        PythonLock::parse(LockFormat::Requirements, "requirements.txt", text).map_err(|e| e.to_string())
    }

    const H1: &str = "b4ce2265a7abece45e7cc896e98dbebe6cead56bcf805a3d23136d145f5445bf";
    const H2: &str = "ba0efaa9080b619ff2f3459d1d500c57bddea4a6b424b60a91141db6fd2f08bc";

    #[test]
    fn pinned_and_hashed_lines_with_continuations_comments_and_markers() {
        let text = format!(
            "# generated\n--index-url https://index.invalid/simple\nBlinker==1.9.0 \\\n    --hash=sha256:{H1} \\\n    # a comment inside\n    --hash=sha256:{H2}\n    # via flask\ncolorama==0.4.6 ; sys_platform == 'win32' --hash=sha256:{H1}\nzope.interface[test]==7.0 --hash sha256:{H2}  # trailing\n"
        );
        let lock = parse(&text).unwrap();
        let names: Vec<&str> = lock.packages.keys().map(String::as_str).collect();
        assert_eq!(names, ["blinker", "colorama", "zope-interface"]);
        let b = &lock.packages["blinker"];
        assert_eq!((b.version.as_str(), b.line, b.hashes.len()), ("1.9.0", 3, 2));
        assert!(lock.packages["colorama"].marker.is_some());
        assert_eq!(lock.packages["zope-interface"].line, 9);
    }

    #[test]
    fn unpinned_unhashed_and_unsupported_lines_name_their_line() {
        let cases: Vec<(String, usize, &str)> = vec![
            ("flask>=3\n".to_string(), 1, "flask is not pinned"),
            ("\nflask\n".to_string(), 2, "flask is not pinned"),
            ("flask==3.1.3,<4 --hash=sha256:".to_owned() + H1 + "\n", 1, "not pinned"),
            ("# x\nflask==3.1.3\n".into(), 2, "has no --hash=sha256"),
            ("flask==3.1.3 --hash=sha512:abcd\n".into(), 1, "only sha512"),
            ("flask==3.1.3 --hash=sha256:abcd\n".into(), 1, "is not a sha256"),
            ("-r other.txt\n".into(), 1, "one requirements file"),
            ("-e ./src\n".into(), 1, "editable"),
            ("flask @ https://x.invalid/f.whl --hash=sha256:".to_owned() + H1 + "\n", 1, "URL requirement"),
            ("fl ask==1 --hash=sha256:".to_owned() + H1 + "\n", 1, "requirements.txt:1:"),
            (format!("a==1 --hash=sha256:{H1}\nA==2 --hash=sha256:{H2}\n"), 2, "required twice (line 1 too)"),
        ];
        for (text, line, needle) in cases
        {
            let e = parse(&text).unwrap_err();
            assert!(e.starts_with(&format!("requirements.txt:{line}: ")) && e.contains(needle), "{text:?}: {e}");
        }
    }
}
