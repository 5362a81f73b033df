//! Python package indexes' "simple" API, pure: project name normalisation
//! (PEP 503) and the project page in its JSON (PEP 691) and HTML (PEP 503)
//! forms. Fetching the page is [`super::Fetcher`]'s job.

use serde::Deserialize;

/// The `Accept` header asking for PEP 691 JSON, with HTML as the fallback
/// every index serves.
pub const ACCEPT: &str = "application/vnd.pypi.simple.v1+json, text/html;q=0.1";
/// The largest project page drv reads. The biggest pages of the Python
/// index (projects with tens of thousands of files, as JSON) are a few tens
/// of MiB; beyond this a page is refused rather than held in memory.
pub const PAGE_LIMIT: u64 = 64 * 1024 * 1024;
/// The media type of PEP 691 JSON pages.
pub const JSON_MEDIA_TYPE: &str = "application/vnd.pypi.simple.v1+json";

/// One file a project page lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexFile {
    pub filename: String,
    /// As written on the page: possibly relative to the page's URL.
    pub url: String,
    /// The sha256 the index lists, lower-case hex, when it lists one.
    pub sha256: Option<String>,
}

/// PEP 503 normalisation: lower case, every run of `-`, `_` and `.`
/// replaced by one `-`.
pub use drv_python::normalize as normalize_project_name;

/// A distribution's file name with every run of `-`, `_` and `.` one `_`,
/// in lower case (PEP 427's escaping, applied to the whole name), so that
/// `PyYAML-6.0.2-cp311-….whl` and `pyyaml-6.0.2-cp311-….whl`, or
/// `zope.interface-6.0.tar.gz` and `zope_interface-6.0.tar.gz`, compare
/// equal; what it makes is only compared, never used as a name.
pub fn normalize_file_name(name: &str) -> String {
    drv_python::name::collapse_separators(name, '_')
}

#[derive(Deserialize)]
struct JsonPage {
    files: Vec<JsonFile>,
}

#[derive(Deserialize)]
struct JsonFile {
    filename: String,
    url: String,
    #[serde(default)]
    hashes: std::collections::BTreeMap<String, String>,
}

/// The files of a PEP 691 JSON project page.
pub fn parse_json_page(body: &str) -> Result<Vec<IndexFile>, serde_json::Error> {
    let page: JsonPage = serde_json::from_str(body)?;
    Ok(page
        .files
        .into_iter()
        .map(|f| IndexFile {
            sha256: f.hashes.get("sha256").map(|h| h.to_ascii_lowercase()),
            filename: f.filename,
            url: f.url,
        })
        .collect())
}

/// The files of a PEP 503 HTML project page: every `<a href="...">name</a>`,
/// with the hash taken from a `#sha256=<hex>` fragment (which is removed
/// from the URL). Entities in attribute values and names are decoded.
pub fn parse_html_page(body: &str) -> Vec<IndexFile> {
    let mut files = Vec::new();
    let lower = body.to_ascii_lowercase();
    let mut pos = 0;
    while let Some(start) = find_anchor(&lower, pos) {
        let Some(tag_end) = lower[start..].find('>').map(|i| start + i) else { break };
        let Some(text_end) = lower[tag_end..].find("</a").map(|i| tag_end + i) else { break };
        pos = text_end;
        let Some(href) = attribute(&body[start..tag_end], "href") else { continue };
        let href = decode_entities(&href);
        let (url, fragment) = match href.split_once('#') {
            Some((u, f)) => (u.to_owned(), Some(f.to_owned())),
            None => (href.clone(), None),
        };
        let sha256 = fragment
            .as_deref()
            .and_then(|f| f.strip_prefix("sha256="))
            .map(|h| h.to_ascii_lowercase());
        let text = decode_entities(body[tag_end + 1..text_end].trim());
        let filename = if text.is_empty() {
            url.rsplit('/').next().unwrap_or_default().to_owned()
        } else {
            text
        };
        files.push(IndexFile { filename, url, sha256 });
    }
    files
}

/// Byte offset of the next `<a` tag (not `<abbr` and the like) from `pos`.
fn find_anchor(lower: &str, mut pos: usize) -> Option<usize> {
    while let Some(i) = lower[pos..].find("<a") {
        let at = pos + i;
        if lower[at + 2..].starts_with(|c: char| c.is_ascii_whitespace()) {
            return Some(at);
        }
        pos = at + 2;
    }
    None
}

/// The value of attribute `name` in an opening tag (quoted with `"` or
/// `'`, or unquoted).
fn attribute(tag: &str, name: &str) -> Option<String> {
    let lower = tag.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find(name) {
        let at = from + i;
        from = at + name.len();
        let preceded_by_space = lower[..at].ends_with(|c: char| c.is_ascii_whitespace());
        let rest = lower[from..].trim_start();
        if !preceded_by_space || !rest.starts_with('=') {
            continue;
        }
        let value_start = tag.len() - rest.len() + 1;
        let value = tag[value_start..].trim_start();
        return Some(match value.chars().next() {
            Some(q @ ('"' | '\'')) => value[1..].split(q).next().unwrap_or_default().to_owned(),
            _ => value.split(|c: char| c.is_ascii_whitespace() || c == '>').next().unwrap_or_default().to_owned(),
        });
    }
    None
}

/// Decode the HTML character references an index page uses.
fn decode_entities(text: &str) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find(';').filter(|&e| e <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn file_names_compare_as_pep_427_normalizes_them() {
        let n = normalize_file_name;
        assert_eq!(n("PyYAML-6.0.2-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"), n("pyyaml-6.0.2-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"));
        assert_eq!(n("zope.interface-6.0.tar.gz"), n("zope_interface-6.0.tar.gz"));
        assert_ne!(n("six-1.16.0-py2.py3-none-any.whl"), n("six-1.17.0-py2.py3-none-any.whl"));
    }

    use super::*;

    #[test]
    fn pep503_normalisation() {
        for (name, want) in [
            ("friendly-bard", "friendly-bard"),
            ("Friendly-Bard", "friendly-bard"),
            ("FRIENDLY-BARD", "friendly-bard"),
            ("friendly.bard", "friendly-bard"),
            ("friendly_bard", "friendly-bard"),
            ("friendly--bard", "friendly-bard"),
            ("FrIeNdLy-._.-bArD", "friendly-bard"),
        ] {
            assert_eq!(normalize_project_name(name), want, "{name}");
        }
    }

    #[test]
    fn pep691_json_page() {
        let body = r#"{
          "meta": {"api-version": "1.1"},
          "name": "demo",
          "files": [
            {"filename": "demo-1.0.tar.gz", "url": "../../files/demo-1.0.tar.gz",
             "hashes": {"sha256": "ABCDEF01", "md5": "00"}, "requires-python": ">=3.8"},
            {"filename": "demo-1.0-py3-none-any.whl", "url": "https://files.example/demo.whl", "hashes": {}}
          ]
        }"#;
        let files = parse_json_page(body).unwrap();
        assert_eq!(files, vec![
            IndexFile { filename: "demo-1.0.tar.gz".into(), url: "../../files/demo-1.0.tar.gz".into(), sha256: Some("abcdef01".into()) },
            IndexFile { filename: "demo-1.0-py3-none-any.whl".into(), url: "https://files.example/demo.whl".into(), sha256: None },
        ]);
        assert!(parse_json_page("<html>").is_err());
    }

    #[test]
    fn pep503_html_page() {
        let body = r#"<!DOCTYPE html>
<html><head><meta name="pypi:repository-version" content="1.1"><title>Links for demo</title></head>
<body><h1>Links for demo</h1>
<abbr title="not a link">x</abbr>
<a href="../../files/demo-1.0.tar.gz#sha256=0123ABCD" data-requires-python="&gt;=3.8">demo-1.0.tar.gz</a><br/>
<A HREF='https://files.example/a/demo-1.1.zip?x=1&amp;y=2'>demo-1.1.zip</A>
<a data-x="1" href=plain/demo-1.2.tar.gz>demo-1.2.tar.gz</a>
</body></html>"#;
        let files = parse_html_page(body);
        assert_eq!(files, vec![
            IndexFile { filename: "demo-1.0.tar.gz".into(), url: "../../files/demo-1.0.tar.gz".into(), sha256: Some("0123abcd".into()) },
            IndexFile { filename: "demo-1.1.zip".into(), url: "https://files.example/a/demo-1.1.zip?x=1&y=2".into(), sha256: None },
            IndexFile { filename: "demo-1.2.tar.gz".into(), url: "plain/demo-1.2.tar.gz".into(), sha256: None },
        ]);
    }

    #[test]
    fn entities() {
        assert_eq!(decode_entities("a&amp;b&#62;&#x3C;&bogus;&"), "a&b><&bogus;&");
    }
}
