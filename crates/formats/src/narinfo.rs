//! `.narinfo` records and ed25519 signing keys in Nix's `name:base64` format.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};

use super::hash::Sha256;
use super::path::{ContentAddress, StoreDir, StorePath};
use super::FormatError;

/// The most bytes of a narinfo worth reading: `nix-narinfo`'s limit (a
/// narinfo of a path with thousands of references is a few hundred KiB).
pub const MAX_NARINFO_SIZE: usize = nix_narinfo::MAX_NARINFO_SIZE;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Binary-cache metadata for one store path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NarInfo {
    pub store_path: StorePath,
    /// Location of the (compressed) NAR, relative to the cache root.
    pub url: String,
    /// `none`, `xz`, `zstd`, `bzip2`, ...
    pub compression: String,
    pub file_hash: Option<Sha256>,
    pub file_size: Option<u64>,
    pub nar_hash: Sha256,
    pub nar_size: u64,
    pub references: BTreeSet<StorePath>,
    pub deriver: Option<StorePath>,
    /// Signatures as `key-name:base64`.
    pub signatures: Vec<String>,
    pub ca: Option<ContentAddress>,
}

fn narinfo_error(e: impl fmt::Display) -> FormatError {
    FormatError::NarInfo(e.to_string())
}

impl NarInfo {
    /// Parse a narinfo; a `StorePath` outside `store_dir` is refused.
    ///
    /// Contract: what this accepts, [`to_text`](Self::to_text) writes back,
    /// and that text parses to the same value. To keep it so:
    /// - `Sig` lines that are not a well-formed signature (`name:base64`,
    ///   the name non-empty without `:` or white space, the base64 canonical
    ///   and non-empty; see [`canonical_signature`]) are dropped. Nix keeps
    ///   them (`NarInfo` stores `Sig` values verbatim) but can verify none of
    ///   them, so dropping them changes no trust decision; refusing the whole
    ///   narinfo instead would let one junk line hide a well-signed path.
    ///   Signatures are stored in canonical base64.
    /// - A missing `Compression` is `bzip2`, Nix's default (`NarInfo`'s
    ///   constructor in `src/libstore/nar-info.cc`).
    /// - Fields drv does not know are not kept.
    pub fn parse(store_dir: &StoreDir, text: &[u8]) -> Result<Self, FormatError> {
        let n = nix_narinfo::NarInfo::parse_in(&store_dir.to_nix(), text).map_err(narinfo_error)?;
        Ok(Self {
            store_path: StorePath(n.store_path().clone()),
            url: n.url().to_owned(),
            compression: n.compression().as_str().to_owned(),
            file_hash: n.file_hash().map(Sha256::from_nix).transpose()?,
            file_size: n.file_size(),
            nar_hash: Sha256::from_nix(n.nar_hash())?,
            nar_size: n.nar_size(),
            references: n.references().iter().map(|p| StorePath(p.clone())).collect(),
            deriver: n.deriver().map(|p| StorePath(p.clone())),
            signatures: n.signatures().iter().filter_map(|s| canonical_signature(&s.to_nix_string())).collect(),
            ca: n.content_address().map(ContentAddress::from_nix).transpose()?,
        })
    }

    fn to_nix(&self, store_dir: &StoreDir) -> Result<nix_narinfo::NarInfo, FormatError> {
        let sigs = self
            .signatures
            .iter()
            .map(|s| nix_narinfo::NixSignature::parse(s).map_err(narinfo_error))
            .collect::<Result<Vec<_>, _>>()?;
        nix_narinfo::NarInfo::builder_in(
            store_dir.to_nix(),
            self.store_path.0.clone(),
            self.url.clone(),
            self.nar_hash.to_nix(),
            self.nar_size,
        )
        .compression(nix_narinfo::Compression::parse(&self.compression))
        .file_hash(self.file_hash.map(Sha256::to_nix))
        .file_size(self.file_size)
        .references(self.references.iter().map(|p| p.0.clone()))
        .deriver(self.deriver.as_ref().map(|p| p.0.clone()))
        .signatures(sigs)
        .content_address(self.ca.map(ContentAddress::to_nix))
        .build()
        .map_err(narinfo_error)
    }

    /// The narinfo text, fields in Nix's order.
    pub fn to_text(&self, store_dir: &StoreDir) -> Result<String, FormatError> {
        let bytes = self.to_nix(store_dir)?.to_canonical_bytes();
        Ok(String::from_utf8(bytes).expect("narinfo text is UTF-8"))
    }

    /// What a signature signs: `1;<path>;<narHash>;<narSize>;<refs,...>`.
    pub fn fingerprint(&self, store_dir: &StoreDir) -> String {
        let refs: Vec<String> = self.references.iter().map(|p| store_dir.display(p)).collect();
        format!(
            "1;{};{};{};{}",
            store_dir.display(&self.store_path),
            self.nar_hash,
            self.nar_size,
            refs.join(",")
        )
    }

    /// Add (or replace) this key's signature.
    pub fn sign(&mut self, store_dir: &StoreDir, key: &SecretKey) {
        let sig = key.sign(self.fingerprint(store_dir).as_bytes());
        self.signatures.retain(|s| !s.starts_with(&format!("{}:", key.name)));
        self.signatures.push(sig);
    }

    /// Whether at least one signature verifies under one of `keys`.
    pub fn has_valid_signature(&self, store_dir: &StoreDir, keys: &[PublicKey]) -> bool {
        let fingerprint = self.fingerprint(store_dir);
        self.signatures.iter().any(|s| keys.iter().any(|k| k.verify(fingerprint.as_bytes(), s)))
    }
}

/// A signature `name:base64` in the form drv stores and writes, or `None`
/// when it is not one: the key name must be non-empty and hold no `:` and
/// no white space (signatures are stored space-separated, as Nix's
/// `ValidPaths.sigs`), the signature must be base64 of at least one byte.
/// The base64 is re-encoded canonically.
pub fn canonical_signature(text: &str) -> Option<String> {
    let sig = nix_narinfo::NixSignature::parse(text).ok()?;
    if sig.key_name.is_empty() || sig.key_name.contains(|c: char| c == ':' || c.is_whitespace() || c.is_control()) {
        return None;
    }
    Some(sig.to_nix_string())
}

/// An ed25519 secret key, `name:base64(secret ‖ public)` as `nix-store
/// --generate-binary-cache-key` writes it.
#[derive(Clone)]
pub struct SecretKey {
    pub name: String,
    key: SigningKey,
}

impl SecretKey {
    /// A new key from the operating system's random source.
    pub fn generate(name: &str) -> Result<Self, FormatError> {
        check_key_name(name)?;
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| FormatError::Key(format!("no randomness: {e}")))?;
        Ok(Self { name: name.to_owned(), key: SigningKey::from_bytes(&seed) })
    }

    pub fn public(&self) -> PublicKey {
        PublicKey { name: self.name.clone(), key: self.key.verifying_key() }
    }

    /// `name:base64(signature)` over `message`.
    pub fn sign(&self, message: &[u8]) -> String {
        format!("{}:{}", self.name, B64.encode(self.key.sign(message).to_bytes()))
    }
}

fn check_key_name(name: &str) -> Result<(), FormatError> {
    if name.is_empty() || name.contains(':') || name.contains(char::is_whitespace) {
        return Err(FormatError::Key(format!("invalid key name {name:?}")));
    }
    Ok(())
}

fn split_key(text: &str) -> Result<(&str, Vec<u8>), FormatError> {
    let text = text.trim();
    let (name, b64) = text
        .split_once(':')
        .ok_or_else(|| FormatError::Key("a key is written `name:base64`".into()))?;
    check_key_name(name)?;
    let bytes = B64
        .decode(b64)
        .map_err(|_| FormatError::Key(format!("key {name:?} is not valid base64")))?;
    Ok((name, bytes))
}

impl FromStr for SecretKey {
    type Err = FormatError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (name, bytes) = split_key(text)?;
        let bytes: [u8; 64] = bytes
            .try_into()
            .map_err(|_| FormatError::Key(format!("secret key {name:?} must be 64 bytes")))?;
        let key = SigningKey::from_keypair_bytes(&bytes)
            .map_err(|_| FormatError::Key(format!("secret key {name:?}: public half does not match")))?;
        Ok(Self { name: name.to_owned(), key })
    }
}

impl fmt::Display for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, B64.encode(self.key.to_keypair_bytes()))
    }
}

/// An ed25519 public key, `name:base64(public)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    pub name: String,
    key: ed25519_dalek::VerifyingKey,
}

impl PublicKey {
    /// Whether `signature` (`name:base64`) is this key's signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &str) -> bool {
        let Ok(sig) = nix_narinfo::NixSignature::parse(signature) else {
            return false;
        };
        let trusted = nix_narinfo::TrustedPublicKey { name: self.name.clone(), key: self.key };
        sig.verify(message, &[trusted]).unwrap_or(false)
    }
}

impl FromStr for PublicKey {
    type Err = FormatError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let t = nix_narinfo::TrustedPublicKey::parse(text.trim())
            .map_err(|e| FormatError::Key(format!("public key {text:?}: {e}")))?;
        Ok(Self { name: t.name, key: t.key })
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, B64.encode(self.key.to_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/nix-vectors");

    fn vectors() -> Value {
        serde_json::from_slice(&std::fs::read(format!("{FIXTURES}/narinfo-signatures.json")).unwrap()).unwrap()
    }

    #[test]
    fn nix_signed_narinfos_verify_and_re_sign_identically() {
        let v = vectors();
        let dir = StoreDir::default();
        let sk: SecretKey = v["secret_key"].as_str().unwrap().parse().unwrap();
        let pk: PublicKey = v["public_key"].as_str().unwrap().parse().unwrap();
        assert_eq!(sk.public(), pk);
        assert_eq!(sk.to_string(), v["secret_key"].as_str().unwrap());
        assert_eq!(pk.to_string(), v["public_key"].as_str().unwrap());
        for e in v["entries"].as_array().unwrap() {
            let text = e["narinfo"].as_str().unwrap();
            let info = NarInfo::parse(&dir, text.as_bytes()).unwrap();
            assert_eq!(info.to_text(&dir).unwrap(), text, "print is byte-identical");
            assert_eq!(info.fingerprint(&dir), e["fingerprint"].as_str().unwrap());
            assert!(info.has_valid_signature(&dir, &[pk.clone()]));
            // ed25519 is deterministic: our signature is Nix's
            let mut resigned = info.clone();
            resigned.signatures.clear();
            resigned.sign(&dir, &sk);
            assert_eq!(resigned.signatures, vec![e["sig"].as_str().unwrap().to_owned()]);
        }
    }

    #[test]
    fn tampering_breaks_the_signature() {
        let v = vectors();
        let dir = StoreDir::default();
        let pk: PublicKey = v["public_key"].as_str().unwrap().parse().unwrap();
        let text = v["entries"][1]["narinfo"].as_str().unwrap();
        let info = NarInfo::parse(&dir, text.as_bytes()).unwrap();
        let mut other_size = info.clone();
        other_size.nar_size += 1;
        assert!(!other_size.has_valid_signature(&dir, &[pk.clone()]));
        let mut no_refs = info.clone();
        no_refs.references.clear();
        assert!(!no_refs.has_valid_signature(&dir, &[pk.clone()]));
        let stranger = SecretKey::generate("test-cache-1").unwrap();
        assert!(!info.has_valid_signature(&dir, &[stranger.public()]));
    }

    #[test]
    fn narinfo_of_another_store_dir_is_refused() {
        let v = vectors();
        let text = v["entries"][0]["narinfo"].as_str().unwrap();
        assert!(NarInfo::parse(&StoreDir::new("/nix/store").unwrap(), text.as_bytes()).is_err());
    }

    #[test]
    fn cache_vectors_parse_with_content_addresses() {
        let dir = StoreDir::default();
        let mut cas = 0;
        for e in std::fs::read_dir(format!("{FIXTURES}/cache-zstd-all")).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "narinfo") {
                let text = std::fs::read(&p).unwrap();
                let info = NarInfo::parse(&dir, &text).unwrap();
                cas += info.ca.is_some() as usize;
                assert_eq!(info.to_text(&dir).unwrap().as_bytes(), &text[..], "{}", p.display());
            }
        }
        assert!(cas >= 3);
    }

    /// The `sig-junk-poisons-path` report: one good signature and junk
    /// `Sig` lines. The junk is dropped, so the narinfo still verifies and
    /// can be written back (pushed, served) exactly.
    #[test]
    fn malformed_signatures_are_dropped_and_the_rest_renders() {
        let v = vectors();
        let dir = StoreDir::default();
        let pk: PublicKey = v["public_key"].as_str().unwrap().parse().unwrap();
        let good = v["entries"][0]["narinfo"].as_str().unwrap();
        let junk = ["Sig: :junk-no-key-name", "Sig: other-1:not base64!!", "Sig: no-colon", "Sig: a b:AAAA", "Sig: k-1:", "Sig: k-1:QUJD "];
        let text = format!("{good}{}\n", junk.join("\n"));
        let info = NarInfo::parse(&dir, text.as_bytes()).unwrap();
        assert_eq!(info.signatures, NarInfo::parse(&dir, good.as_bytes()).unwrap().signatures);
        assert!(info.has_valid_signature(&dir, &[pk]));
        assert_eq!(info.to_text(&dir).unwrap(), good);
        // Non-canonical base64 of a real signature is kept, canonically.
        assert_eq!(canonical_signature("k-1:QUJD").as_deref(), Some("k-1:QUJD"));
        for bad in [":x", "k:", "k", "k k:QUJD", "k:QUJD!", "k\u{7}:QUJD"] {
            assert_eq!(canonical_signature(bad), None, "{bad:?}");
        }
    }

    /// Nix's default for a narinfo without `Compression` is bzip2.
    #[test]
    fn a_missing_compression_is_bzip2() {
        let v = vectors();
        let good = v["entries"][0]["narinfo"].as_str().unwrap();
        let without: String = good.lines().filter(|l| !l.starts_with("Compression:")).map(|l| format!("{l}\n")).collect();
        let info = NarInfo::parse(&StoreDir::default(), without.as_bytes()).unwrap();
        assert_eq!(info.compression, "bzip2");
    }

    #[test]
    fn keys_round_trip_and_reject_garbage() {
        let k = SecretKey::generate("cache.example-1").unwrap();
        let again: SecretKey = k.to_string().parse().unwrap();
        assert_eq!(again.public(), k.public());
        let sig = k.sign(b"msg");
        assert!(k.public().verify(b"msg", &sig));
        assert!(!k.public().verify(b"msG", &sig));
        for bad in ["nocolon", ":AAAA", "x:!!!", "x:AAAA"] {
            assert!(bad.parse::<SecretKey>().is_err());
            assert!(bad.parse::<PublicKey>().is_err());
        }
    }
}

#[cfg(test)]
pub(crate) mod proptests {
    use super::*;
    use proptest::prelude::*;

    /// Narinfo-like text: real field names and values, mixed with junk
    /// lines, duplicate fields, odd spacing and bytes that are not UTF-8.
    pub(crate) fn narinfo_text() -> impl Strategy<Value = Vec<u8>> {
        let path = "[0-9a-df-np-sv-z]{32}-[a-z0-9.+_?=-]{1,12}";
        let value = prop_oneof![
            path.prop_map(|p| format!("/store/{p}")),
            path.prop_map(|p| p.to_string()),
            "(sha256:[0-9a-df-np-sv-z]{52})",
            "(sha256-[A-Za-z0-9+/]{43}=)",
            "[0-9]{1,20}",
            "(none|xz|zstd|bzip2|gzip|br|BZIP2| zstd |)",
            "[a-z0-9-]{0,6}:[A-Za-z0-9+/=!]{0,12}",
            "(fixed:r:sha256:[0-9a-df-np-sv-z]{52}|text:sha256:[0-9a-df-np-sv-z]{52}|junk:x)",
            "[ -~]{0,16}",
            "unknown-deriver",
        ];
        let field = "(StorePath|URL|Compression|FileHash|FileSize|NarHash|NarSize|References|Deriver|Sig|CA|X-Extra|)";
        let line = prop_oneof![
            8 => (field, "( |  |)", value.clone(), "( |\t|)").prop_map(|(f, sp, v, tail)| format!("{f}:{sp}{v}{tail}").into_bytes()),
            1 => proptest::collection::vec(any::<u8>(), 0..20),
            1 => (proptest::collection::vec(value, 0..4)).prop_map(|vs| format!("References: {}", vs.join(" ")).into_bytes()),
        ];
        let required = (path, "[0-9a-df-np-sv-z]{52}", 1u64..1 << 40).prop_map(|(p, h, n)| {
            format!("StorePath: /store/{p}\nURL: nar/{p}.nar\nNarHash: sha256:{h}\nNarSize: {n}\n").into_bytes()
        });
        (proptest::option::of(required), proptest::collection::vec(line, 0..12), any::<bool>()).prop_map(|(req, lines, crlf)| {
            let mut out = req.unwrap_or_default();
            for l in lines {
                out.extend_from_slice(&l);
                out.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
            }
            out
        })
    }

    /// The parse ⇔ render contract of [`NarInfo::parse`], for one input.
    pub(crate) fn check_narinfo_round_trip(text: &[u8]) -> Result<(), TestCaseError> {
        let dir = StoreDir::default();
        let Ok(info) = NarInfo::parse(&dir, text) else { return Ok(()) };
        let rendered = info.to_text(&dir);
        prop_assert!(rendered.is_ok(), "accepted but not renderable: {:?} from {:?}", rendered, String::from_utf8_lossy(text));
        let rendered = rendered.unwrap();
        let again = NarInfo::parse(&dir, rendered.as_bytes());
        prop_assert_eq!(again.as_ref().ok(), Some(&info), "rendered {:?}", rendered);
        // The rendering is a fixed point.
        prop_assert_eq!(again.unwrap().to_text(&dir).unwrap(), rendered);
        Ok(())
    }

    proptest! {
        #[test]
        fn parsed_narinfos_render_to_what_parses_the_same(text in narinfo_text()) {
            check_narinfo_round_trip(&text)?;
        }
    }

    fn store_path() -> impl Strategy<Value = StorePath> {
        (proptest::array::uniform20(any::<u8>()), "[a-z0-9][a-z0-9.+_-]{0,20}")
            .prop_map(|(d, n)| format!("{}-{n}", crate::hash::nixbase32::encode(&d)).parse().unwrap())
    }

    proptest! {
        #[test]
        fn narinfo_text_round_trips(
            path in store_path(),
            refs in proptest::collection::btree_set(store_path(), 0..5),
            deriver in proptest::option::of(store_path()),
            nar in proptest::array::uniform32(any::<u8>()),
            file in proptest::option::of(proptest::array::uniform32(any::<u8>())),
            size in 1u64..1 << 40,
            compression in prop_oneof![Just("zstd"), Just("xz"), Just("none")],
        ) {
            let dir = StoreDir::default();
            let mut info = NarInfo {
                store_path: path, url: format!("nar/x.nar.{compression}"), compression: compression.into(),
                file_hash: file.map(Sha256), file_size: file.map(|_| size / 2), nar_hash: Sha256(nar), nar_size: size,
                references: refs, deriver, signatures: vec![], ca: None,
            };
            let key = SecretKey::generate("k-1").unwrap();
            info.sign(&dir, &key);
            let text = info.to_text(&dir).unwrap();
            let back = NarInfo::parse(&dir, text.as_bytes()).unwrap();
            prop_assert_eq!(&back, &info);
            prop_assert!(back.has_valid_signature(&dir, &[key.public()]));
        }
    }
}
