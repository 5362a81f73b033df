//! Store directories, store paths and Nix's rules for computing them.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use super::hash::{nixbase32, Sha256};
use super::FormatError;

/// The store directory drv uses unless told otherwise.
pub const DEFAULT_STORE_DIR: &str = "/store";

/// A logical store directory: the absolute path store paths are rendered
/// under and that every store-path hash depends on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StoreDir(nix_derivation::StoreDir);

impl StoreDir {
    pub fn new(dir: &str) -> Result<Self, FormatError> {
        nix_derivation::StoreDir::new(dir)
            .map(Self)
            .map_err(|e| FormatError::StorePath {
                path: dir.to_owned(),
                reason: e.to_string(),
            })
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// Parse an absolute path `<dir>/<hash>-<name>`; anything after the
    /// store path itself (`/bin/python`) is refused: see [`Self::split_path`].
    pub fn parse_path(&self, path: &str) -> Result<StorePath, FormatError> {
        self.0
            .parse_path(path.as_bytes())
            .map(StorePath)
            .map_err(|e| FormatError::StorePath {
                path: path.to_owned(),
                reason: e.to_string(),
            })
    }

    /// Split `/store/<hash>-<name>/sub/path` into the store path and the
    /// rest (`sub/path`, empty when there is none).
    pub fn split_path<'a>(&self, path: &'a str) -> Result<(StorePath, &'a str), FormatError> {
        let prefix = format!("{}/", self.as_str().trim_end_matches('/'));
        let rest = path.strip_prefix(&prefix).ok_or_else(|| FormatError::StorePath {
            path: path.to_owned(),
            reason: format!("not in the store directory {}", self.as_str()),
        })?;
        let (base, sub) = rest.split_once('/').unwrap_or((rest, ""));
        Ok((StorePath::from_basename(base)?, sub.trim_matches('/')))
    }

    /// `<dir>/<hash>-<name>`.
    pub fn display(&self, path: &StorePath) -> String {
        self.0.render_path(&path.0)
    }

    /// Path of a text file with references (`builtins.toFile`, `.drv` files).
    pub fn text_path(
        &self,
        name: &str,
        contents: &[u8],
        references: &BTreeSet<StorePath>,
    ) -> Result<StorePath, FormatError> {
        self.0
            .build_text_path(name, contents, references.iter().map(|p| &p.0))
            .map(StorePath)
            .map_err(|e| FormatError::name(name, e))
    }

    /// Path of a content-addressed object. Recursive sha256 with references
    /// gives a "source" path (`nix-store --add`); flat or recursive fixed
    /// outputs without references give Nix's `fixed:out:` paths.
    pub fn content_addressed_path(
        &self,
        name: &str,
        ca: &ContentAddress,
        references: &BTreeSet<StorePath>,
    ) -> Result<StorePath, FormatError> {
        self.0
            .build_ca_path(name, &ca.to_nix(), references.iter().map(|p| &p.0), false)
            .map(StorePath)
            .map_err(|e| FormatError::name(name, e))
    }

    /// Path of `nix-store --add PATH`: NAR hash, no references.
    pub fn source_path(&self, name: &str, nar_hash: Sha256) -> Result<StorePath, FormatError> {
        self.content_addressed_path(name, &ContentAddress::Recursive(nar_hash), &BTreeSet::new())
    }

    /// Path of a fixed-output derivation's output (`nix-store --add-fixed`).
    pub fn fixed_output_path(
        &self,
        name: &str,
        ca: &ContentAddress,
    ) -> Result<StorePath, FormatError> {
        self.content_addressed_path(name, ca, &BTreeSet::new())
    }

    pub(crate) fn to_nix(&self) -> nix_derivation::StoreDir {
        self.0.clone()
    }
}

impl Default for StoreDir {
    fn default() -> Self {
        Self::new(DEFAULT_STORE_DIR).expect("the default store dir is valid")
    }
}

impl fmt::Display for StoreDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StoreDir {
    type Err = FormatError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// A validated store path, independent of the store directory: a 20-byte
/// digest (32 nixbase32 characters) and a name of at most 211 characters
/// from `[A-Za-z0-9+-._?=]`, not starting with a dot.
///
/// `Display` and `FromStr` use the base name (`<hash>-<name>`); render the
/// absolute path with [`StoreDir::display`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorePath(pub(crate) nix_derivation::StorePath);

impl StorePath {
    /// Maximum length of the name part.
    pub const MAX_NAME_LEN: usize = nix_derivation::store_path::MAX_NAME_LEN;

    pub fn from_basename(basename: &str) -> Result<Self, FormatError> {
        nix_derivation::StorePath::from_basename(basename.as_bytes())
            .map(Self)
            .map_err(|e| FormatError::StorePath {
                path: basename.to_owned(),
                reason: match basename.split_once('-').and_then(|(_, name)| NameProblem::of(name)) {
                    Some(problem) => problem.to_string(),
                    None => e.to_string(),
                },
            })
    }

    /// The 32-character nixbase32 hash part, which is what references are
    /// found by.
    pub fn hash_part(&self) -> String {
        nixbase32::encode(self.0.digest())
    }

    pub fn digest(&self) -> &[u8; 20] {
        self.0.digest()
    }

    pub fn name(&self) -> &str {
        self.0.name()
    }

    pub fn is_derivation(&self) -> bool {
        self.0.is_derivation()
    }

    pub fn to_basename(&self) -> String {
        self.0.to_basename()
    }

    /// Check a name the way Nix does, for use before any hashing; the
    /// error names the rule broken ([`NameProblem`]).
    pub fn validate_name(name: &str) -> Result<(), FormatError> {
        match NameProblem::of(name) {
            Some(problem) => Err(FormatError::Name { name: name.to_owned(), problem }),
            None => Ok(()),
        }
    }
}

impl fmt::Display for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_basename())
    }
}

impl fmt::Debug for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorePath({})", self.0.to_basename())
    }
}

impl FromStr for StorePath {
    type Err = FormatError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_basename(s)
    }
}

/// Why a name cannot be a store path's name: the rules of Nix's
/// `checkName` (src/libstore/path.cc), which the `nix-derivation` crate
/// applies without saying which one failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameProblem {
    #[error("it is empty")]
    Empty,
    #[error("it is {len} characters long; Nix allows at most {max}", max = StorePath::MAX_NAME_LEN)]
    TooLong { len: usize },
    #[error("it contains {0:?}; a name has only letters, digits and `+-._?=`")]
    Character(char),
    #[error("`.` and `..`, and names starting with `.-` or `..-`, are not allowed")]
    Dots,
}

impl NameProblem {
    /// The first rule `name` breaks, if any.
    pub fn of(name: &str) -> Option<Self> {
        if name.is_empty() {
            return Some(Self::Empty);
        }
        if name.len() > StorePath::MAX_NAME_LEN {
            return Some(Self::TooLong { len: name.len() });
        }
        if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || "+-._?=".contains(*c))) {
            return Some(Self::Character(c));
        }
        if name == "." || name == ".." || name.starts_with(".-") || name.starts_with("..-") {
            return Some(Self::Dots);
        }
        None
    }
}

/// How a content-addressed path's contents were hashed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContentAddress {
    /// sha256 of a single file's bytes (`outputHashMode = "flat"`).
    Flat(Sha256),
    /// sha256 of the NAR serialisation (`outputHashMode = "recursive"`).
    Recursive(Sha256),
    /// sha256 of text contents (`builtins.toFile`, `.drv` files).
    Text(Sha256),
}

impl ContentAddress {
    pub fn hash(&self) -> Sha256 {
        match self {
            Self::Flat(h) | Self::Recursive(h) | Self::Text(h) => *h,
        }
    }

    /// The `ca` field Nix writes: `fixed:sha256:…`, `fixed:r:sha256:…`, `text:sha256:…`.
    pub fn to_nix_string(&self) -> String {
        self.to_nix().to_nix_string()
    }

    pub fn parse(text: &str) -> Result<Self, FormatError> {
        let ca = nix_derivation::CAHash::parse(text)
            .map_err(|e| FormatError::Hash(format!("invalid content address {text:?}: {e}")))?;
        Self::from_nix(&ca)
    }

    pub(crate) fn to_nix(self) -> nix_derivation::CAHash {
        match self {
            Self::Flat(h) => nix_derivation::CAHash::Flat(h.to_nix()),
            Self::Recursive(h) => nix_derivation::CAHash::Nar(h.to_nix()),
            Self::Text(h) => nix_derivation::CAHash::Text(h.0),
        }
    }

    pub(crate) fn from_nix(ca: &nix_derivation::CAHash) -> Result<Self, FormatError> {
        Ok(match ca {
            nix_derivation::CAHash::Flat(h) => Self::Flat(Sha256::from_nix(h)?),
            nix_derivation::CAHash::Nar(h) => Self::Recursive(Sha256::from_nix(h)?),
            nix_derivation::CAHash::Text(d) => Self::Text(Sha256(*d)),
            nix_derivation::CAHash::Git(_) => {
                return Err(FormatError::Hash("git content addresses are not supported".into()))
            }
        })
    }
}

impl fmt::Display for ContentAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_nix_string())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_renders_absolute_paths() {
        let dir = StoreDir::default();
        let p = dir
            .parse_path("/store/ikcfqh9q2jd5v5azikbfn5gqrmfcdc4c-v1-noinputs")
            .unwrap();
        assert_eq!(p.name(), "v1-noinputs");
        assert_eq!(p.hash_part(), "ikcfqh9q2jd5v5azikbfn5gqrmfcdc4c");
        assert_eq!(dir.display(&p), "/store/ikcfqh9q2jd5v5azikbfn5gqrmfcdc4c-v1-noinputs");
        let (q, rest) = dir
            .split_path("/store/ikcfqh9q2jd5v5azikbfn5gqrmfcdc4c-v1-noinputs/bin/sh")
            .unwrap();
        assert_eq!((q, rest), (p, "bin/sh"));
    }

    #[test]
    fn refuses_invalid_paths() {
        let dir = StoreDir::default();
        for bad in [
            "/nix/store/ikcfqh9q2jd5v5azikbfn5gqrmfcdc4c-x",
            "/store/ikcfqh9q2jd5v5azikbfn5gqrmfcdc4-short",
            "/store/ikcfqh9q2jd5v5azikbfn5gqrmfcdc4e-bad-hash-char",
            "/store/ikcfqh9q2jd5v5azikbfn5gqrmfcdc4c-with space",
            "/store/ikcfqh9q2jd5v5azikbfn5gqrmfcdc4c-..",
            "/store/ikcfqh9q2jd5v5azikbfn5gqrmfcdc4c-",
            "/store/ikcfqh9q2jd5v5azikbfn5gqrmfcdc4c-a/b",
        ] {
            assert!(dir.parse_path(bad).is_err(), "{bad}");
        }
        let long = format!("ikcfqh9q2jd5v5azikbfn5gqrmfcdc4c-{}", "a".repeat(212));
        assert!(StorePath::from_basename(&long).is_err());
        let ok = format!("ikcfqh9q2jd5v5azikbfn5gqrmfcdc4c-{}", "a".repeat(211));
        assert!(StorePath::from_basename(&ok).is_ok());
    }

    #[test]
    fn store_dir_must_be_absolute_and_canonical() {
        for bad in ["store", "/store/", "/a/../b", ""] {
            assert!(StoreDir::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_refused_name_says_which_rule() {
        let too_long = "a".repeat(212);
        for (name, problem) in [
            ("", NameProblem::Empty),
            (too_long.as_str(), NameProblem::TooLong { len: 212 }),
            ("a b", NameProblem::Character(' ')),
            ("a/b", NameProblem::Character('/')),
            ("..", NameProblem::Dots),
            (".-x", NameProblem::Dots),
        ] {
            assert_eq!(NameProblem::of(name), Some(problem.clone()), "{name:?}");
            let e = StorePath::validate_name(name).unwrap_err().to_string();
            assert!(e.contains(&problem.to_string()), "{e}");
        }
        assert!(StorePath::validate_name(&"a".repeat(211)).is_ok());
        let e = StorePath::from_basename(&format!("ikcfqh9q2jd5v5azikbfn5gqrmfcdc4c-{too_long}")).unwrap_err();
        assert!(e.to_string().contains("212 characters long; Nix allows at most 211"), "{e}");
    }

    proptest! {
        /// The rules `NameProblem` states are the ones the path parser
        /// applies: a name is refused by one exactly when it is by the other.
        #[test]
        fn name_problems_agree_with_the_parser(name in "[a-zA-Z0-9+._?=/ -]{0,4}|[a-z]{205,215}") {
            let parsed = StorePath::from_basename(&format!("ikcfqh9q2jd5v5azikbfn5gqrmfcdc4c-{name}"));
            prop_assert_eq!(parsed.is_err(), NameProblem::of(&name).is_some());
        }

        #[test]
        fn basename_round_trips(digest in proptest::array::uniform20(any::<u8>()), name in "[a-zA-Z0-9+_?=-][a-zA-Z0-9+._?=-]{0,40}") {
            let base = format!("{}-{name}", nixbase32::encode(&digest));
            let p: StorePath = base.parse().unwrap();
            prop_assert_eq!(p.to_string(), base);
            prop_assert_eq!(p.digest(), &digest);
            let dir = StoreDir::default();
            prop_assert_eq!(dir.parse_path(&dir.display(&p)).unwrap(), p);
        }
    }

    /// Strings near store paths: a valid one with a character changed,
    /// inserted or removed.
    pub(crate) fn mutated_store_path() -> impl Strategy<Value = String> {
        (
            proptest::array::uniform20(any::<u8>()),
            "[a-zA-Z0-9+_?=.-]{1,40}",
            any::<proptest::sample::Index>(),
            any::<char>(),
            0u8..4,
        )
            .prop_map(|(digest, name, at, c, how)| {
                let mut chars: Vec<char> = format!("/store/{}-{name}", nixbase32::encode(&digest)).chars().collect();
                let i = at.index(chars.len());
                match how {
                    0 => chars.insert(i, c),
                    1 => {
                        chars.remove(i);
                    }
                    2 => chars[i] = c,
                    _ => {}
                }
                chars.into_iter().collect()
            })
    }

    /// The parse ⇔ render contract of store paths and store directories
    /// for one input.
    pub(crate) fn check_store_path_round_trip(text: &str) -> Result<(), TestCaseError> {
        let dir = StoreDir::default();
        if let Ok(p) = dir.parse_path(text) {
            prop_assert_eq!(dir.display(&p), text);
            prop_assert_eq!(p.to_string().parse::<StorePath>().unwrap(), p);
        }
        if let Ok(p) = text.parse::<StorePath>() {
            prop_assert_eq!(p.to_string(), text);
        }
        if let Ok(d) = StoreDir::new(text) {
            prop_assert_eq!(StoreDir::new(d.as_str()).unwrap(), d.clone());
            prop_assert_eq!(d.as_str(), text);
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn parsed_store_paths_render_to_themselves(text in mutated_store_path()) {
            check_store_path_round_trip(&text)?;
            if let Some(base) = text.strip_prefix("/store/") {
                check_store_path_round_trip(base)?;
            }
        }
    }
}

