//! Derivations: Nix's ATerm `.drv` format and output-path calculation
//! (`hashDerivationModulo`), over `nix-derivation`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::path::{ContentAddress, StoreDir, StorePath};
use super::FormatError;

/// A derivation's identity when another derivation uses it as an input:
/// Nix's `hashDerivationModulo`. Fixed-output derivations are identified by
/// their output's content hash alone, so changing how a source is fetched
/// does not rebuild everything downstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DerivationHash(nix_derivation::InputDerivationHash);

/// One output of a derivation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DerivationOutput {
    /// The store path (known before building for every kind drv supports).
    pub path: StorePath,
    /// For a fixed-output derivation, the content hash the output must have.
    pub fixed: Option<ContentAddress>,
}

/// A validated derivation with all output paths computed: made only by
/// [`Derivation::parse`] and [`DerivationBuilder::build`], which refuse a
/// derivation whose outputs cannot be resolved, so [`Derivation::outputs`]
/// cannot fail and is computed once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Derivation {
    inner: nix_derivation::Derivation,
    outputs: BTreeMap<String, DerivationOutput>,
}

fn drv_error(name: &str, e: impl std::fmt::Display) -> FormatError {
    FormatError::Derivation {
        name: name.to_owned(),
        reason: e.to_string(),
    }
}

impl Derivation {
    /// Start a derivation; see [`DerivationBuilder`].
    pub fn builder(store_dir: &StoreDir, name: &str, system: &str, builder: &str) -> DerivationBuilder {
        DerivationBuilder {
            name: name.to_owned(),
            inner: nix_derivation::DerivationBuilder::new_in_store(
                store_dir.to_nix(),
                name,
                system,
                builder,
            ),
        }
    }

    /// Parse ATerm bytes. `name` is the derivation name (the `.drv` file's
    /// name without hash and `.drv` suffix), which Nix keeps out of band.
    pub fn parse(store_dir: &StoreDir, aterm: &[u8], name: &str) -> Result<Self, FormatError> {
        let inner = nix_derivation::Derivation::from_aterm_bytes_in(aterm, name, store_dir.to_nix())
            .map_err(|e| drv_error(name, e))?;
        // Every output must have its path; drv supports no floating outputs.
        let me = Self::validated(inner)?;
        // What is accepted must render to ATerm that means the same: the
        // writer leaves some fields unescaped (the platform, output names),
        // where the parser takes escapes, so `"x86_64\"-linux"` would render
        // as broken ATerm and its drv_path and hashDerivationModulo would be
        // computed over those bytes. Nix escapes every string (`printString`
        // in `src/libstore/derivations.cc`); drv refuses such a derivation.
        // Canonical input (all Nix and drv write) renders to itself, so the
        // second parse happens only for other spellings.
        let rendered = me.to_aterm();
        if rendered != aterm {
            let again = nix_derivation::Derivation::from_aterm_bytes_in(&rendered, name, store_dir.to_nix());
            if again.ok().as_ref() != Some(&me.inner) {
                return Err(drv_error(name, "a string field holds characters its ATerm rendering cannot carry (a quote or backslash where Nix allows none)"));
            }
        }
        Ok(me)
    }

    /// Parse a `.drv` file named by its store path.
    pub fn parse_file(
        store_dir: &StoreDir,
        drv_path: &StorePath,
        aterm: &[u8],
    ) -> Result<Self, FormatError> {
        let name = drv_path
            .name()
            .strip_suffix(".drv")
            .ok_or_else(|| drv_error(drv_path.name(), "a derivation's file name ends in .drv"))?;
        Self::parse(store_dir, aterm, name)
    }

    /// The exact ATerm bytes Nix writes (no trailing newline).
    pub fn to_aterm(&self) -> Vec<u8> {
        self.inner.to_aterm_bytes()
    }

    /// Where this derivation is stored: a text path over its ATerm, with its
    /// input derivations and sources as references.
    pub fn drv_path(&self) -> StorePath {
        StorePath(self.inner.drv_path().expect("validated derivations have valid names"))
    }

    /// The references of the `.drv` file.
    pub fn references(&self) -> BTreeSet<StorePath> {
        self.inner
            .input_derivations()
            .keys()
            .chain(self.inner.input_sources())
            .map(|p| StorePath(p.clone()))
            .collect()
    }

    pub fn name(&self) -> &str {
        self.inner.name()
    }
    pub fn system(&self) -> &str {
        self.inner.system()
    }
    pub fn builder_path(&self) -> &str {
        self.inner.builder()
    }
    pub fn args(&self) -> &[String] {
        self.inner.arguments()
    }
    /// Environment of the builder; values are bytes (Nix allows any).
    pub fn env(&self) -> &BTreeMap<String, Vec<u8>> {
        self.inner.environment()
    }

    /// The outputs by name, each with its store path.
    pub fn outputs(&self) -> &BTreeMap<String, DerivationOutput> {
        &self.outputs
    }

    /// `inner` with its outputs resolved, or why they cannot be (an output
    /// without a path: drv supports no floating outputs).
    fn validated(inner: nix_derivation::Derivation) -> Result<Self, FormatError> {
        let name = inner.name();
        let resolved = inner.resolved_outputs().map_err(|e| drv_error(name, e))?;
        let outputs = resolved
            .into_iter()
            .map(|(output, o)| {
                let path = o.path.ok_or_else(|| {
                    drv_error(name, format!("output {output:?} has no path (floating outputs are not supported)"))
                })?;
                let fixed = o.ca_hash.as_ref().map(ContentAddress::from_nix).transpose()?;
                Ok((output, DerivationOutput { path: StorePath(path), fixed }))
            })
            .collect::<Result<_, FormatError>>()?;
        Ok(Self { inner, outputs })
    }

    /// Input derivations and the outputs used of each.
    pub fn input_derivations(&self) -> BTreeMap<StorePath, BTreeSet<String>> {
        self.inner
            .input_derivations()
            .iter()
            .map(|(p, i)| (StorePath(p.clone()), i.outputs().clone()))
            .collect()
    }

    pub fn input_sources(&self) -> BTreeSet<StorePath> {
        self.inner.input_sources().iter().map(|p| StorePath(p.clone())).collect()
    }

    pub fn is_fixed_output(&self) -> bool {
        self.inner.is_fixed_output().unwrap_or(false)
    }

    /// This derivation's `hashDerivationModulo`, given those of its inputs.
    pub fn hash_modulo(
        &self,
        mut input_hash: impl FnMut(&StorePath) -> Option<DerivationHash>,
    ) -> Result<DerivationHash, FormatError> {
        self.inner
            .try_hash_input_derivation_modulo(|p| {
                let sp = StorePath(p.clone());
                input_hash(&sp).map(|h| h.0).ok_or(sp)
            })
            .map(DerivationHash)
            .map_err(|e| resolution_error(self.name(), e))
    }

    /// `nix show-derivation`'s JSON for this derivation (Nix 2.8 layout).
    pub fn to_show_json(&self, store_dir: &StoreDir) -> Result<Value, FormatError> {
        let mut outputs = serde_json::Map::new();
        for (name, o) in self.outputs() {
            let mut v = json!({ "path": store_dir.display(&o.path) });
            if let Some(ca) = o.fixed {
                let algo = match ca {
                    ContentAddress::Recursive(_) => "r:sha256",
                    ContentAddress::Flat(_) => "sha256",
                    ContentAddress::Text(_) => "text:sha256",
                };
                v["hashAlgo"] = json!(algo);
                v["hash"] = json!(ca.hash().to_hex());
            }
            outputs.insert(name.clone(), v);
        }
        let input_drvs: serde_json::Map<String, Value> = self
            .input_derivations()
            .into_iter()
            .map(|(p, outs)| (store_dir.display(&p), json!(outs)))
            .collect();
        let env: serde_json::Map<String, Value> = self
            .env()
            .iter()
            .map(|(k, v)| (k.clone(), json!(String::from_utf8_lossy(v))))
            .collect();
        Ok(json!({
            "outputs": outputs,
            "inputSrcs": self.input_sources().iter().map(|p| store_dir.display(p)).collect::<Vec<_>>(),
            "inputDrvs": input_drvs,
            "system": self.system(),
            "builder": self.builder_path(),
            "args": self.args(),
            "env": env,
        }))
    }
}

fn resolution_error(
    name: &str,
    e: nix_derivation::InputResolutionError<StorePath>,
) -> FormatError {
    match e {
        nix_derivation::InputResolutionError::Derivation(e) => drv_error(name, e),
        nix_derivation::InputResolutionError::Resolve { path, .. } => drv_error(
            name,
            format!("input derivation {} is unknown", path.to_basename()),
        ),
        other => drv_error(name, other),
    }
}

/// Builds a [`Derivation`] and computes its output paths the way Nix does:
/// input-addressed outputs from `hashDerivationModulo` over the inputs,
/// fixed outputs from their content hash. Output names also become
/// environment variables holding the output paths.
#[must_use]
pub struct DerivationBuilder {
    name: String,
    inner: nix_derivation::DerivationBuilder,
}

impl DerivationBuilder {
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.inner = self.inner.argument(arg);
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.inner = self.inner.environment(key, value);
        self
    }

    pub fn input_source(mut self, path: StorePath) -> Self {
        self.inner = self.inner.input_source(path.0);
        self
    }

    pub fn input_derivation(mut self, drv_path: StorePath, outputs: impl IntoIterator<Item = String>) -> Self {
        let mut merged = self
            .inner
            .input_derivations()
            .get(&drv_path.0)
            .map(|i| i.outputs().clone())
            .unwrap_or_default();
        merged.extend(outputs);
        self.inner = self
            .inner
            .input_derivation(drv_path.0, nix_derivation::InputDerivation::new(merged));
        self
    }

    /// An input-addressed output.
    pub fn output(mut self, name: impl Into<String>) -> Self {
        self.inner = self.inner.input_addressed_output(name);
        self
    }

    /// Make this a fixed-output derivation (single output `out`) and set
    /// `outputHash`, `outputHashAlgo` and `outputHashMode` as Nix does.
    pub fn fixed_output(mut self, ca: ContentAddress) -> Self {
        let mode = match ca {
            ContentAddress::Recursive(_) => "recursive",
            _ => "flat",
        };
        self.inner = self
            .inner
            .output("out", nix_derivation::Output::Fixed { ca: ca.to_nix() })
            .environment("outputHash", ca.hash().to_sri())
            .environment("outputHashMode", mode);
        self
    }

    /// Validate, compute output paths, and finish. `input_hash` gives the
    /// [`DerivationHash`] of each input derivation (by `.drv` path).
    pub fn build(
        self,
        mut input_hash: impl FnMut(&StorePath) -> Option<DerivationHash>,
    ) -> Result<Derivation, FormatError> {
        let name = self.name;
        // Nix names the `.drv` file `<name>.drv`, so that is what must be a
        // valid store name (src/libstore/derivations.cc, writeDerivation).
        StorePath::validate_name(&format!("{name}.drv"))?;
        let inner = self
            .inner
            .try_build_with_input_hashes(|p| {
                let sp = StorePath(p.clone());
                input_hash(&sp).map(|h| h.0).ok_or(sp)
            })
            .map_err(|e| resolution_error(&name, e))?
            .into_derivation();
        Derivation::validated(inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/nix-vectors");

    fn vector(name: &str) -> (Value, Vec<u8>) {
        let json: Value = serde_json::from_slice(&std::fs::read(format!("{FIXTURES}/{name}.json")).unwrap()).unwrap();
        let aterm = std::fs::read(format!("{FIXTURES}/{name}.drv")).unwrap();
        (json, aterm)
    }

    /// Every vector: parse, print byte-identical, same `.drv` path as Nix,
    /// same output paths, same `nix show-derivation` JSON.
    #[test]
    fn nix_vectors_round_trip_and_hash_like_nix() {
        let dir = StoreDir::default();
        for name in ["v1-noinputs", "v2-dependent", "v3-fod-flat", "v3-fod-recursive", "v4-depends-on-fod"] {
            let (json, aterm) = vector(name);
            let drv_path = dir.parse_path(json["drv_path"].as_str().unwrap()).unwrap();
            let drv = Derivation::parse_file(&dir, &drv_path, &aterm).unwrap();
            assert_eq!(drv.to_aterm(), aterm, "{name}: ATerm round trip");
            assert_eq!(drv.drv_path(), drv_path, "{name}: .drv path");
            for (out, o) in drv.outputs() {
                assert_eq!(
                    dir.display(&o.path),
                    json["show_derivation"]["outputs"][&out]["path"].as_str().unwrap(),
                    "{name}:{out}"
                );
            }
            assert_eq!(drv.to_show_json(&dir).unwrap(), json["show_derivation"], "{name}: show-derivation");
        }
    }

    /// Rebuilding each vector from its parts through the builder (with
    /// empty output paths, as an evaluator does) gives Nix's output paths and
    /// `.drv` path: `hashDerivationModulo` over inputs, fixed outputs included.
    #[test]
    fn builder_recomputes_nix_output_paths() {
        let dir = StoreDir::default();
        let mut hashes: BTreeMap<StorePath, DerivationHash> = BTreeMap::new();
        for name in ["v1-noinputs", "v3-fod-flat", "v3-fod-recursive", "v2-dependent", "v4-depends-on-fod"] {
            let (json, aterm) = vector(name);
            let drv_path = dir.parse_path(json["drv_path"].as_str().unwrap()).unwrap();
            let original = Derivation::parse_file(&dir, &drv_path, &aterm).unwrap();
            let outputs = original.outputs();
            let mut b = Derivation::builder(&dir, original.name(), original.system(), original.builder_path());
            for a in original.args() {
                b = b.arg(a.clone());
            }
            for (k, v) in original.env() {
                // output paths are what the builder must compute itself
                if outputs.contains_key(k) || k.starts_with("outputHash") {
                    continue;
                }
                b = b.env(k.clone(), v.clone());
            }
            for (p, outs) in original.input_derivations() {
                b = b.input_derivation(p, outs);
            }
            for p in original.input_sources() {
                b = b.input_source(p);
            }
            for (out, o) in outputs {
                b = match o.fixed {
                    Some(ca) => b.fixed_output(ca),
                    None => b.output(out.clone()),
                };
            }
            let rebuilt = b.build(|p| hashes.get(p).copied());
            let rebuilt = match rebuilt {
                Ok(r) => r,
                Err(e) => panic!("{name}: {e}"),
            };
            // Nix spells outputHash as the user wrote it; ours is SRI, so
            // compare fixed-output derivations by output path only.
            assert_eq!(rebuilt.outputs(), outputs, "{name}");
            if !original.is_fixed_output() {
                assert_eq!(rebuilt.to_aterm(), aterm, "{name}");
                assert_eq!(rebuilt.drv_path(), drv_path, "{name}");
            }
            let h = original.hash_modulo(|p| hashes.get(p).copied()).unwrap();
            hashes.insert(drv_path, h);
        }
    }

    #[test]
    fn unknown_input_derivation_is_an_error() {
        let dir = StoreDir::default();
        let input: StorePath = "zwx6xaxcggwglfv7x2x1xblw5w2w6877-v1-noinputs.drv".parse().unwrap();
        let err = Derivation::builder(&dir, "x", "x86_64-linux", "/bin/sh")
            .input_derivation(input, ["out".to_owned()])
            .output("out")
            .build(|_| None)
            .unwrap_err();
        assert!(err.to_string().contains("v1-noinputs.drv"), "{err}");
    }
}

#[cfg(test)]
pub(crate) mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any derivation drv builds prints to ATerm that parses back to
        /// the same derivation with the same `.drv` path.
        #[test]
        fn aterm_round_trips(
            name in "[a-z][a-z0-9-]{0,15}",
            args in proptest::collection::vec(".*", 0..4),
            env in proptest::collection::btree_map("[A-Za-z_][A-Za-z0-9_]{0,10}", ".*", 0..6),
            outputs in proptest::collection::btree_set("[a-z]{1,6}", 1..3),
        ) {
            let dir = StoreDir::default();
            let mut b = Derivation::builder(&dir, &name, "x86_64-linux", "/bin/sh");
            for a in &args { b = b.arg(a.clone()); }
            for (k, v) in &env {
                if !outputs.contains(k) { b = b.env(k.clone(), v.clone()); }
            }
            for o in &outputs { b = b.output(o.clone()); }
            let drv = b.build(|_| None).unwrap();
            let aterm = drv.to_aterm();
            let back = Derivation::parse_file(&dir, &drv.drv_path(), &aterm).unwrap();
            prop_assert_eq!(back.to_aterm(), aterm);
            prop_assert_eq!(back.drv_path(), drv.drv_path());
            prop_assert_eq!(back.outputs(), drv.outputs());
        }
    }

    const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/nix-vectors");

    /// The `.drv` files of real Nix, to mutate.
    pub(crate) fn seeds() -> Vec<Vec<u8>> {
        ["v1-noinputs", "v2-dependent", "v3-fod-flat", "v3-fod-recursive", "v4-depends-on-fod"]
            .iter()
            .map(|n| std::fs::read(format!("{VECTORS}/{n}.drv")).unwrap())
            .collect()
    }

    /// A real `.drv` with something spliced into one of its strings (an
    /// escape, a quote, a raw byte) or one byte replaced: inputs near
    /// valid ATerm, where parser and writer can disagree.
    pub(crate) fn mutated_aterm() -> impl Strategy<Value = Vec<u8>> {
        let splice = prop_oneof![
            Just(b"\\\"".to_vec()),
            Just(b"\\\\".to_vec()),
            Just(b"\\n".to_vec()),
            Just(b"\\x".to_vec()),
            Just(b"\"".to_vec()),
            Just(b"\n".to_vec()),
            proptest::collection::vec(any::<u8>(), 1..4),
        ];
        (0..5usize, any::<proptest::sample::Index>(), splice, any::<bool>()).prop_map(|(seed, at, splice, replace)| {
            let mut bytes = seeds().swap_remove(seed);
            // Inside a string: just after an opening quote.
            let quotes: Vec<usize> = bytes.iter().enumerate().filter(|(_, &b)| b == b'"').map(|(i, _)| i + 1).collect();
            let pos = quotes[at.index(quotes.len())];
            if replace {
                bytes[pos] = splice[0];
            } else {
                bytes.splice(pos..pos, splice);
            }
            bytes
        })
    }

    /// The parse ⇔ render contract of [`Derivation::parse`] for one input.
    pub(crate) fn check_aterm_round_trip(aterm: &[u8]) -> Result<(), TestCaseError> {
        let dir = StoreDir::default();
        let Ok(drv) = Derivation::parse(&dir, aterm, "x") else { return Ok(()) };
        let rendered = drv.to_aterm();
        let again = Derivation::parse(&dir, &rendered, "x");
        prop_assert_eq!(again.as_ref().ok(), Some(&drv), "rendered {:?}", String::from_utf8_lossy(&rendered));
        prop_assert_eq!(again.unwrap().to_aterm(), rendered);
        Ok(())
    }

    proptest! {
        #[test]
        fn parsed_derivations_render_to_what_parses_the_same(aterm in mutated_aterm()) {
            check_aterm_round_trip(&aterm)?;
        }
    }

    /// The `aterm-render-unescaped` report: a quote in the platform and in
    /// an input's output name. The writer does not escape those fields, so
    /// such a derivation is refused rather than accepted and written back as
    /// something else.
    #[test]
    fn fields_the_writer_cannot_escape_are_refused() {
        let fx = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/aterm");
        for name in ["platform-quote.drv", "outname-quote.drv"] {
            let aterm = std::fs::read(format!("{fx}/{name}")).unwrap();
            let err = Derivation::parse(&StoreDir::default(), &aterm, "x").unwrap_err();
            assert!(err.to_string().contains("cannot carry"), "{name}: {err}");
        }
        // Escapes where the writer escapes them stay accepted.
        let v1 = seeds().swap_remove(0);
        let escaped = String::from_utf8(v1).unwrap().replace("echo hello", "echo \\\"hello\\\"");
        let drv = Derivation::parse(&StoreDir::default(), escaped.as_bytes(), "x").unwrap();
        assert_eq!(drv.to_aterm(), escaped.as_bytes());
    }
}
