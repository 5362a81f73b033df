//! The time-boxed fuzz runner ([`fuzz`]; the `fuzz` feature makes it
//! available to the other crates' fuzz targets), and the fuzz targets of
//! drv-formats, one per parser: each runs the parser's
//! property test (anything parsed renders to bytes that parse to the same
//! value, or it is refused; nothing panics) on fresh random inputs for
//! `DRV_FUZZ_SECONDS` seconds. Without that variable they return at once,
//! so `cargo test` stays fast; `bench/fuzz.sh MINUTES` runs them.
//! The inputs are near-valid by construction (real files and values with
//! bytes changed, spliced or cut), where parsers and writers disagree.

use std::time::{Duration, Instant};

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Run `check` on inputs from `strategy` until the time budget is spent;
/// a failure panics with proptest's shrunk input.
pub fn fuzz<S: Strategy>(name: &str, strategy: S, check: impl Fn(S::Value) -> Result<(), TestCaseError>) {
    let Some(seconds) = std::env::var("DRV_FUZZ_SECONDS").ok().and_then(|s| s.parse::<u64>().ok()) else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut inputs = 0u64;
    while Instant::now() < deadline {
        // Each round draws a new seed from the operating system.
        let config = Config { cases: 500, failure_persistence: None, ..Config::default() };
        let mut runner = TestRunner::new(config);
        if let Err(e) = runner.run(&strategy, &check) {
            panic!("fuzz {name}: failed after {inputs} inputs: {e}");
        }
        inputs += 500;
    }
    eprintln!("fuzz {name}: {inputs} inputs in {seconds} s, no failure");
}

#[test]
fn fuzz_narinfo() {
    use crate::narinfo::proptests::{check_narinfo_round_trip, narinfo_text};
    fuzz("narinfo", narinfo_text(), |t| check_narinfo_round_trip(&t));
}

#[test]
fn fuzz_aterm() {
    use crate::derivation::proptests::{check_aterm_round_trip, mutated_aterm};
    fuzz("aterm", mutated_aterm(), |t| check_aterm_round_trip(&t));
}

#[test]
fn fuzz_nar() {
    use crate::nar::proptests::{check_nar_round_trip, mutated_nar};
    fuzz("nar", mutated_nar(), |n| check_nar_round_trip(&n));
}

#[test]
fn fuzz_store_path() {
    use crate::path::tests::{check_store_path_round_trip, mutated_store_path};
    fuzz("store-path", mutated_store_path(), |t| check_store_path_round_trip(&t));
}
