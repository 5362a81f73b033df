//! Relation fields: `Depends`, `Pre-Depends`, `Provides` and their kin
//! (Debian Policy §7.1).
//!
//! A field is a comma-separated list of [`Alternatives`]; alternatives are
//! separated by `|`; each [`Relation`] is
//!
//! ```text
//! name[:qualifier] [(op version)] [[arch …]] [<profile …>]…
//! ```
//!
//! for example `a (>= 1.0) | b:any, c [amd64] <!nocheck>`. Architecture
//! restrictions and build profiles appear only in source packages'
//! build relations; they are parsed and kept so that [`Relation`]'s
//! `Display` gives back what was read, but the resolver (binary packages
//! only) never looks at them.
//!
//! Versions are [`debversion::Version`], so comparisons follow dpkg's
//! ordering (Policy §5.6.12) without a second implementation here.

use std::fmt;
use std::str::FromStr;

use debversion::Version;

/// A relation that does not follow Policy §7.1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid relation {relation:?}: {message}")]
pub struct RelationError {
    /// The relation (or the whole field for an empty element).
    pub relation: String,
    pub message: String,
}

pub type Result<T, E = RelationError> = std::result::Result<T, E>;

/// A version operator (Policy §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VersionOp {
    /// `<<`: strictly earlier.
    Earlier,
    /// `<=` (and the obsolete `<`, which meant the same).
    EarlierOrEqual,
    /// `=`.
    Equal,
    /// `>=` (and the obsolete `>`, which meant the same).
    LaterOrEqual,
    /// `>>`: strictly later.
    Later,
}

impl VersionOp {
    /// The operator's canonical spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            VersionOp::Earlier => "<<",
            VersionOp::EarlierOrEqual => "<=",
            VersionOp::Equal => "=",
            VersionOp::LaterOrEqual => ">=",
            VersionOp::Later => ">>",
        }
    }

    /// Split a leading operator off `s`. The two-character operators are
    /// tried first so that `<<` is not read as the obsolete `<`.
    fn split(s: &str) -> Option<(VersionOp, &str)> {
        const OPS: [(&str, VersionOp); 7] = [
            ("<<", VersionOp::Earlier),
            ("<=", VersionOp::EarlierOrEqual),
            (">=", VersionOp::LaterOrEqual),
            (">>", VersionOp::Later),
            ("=", VersionOp::Equal),
            ("<", VersionOp::EarlierOrEqual),
            (">", VersionOp::LaterOrEqual),
        ];
        OPS.iter().find_map(|(text, op)| s.strip_prefix(text).map(|rest| (*op, rest)))
    }
}

impl fmt::Display for VersionOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `(op version)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionConstraint {
    pub op: VersionOp,
    pub version: Version,
}

impl VersionConstraint {
    /// Whether `candidate` satisfies `op version`.
    pub fn satisfied_by(&self, candidate: &Version) -> bool {
        let ord = candidate.cmp(&self.version);
        match self.op {
            VersionOp::Earlier => ord.is_lt(),
            VersionOp::EarlierOrEqual => ord.is_le(),
            VersionOp::Equal => ord.is_eq(),
            VersionOp::LaterOrEqual => ord.is_ge(),
            VersionOp::Later => ord.is_gt(),
        }
    }
}

impl fmt::Display for VersionConstraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op, self.version)
    }
}

/// The architecture qualifier after a name: `name:any`, `name:native`,
/// `name:amd64` (Debian wiki "Multiarch/Implementation").
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ArchQualifier {
    Any,
    Native,
    Arch(String),
}

impl fmt::Display for ArchQualifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArchQualifier::Any => f.write_str("any"),
            ArchQualifier::Native => f.write_str("native"),
            ArchQualifier::Arch(a) => f.write_str(a),
        }
    }
}

/// One term of `[…]` or `<…>`: a name, possibly negated with `!`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Term {
    pub negated: bool,
    pub name: String,
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.negated {
            f.write_str("!")?;
        }
        f.write_str(&self.name)
    }
}

/// One relation: a package name with optional qualifier, version
/// constraint, architecture restriction and build profiles.
///
/// `Display` writes the canonical form (single spaces, `<=`/`>=` for the
/// obsolete `<`/`>`); parsing that text gives back an equal `Relation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub name: String,
    pub arch_qualifier: Option<ArchQualifier>,
    pub version: Option<VersionConstraint>,
    /// `[amd64 i386]` or `[!hurd-any]`: all terms negated or none (Policy
    /// §7.1). Empty when absent.
    pub architectures: Vec<Term>,
    /// `<!nocheck> <stage1 cross>`: a disjunction of conjunctions. Empty
    /// when absent.
    pub profiles: Vec<Vec<Term>>,
}

impl Relation {
    /// A plain relation on `name`, without qualifier or version.
    pub fn new(name: impl Into<String>) -> Relation {
        Relation {
            name: name.into(),
            arch_qualifier: None,
            version: None,
            architectures: Vec::new(),
            profiles: Vec::new(),
        }
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(q) = &self.arch_qualifier {
            write!(f, ":{q}")?;
        }
        if let Some(v) = &self.version {
            write!(f, " ({v})")?;
        }
        if !self.architectures.is_empty() {
            f.write_str(" [")?;
            write_terms(f, &self.architectures)?;
            f.write_str("]")?;
        }
        for group in &self.profiles {
            f.write_str(" <")?;
            write_terms(f, group)?;
            f.write_str(">")?;
        }
        Ok(())
    }
}

fn write_terms(f: &mut fmt::Formatter<'_>, terms: &[Term]) -> fmt::Result {
    for (i, t) in terms.iter().enumerate() {
        if i > 0 {
            f.write_str(" ")?;
        }
        write!(f, "{t}")?;
    }
    Ok(())
}

/// Policy §5.6.1: lower-case letters, digits, `+`, `-`, `.`; at least two
/// characters; starting with a letter or digit.
pub fn valid_package_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b.first().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'+' | b'-' | b'.'))
}

/// Architecture names and wildcards (`amd64`, `linux-any`) and build
/// profile names: lower-case letters, digits, `-`, `.`, `+` and `_`, wider
/// than the names dpkg knows today so that new ones still parse.
pub(crate) fn valid_word(word: &str) -> bool {
    !word.is_empty()
        && word.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'+' | b'-' | b'.' | b'_'))
}

impl FromStr for Relation {
    type Err = RelationError;

    fn from_str(text: &str) -> Result<Relation> {
        let fail = |message: &str| RelationError { relation: text.trim().to_owned(), message: message.to_owned() };
        let mut rest = text.trim_start();
        let end = rest.find(|c: char| c.is_whitespace() || "([<".contains(c)).unwrap_or(rest.len());
        let (head, tail) = rest.split_at(end);
        rest = tail.trim_start();
        let (name, qualifier) = match head.split_once(':') {
            Some((n, q)) => (n, Some(q)),
            None => (head, None),
        };
        if !valid_package_name(name) {
            return Err(fail("invalid package name"));
        }
        let arch_qualifier = match qualifier {
            None => None,
            Some("any") => Some(ArchQualifier::Any),
            Some("native") => Some(ArchQualifier::Native),
            Some(a) if valid_word(a) => Some(ArchQualifier::Arch(a.to_owned())),
            Some(_) => return Err(fail("invalid architecture qualifier")),
        };
        let mut relation = Relation { arch_qualifier, ..Relation::new(name) };
        if let Some(after) = rest.strip_prefix('(') {
            let (inside, after) = after.split_once(')').ok_or_else(|| fail("unclosed `(`"))?;
            let (op, version) = VersionOp::split(inside.trim_start()).ok_or_else(|| fail("missing version operator"))?;
            let version = version.trim();
            if version.is_empty() {
                return Err(fail("missing version"));
            }
            let version = version.parse::<Version>().map_err(|e| fail(&e.to_string()))?;
            relation.version = Some(VersionConstraint { op, version });
            rest = after.trim_start();
        }
        if let Some(after) = rest.strip_prefix('[') {
            let (inside, after) = after.split_once(']').ok_or_else(|| fail("unclosed `[`"))?;
            relation.architectures = terms(inside).ok_or_else(|| fail("invalid architecture restriction"))?;
            let negated = relation.architectures.iter().filter(|t| t.negated).count();
            if negated != 0 && negated != relation.architectures.len() {
                return Err(fail("architecture restriction mixes negated and plain names"));
            }
            rest = after.trim_start();
        }
        while let Some(after) = rest.strip_prefix('<') {
            let (inside, after) = after.split_once('>').ok_or_else(|| fail("unclosed `<`"))?;
            relation.profiles.push(terms(inside).ok_or_else(|| fail("invalid build profile"))?);
            rest = after.trim_start();
        }
        if !rest.is_empty() {
            return Err(fail("unexpected text after the relation"));
        }
        Ok(relation)
    }
}

/// Whitespace-separated, optionally `!`-negated words; `None` when empty
/// or a word is invalid.
fn terms(inside: &str) -> Option<Vec<Term>> {
    let terms: Option<Vec<Term>> = inside
        .split_whitespace()
        .map(|w| {
            let (negated, name) = match w.strip_prefix('!') {
                Some(n) => (true, n),
                None => (false, w),
            };
            valid_word(name).then(|| Term { negated, name: name.to_owned() })
        })
        .collect();
    terms.filter(|t| !t.is_empty())
}

/// One element of a relation field: relations separated by `|`, any one of
/// which satisfies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alternatives(pub Vec<Relation>);

impl fmt::Display for Alternatives {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl FromStr for Alternatives {
    type Err = RelationError;

    fn from_str(text: &str) -> Result<Alternatives> {
        text.split('|').map(str::parse).collect::<Result<_>>().map(Alternatives)
    }
}

/// Parse a whole relation field (folded over several lines or not). An
/// empty or blank field has no elements; an empty element (`a, , b`, or a
/// trailing comma) is an error, as for dpkg.
pub fn parse_relations(field: &str) -> Result<Vec<Alternatives>> {
    if field.trim().is_empty() {
        return Ok(Vec::new());
    }
    field
        .split(',')
        .map(|element| {
            if element.trim().is_empty() {
                return Err(RelationError { relation: field.trim().to_owned(), message: "empty element".to_owned() });
            }
            element.parse()
        })
        .collect()
}

/// The canonical text of a relation field: elements joined by `, `.
pub fn format_relations(field: &[Alternatives]) -> String {
    field.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn parses_every_part() {
        let field = parse_relations("aa (>= 1.0) | bb:any, cc [amd64] <!nocheck>,\n dd:native (<<2:3-1~) [!i386 !hurd-any] <stage1 cross> <!nodoc>").unwrap();
        assert_eq!(field.len(), 3);
        let a = &field[0].0[0];
        assert_eq!(a.name, "aa");
        assert_eq!(a.version, Some(VersionConstraint { op: VersionOp::LaterOrEqual, version: v("1.0") }));
        assert_eq!(field[0].0[1].arch_qualifier, Some(ArchQualifier::Any));
        let c = &field[1].0[0];
        assert_eq!(c.architectures, vec![Term { negated: false, name: "amd64".into() }]);
        assert_eq!(c.profiles, vec![vec![Term { negated: true, name: "nocheck".into() }]]);
        let d = &field[2].0[0];
        assert_eq!(d.arch_qualifier, Some(ArchQualifier::Native));
        assert_eq!(d.version.as_ref().map(|c| c.op), Some(VersionOp::Earlier));
        assert_eq!(d.profiles.len(), 2);
        assert_eq!(
            format_relations(&field),
            "aa (>= 1.0) | bb:any, cc [amd64] <!nocheck>, dd:native (<< 2:3-1~) [!i386 !hurd-any] <stage1 cross> <!nodoc>"
        );
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "libc6 (>= 2.34)",
            "xx:amd64 (= 1:2.0-1+b1)",
            "python3:any (>> 3.11~)",
            "gcc (<= 4) [linux-any] <!stage1>",
            "aa (<< 1) | bb (= 2) | cc:native",
            "zlib1g",
        ] {
            let alts: Alternatives = text.parse().unwrap();
            assert_eq!(alts.to_string(), text);
            assert_eq!(alts.to_string().parse::<Alternatives>().unwrap(), alts);
        }
    }

    #[test]
    fn obsolete_operators_and_spacing() {
        let r: Relation = "foo(<1.0)".parse().unwrap();
        assert_eq!(r.version.as_ref().map(|c| c.op), Some(VersionOp::EarlierOrEqual));
        assert_eq!(r.to_string(), "foo (<= 1.0)");
        let r: Relation = " foo ( >  1.0 ) ".parse().unwrap();
        assert_eq!(r.version.as_ref().map(|c| c.op), Some(VersionOp::LaterOrEqual));
        assert_eq!(r.to_string(), "foo (>= 1.0)");
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "", "a", "Foo", "foo (>= )", "foo (1.0)", "foo (>= 1.0", "foo [amd64", "foo []", "foo [amd64 !i386]",
            "foo <>", "foo bar", "foo:", "foo (>= 1.0) extra", "foo (= bad version!)",
        ] {
            assert!(bad.parse::<Relation>().is_err(), "{bad:?} should not parse");
        }
        assert!(parse_relations("a1, , b1").is_err());
        assert!(parse_relations("a1, b1,").is_err());
        assert!(parse_relations("a1 |, b1").is_err());
        assert_eq!(parse_relations(" \n ").unwrap(), vec![]);
        let e = "foo (>= 1.0".parse::<Relation>().unwrap_err();
        assert_eq!(e.relation, "foo (>= 1.0");
    }

    #[test]
    fn version_constraints() {
        let c = |op, ver: &str| VersionConstraint { op, version: v(ver) };
        assert!(c(VersionOp::Earlier, "1.0").satisfied_by(&v("1.0~rc1")));
        assert!(!c(VersionOp::Earlier, "1.0").satisfied_by(&v("1.0")));
        assert!(c(VersionOp::EarlierOrEqual, "1.0").satisfied_by(&v("1.0")));
        assert!(c(VersionOp::Equal, "1:1.0").satisfied_by(&v("1:1.0")));
        assert!(!c(VersionOp::Equal, "1:1.0").satisfied_by(&v("1.0")));
        assert!(c(VersionOp::LaterOrEqual, "2.34").satisfied_by(&v("2.36-9+deb12u4")));
        assert!(c(VersionOp::Later, "1.0").satisfied_by(&v("1.0-1")));
        assert!(!c(VersionOp::Later, "1.0").satisfied_by(&v("1.0")));
    }
}
