//! deb822 control data: the paragraphs of `Packages`, `Release` and
//! `control` files (Debian Policy §5.1).
//!
//! A paragraph is a run of fields; paragraphs are separated by one or more
//! blank lines, and a line holding only spaces and tabs counts as blank. A
//! field is `Name: value` on one line, continued by lines that begin with a
//! space or a tab. Field names compare case-insensitively.
//!
//! Everything borrows from the input: parsing a whole `Packages` index
//! copies no field.
//!
//! Comment lines (`#`), which Policy allows only in a source package's
//! `debian/control`, are not recognised: no archive index has them, and a
//! `#` line is reported like any other line without a colon.

/// A malformed line, with its 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}: {text:?}")]
pub struct ControlError {
    pub line: usize,
    pub message: &'static str,
    /// The offending line (or field name), cut to 80 characters.
    pub text: String,
}

pub type Result<T, E = ControlError> = std::result::Result<T, E>;

/// One field of a paragraph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    /// The name as written (compare with [`Field::is`]).
    pub name: &'a str,
    /// Everything after the colon through the last continuation line, with
    /// leading and trailing white space removed. A multi-line value keeps
    /// its inner newlines and each continuation line's indentation; see
    /// [`Field::lines`].
    pub value: &'a str,
    /// 1-based line number of the field's first line.
    pub line: usize,
    /// 1-based line number of the value's first line: the field's line, or
    /// a later one when the name line holds nothing after the colon
    /// (`SHA256:` followed by continuation lines).
    pub value_line: usize,
}

impl<'a> Field<'a> {
    /// Whether this field is called `name`, ignoring ASCII case.
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// The value's lines, each trimmed, with empty lines (for instance the
    /// empty first line of a `SHA256:` list) skipped.
    pub fn lines(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.value.lines().map(str::trim_ascii).filter(|l| !l.is_empty())
    }
}

/// One paragraph (stanza): its fields in input order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paragraph<'a> {
    /// 1-based line number of its first field.
    pub line: usize,
    pub fields: Vec<Field<'a>>,
}

impl<'a> Paragraph<'a> {
    /// The value of field `name` (ASCII case-insensitive).
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.field(name).map(|f| f.value)
    }

    /// The field `name` (ASCII case-insensitive).
    pub fn field(&self, name: &str) -> Option<&Field<'a>> {
        self.fields.iter().find(|f| f.is(name))
    }
}

/// The paragraphs of `text`, in order.
///
/// The iterator yields `Err` for the first malformed line (a line that is
/// neither blank, a continuation nor `Name:`; a continuation line that
/// starts a paragraph; a field name outside Policy's character set or
/// given twice in one paragraph) and then ends.
pub fn paragraphs(text: &str) -> Paragraphs<'_> {
    Paragraphs { text, pos: 0, line: 0, failed: false }
}

/// Parse all of `text`: [`paragraphs`], collected.
pub fn parse(text: &str) -> Result<Vec<Paragraph<'_>>> {
    paragraphs(text).collect()
}

/// Iterator returned by [`paragraphs`].
#[derive(Debug, Clone)]
pub struct Paragraphs<'a> {
    text: &'a str,
    /// Byte offset of the next unread line.
    pos: usize,
    /// Number of lines read so far.
    line: usize,
    failed: bool,
}

/// A field being read: its value may still grow by continuation lines.
struct Open<'a> {
    name: &'a str,
    line: usize,
    start: usize,
    end: usize,
}

impl<'a> Paragraphs<'a> {
    fn error<T>(&mut self, message: &'static str, text: &str) -> Option<Result<T>> {
        self.failed = true;
        Some(Err(ControlError { line: self.line, message, text: text.chars().take(80).collect() }))
    }

    fn close(&self, fields: &mut Vec<Field<'a>>, open: Option<Open<'a>>) {
        if let Some(o) = open {
            let raw = self.text.get(o.start..o.end).unwrap_or_default();
            let value = raw.trim_ascii();
            let leading = raw.len() - raw.trim_ascii_start().len();
            let skipped = raw.get(..leading).unwrap_or_default().bytes().filter(|&b| b == b'\n').count();
            fields.push(Field { name: o.name, value, line: o.line, value_line: o.line + skipped });
        }
    }
}

impl<'a> Paragraphs<'a> {
    /// The next paragraph's fields into `fields` (cleared first), returning
    /// the paragraph's first line; `None` at the end or after an error.
    /// This is [`Iterator::next`] without a new `Vec` per paragraph, for
    /// callers that read a whole index and keep none of the paragraphs.
    pub fn next_into(&mut self, fields: &mut Vec<Field<'a>>) -> Option<Result<usize>> {
        fields.clear();
        if self.failed {
            return None;
        }
        let text = self.text;
        let mut open: Option<Open<'a>> = None;
        let mut first_line = 0;
        while self.pos < text.len() {
            let rest = &text[self.pos..];
            let (line, next) = match find_byte(rest.as_bytes(), b'\n') {
                Some(i) => (&rest[..i], self.pos + i + 1),
                None => (rest, text.len()),
            };
            let start = self.pos;
            self.pos = next;
            self.line += 1;
            let first = line.as_bytes().first().copied();
            let blank = match first {
                None => true,
                Some(b' ' | b'\t' | b'\r') => line.trim_ascii().is_empty(),
                Some(_) => false,
            };
            if blank {
                if open.is_some() {
                    self.close(fields, open.take());
                    return Some(Ok(first_line));
                }
                continue;
            }
            if matches!(first, Some(b' ' | b'\t')) {
                match open.as_mut() {
                    Some(o) => o.end = start + line.len(),
                    None => return self.error("continuation line at the start of a paragraph", line),
                }
                continue;
            }
            let Some(colon) = find_byte(line.as_bytes(), b':') else {
                return self.error("line without a colon", line);
            };
            let name = &line[..colon];
            // Policy §5.1: printable US-ASCII other than space and colon,
            // not starting with `#` or `-`.
            let valid = name.bytes().all(|b| (b'!'..=b'~').contains(&b))
                && !name.starts_with(['#', '-'])
                && !name.is_empty();
            if !valid {
                return self.error("invalid field name", name);
            }
            self.close(fields, open.take());
            if fields.iter().any(|f| f.is(name)) {
                return self.error("field given twice in one paragraph", name);
            }
            if fields.is_empty() {
                first_line = self.line;
            }
            open = Some(Open { name, line: self.line, start: start + colon + 1, end: start + line.len() });
        }
        if open.is_some() {
            self.close(fields, open.take());
            return Some(Ok(first_line));
        }
        None
    }
}

/// The first `needle` in `haystack`, eight bytes at a time.
///
/// `str::find` costs a call and a setup per search; an index has over a
/// million lines of forty bytes on average, and this halves the parse.
fn find_byte(haystack: &[u8], needle: u8) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let pattern = ONES * u64::from(needle);
    let mut chunks = haystack.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let Ok(bytes) = <[u8; 8]>::try_from(chunk) else { break };
        let x = u64::from_le_bytes(bytes) ^ pattern;
        // The lowest high bit set marks the first zero byte of `x`, that
        // is the first `needle` (bits above it may be false positives).
        let zero = x.wrapping_sub(ONES) & !x & HIGH;
        if zero != 0 {
            return Some(offset + (zero.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    let rest = haystack.get(offset..).unwrap_or_default();
    rest.iter().position(|&b| b == needle).map(|i| offset + i)
}

impl<'a> Iterator for Paragraphs<'a> {
    type Item = Result<Paragraph<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut fields = Vec::new();
        Some(self.next_into(&mut fields)?.map(|line| Paragraph { line, fields }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_continuations_and_blank_lines() {
        let text = "Package: a\nversion:  1.0 \nDescription: short\n long\n .\n more\n\n \t\n\nPackage: b\r\nSHA256:\n 00 1 x\n\t11 2 y\n";
        let ps = parse(text).unwrap();
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].line, 1);
        assert_eq!(ps[0].get("VERSION"), Some("1.0"));
        assert_eq!(ps[0].get("description"), Some("short\n long\n .\n more"));
        let d = ps[0].field("Description").unwrap();
        assert_eq!(d.lines().collect::<Vec<_>>(), ["short", "long", ".", "more"]);
        assert_eq!(ps[1].line, 10);
        assert_eq!(ps[1].get("Package"), Some("b"));
        let sha = ps[1].field("sha256").unwrap();
        assert_eq!((sha.line, sha.value_line), (11, 12));
        assert_eq!(ps[0].field("version").map(|f| f.value_line), Some(2));
        assert_eq!(sha.lines().collect::<Vec<_>>(), ["00 1 x", "11 2 y"]);
        assert_eq!(ps[1].get("Missing"), None);
    }

    #[test]
    fn find_byte_agrees_with_position() {
        let text = b"Package: a\nDescription: x\n more text here, and more\n\n:\xff\x0a\x8a";
        for start in 0..text.len() {
            for len in 0..=text.len() - start {
                let hay = &text[start..start + len];
                for needle in [b'\n', b':', b'x', 0x8a, 0xff, b'z'] {
                    assert_eq!(find_byte(hay, needle), hay.iter().position(|&b| b == needle), "{hay:?} {needle}");
                }
            }
        }
    }

    #[test]
    fn empty_and_trailing_text() {
        assert!(parse("").unwrap().is_empty());
        assert!(parse("\n \n\t\n").unwrap().is_empty());
        let ps = parse("A: 1").unwrap();
        assert_eq!(ps[0].get("a"), Some("1"));
        let ps = parse("A:\n").unwrap();
        assert_eq!(ps[0].get("a"), Some(""));
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("A: 1\nno colon here\n").unwrap_err();
        assert_eq!((e.line, e.message), (2, "line without a colon"));
        assert_eq!(e.text, "no colon here");
        let e = parse("A: 1\n\n continued\n").unwrap_err();
        assert_eq!((e.line, e.message), (3, "continuation line at the start of a paragraph"));
        let e = parse(" continued\n").unwrap_err();
        assert_eq!(e.line, 1);
        let e = parse("A: 1\nBad Name: 2\n").unwrap_err();
        assert_eq!((e.line, e.message), (2, "invalid field name"));
        let e = parse("A: 1\na: 2\n").unwrap_err();
        assert_eq!((e.line, e.message), (2, "field given twice in one paragraph"));
        let e = parse("# comment\n").unwrap_err();
        assert_eq!(e.message, "line without a colon");
        // The iterator stops after an error.
        let mut it = paragraphs("A: 1\n\nbad\n\nB: 2\n");
        assert!(it.next().unwrap().is_ok());
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());
    }
}
