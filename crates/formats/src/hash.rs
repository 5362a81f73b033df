//! SHA-256 digests in Nix's spellings, and nixbase32.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use sha2::{Digest as _, Sha256 as Sha256Hasher};

use super::FormatError;

/// Nix's base-32 alphabet and byte order (not RFC 4648).
pub mod nixbase32 {
    use super::FormatError;

    /// Encode bytes the way Nix prints hashes and store-path digests.
    pub fn encode(bytes: &[u8]) -> String {
        nix_derivation::nixbase32::encode(bytes)
    }

    /// Decode a nixbase32 string; refuses characters outside the alphabet
    /// and non-canonical trailing bits.
    pub fn decode(text: &str) -> Result<Vec<u8>, FormatError> {
        nix_derivation::nixbase32::decode(text.as_bytes())
            .map_err(|e| FormatError::Hash(format!("invalid nixbase32 {text:?}: {e}")))
    }

    /// Length of the encoding of `n` bytes.
    pub const fn encoded_len(n: usize) -> usize {
        nix_derivation::nixbase32::encoded_len(n)
    }
}

/// How a hash is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HashEncoding {
    /// Lower-case hexadecimal (`nix-hash`'s default).
    #[default]
    Base16,
    /// Nix's base-32.
    Nix32,
    /// `sha256-<base64>` (Subresource Integrity).
    Sri,
}

/// A SHA-256 digest.
///
/// Parses every spelling Nix accepts for sha256 (`sha256:<nix32>`,
/// `sha256:<hex>`, `sha256:<base64>`, `sha256-<base64>`, and the bare hex or
/// nix32 forms); `Display` prints `sha256:<nix32>`, Nix's own form.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    /// Hash a byte string.
    pub fn digest(bytes: &[u8]) -> Self {
        Self(Sha256Hasher::digest(bytes).into())
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex, no prefix.
    pub fn to_hex(&self) -> String {
        let mut out = String::with_capacity(64);
        for b in self.0 {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }

    /// nixbase32, no prefix.
    pub fn to_nix32(&self) -> String {
        nixbase32::encode(&self.0)
    }

    /// `sha256-<base64>`.
    pub fn to_sri(&self) -> String {
        format!(
            "sha256-{}",
            base64::engine::general_purpose::STANDARD.encode(self.0)
        )
    }

    /// The digest alone, in the given encoding (SRI keeps its prefix).
    pub fn encode(&self, encoding: HashEncoding) -> String {
        match encoding {
            HashEncoding::Base16 => self.to_hex(),
            HashEncoding::Nix32 => self.to_nix32(),
            HashEncoding::Sri => self.to_sri(),
        }
    }

    /// Parse any of Nix's spellings of a sha256 hash.
    pub fn parse(text: &str) -> Result<Self, FormatError> {
        let bad = |why: &str| {
            FormatError::Hash(format!(
                "{text:?} is not a sha256 hash ({why}); use 64 hex digits, 52 nixbase32 \
                 characters, `sha256:...` or SRI `sha256-<base64>`"
            ))
        };
        let text = text.trim();
        if let Some(b64) = text.strip_prefix("sha256-") {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| bad("invalid base64"))?;
            return Self::from_slice(&bytes).ok_or_else(|| bad("wrong length"));
        }
        if text.contains('-') || (text.contains(':') && !text.starts_with("sha256:")) {
            return Err(bad("only sha256 is supported"));
        }
        let body = text.strip_prefix("sha256:").unwrap_or(text);
        let bytes = match body.len() {
            64 => decode_hex(body).ok_or_else(|| bad("invalid hex digit"))?,
            52 => nixbase32::decode(body).map_err(|_| bad("invalid nixbase32"))?,
            44 if text.starts_with("sha256:") => base64::engine::general_purpose::STANDARD
                .decode(body)
                .map_err(|_| bad("invalid base64"))?,
            _ => return Err(bad("wrong length")),
        };
        Self::from_slice(&bytes).ok_or_else(|| bad("wrong length"))
    }

    fn from_slice(bytes: &[u8]) -> Option<Self> {
        Some(Self(bytes.try_into().ok()?))
    }

    pub(crate) fn to_nix(self) -> nix_derivation::NixHash {
        nix_derivation::NixHash::Sha256(self.0)
    }

    pub(crate) fn from_nix(hash: &nix_derivation::NixHash) -> Result<Self, FormatError> {
        match hash {
            nix_derivation::NixHash::Sha256(d) => Ok(Self(*d)),
            other => Err(FormatError::Hash(format!(
                "only sha256 is supported, got {}",
                other.algorithm()
            ))),
        }
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.to_nix32())
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({})", self.to_hex())
    }
}

impl FromStr for Sha256 {
    type Err = FormatError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Incremental SHA-256 (SHA extensions are used when the CPU has them).
#[derive(Default, Clone)]
pub struct Sha256Writer(Sha256Hasher);

impl Sha256Writer {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    pub fn finish(self) -> Sha256 {
        Sha256(self.0.finalize().into())
    }
}

impl std::io::Write for Sha256Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_every_spelling_of_one_hash() {
        let hex = "2411c74bda5bbcfcddaf4531f66d1adc73f247f529aee981b029513aefdbf849";
        let h = Sha256::parse(hex).unwrap();
        assert_eq!(h.to_hex(), hex);
        for s in [
            format!("sha256:{hex}"),
            format!("sha256:{}", h.to_nix32()),
            h.to_nix32(),
            h.to_sri(),
            h.to_string(),
        ] {
            assert_eq!(Sha256::parse(&s).unwrap(), h, "{s}");
        }
    }

    #[test]
    fn refuses_other_algorithms_and_garbage() {
        for s in ["md5:abcd", "sha512-AAAA", "sha256:xyz", "", "sha256-!!!", "e".repeat(63).as_str()] {
            assert!(Sha256::parse(s).is_err(), "{s}");
        }
        // 'e' is not in the nixbase32 alphabet
        assert!(Sha256::parse(&"e".repeat(52)).is_err());
    }

    #[test]
    fn nix_vector_nar_hash_spellings_agree() {
        // v1-noinputs output: nix path-info gives this nix32 hash
        let h = Sha256::parse("sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw").unwrap();
        assert_eq!(Sha256::parse(&h.to_sri()).unwrap(), h);
        assert_eq!(Sha256::parse(&h.to_hex()).unwrap(), h);
    }

    proptest! {
        #[test]
        fn every_encoding_round_trips(bytes in proptest::array::uniform32(any::<u8>())) {
            let h = Sha256(bytes);
            for enc in [HashEncoding::Base16, HashEncoding::Nix32, HashEncoding::Sri] {
                prop_assert_eq!(Sha256::parse(&h.encode(enc)).unwrap(), h);
            }
            prop_assert_eq!(h.to_string().parse::<Sha256>().unwrap(), h);
            prop_assert_eq!(nixbase32::decode(&h.to_nix32()).unwrap(), bytes.to_vec());
        }
    }
}
