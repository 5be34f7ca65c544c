//! Fuzzing targets for every decoder of peapod's API server, on stable Rust.
//!
//! Owns: the targets (`tests/fuzz/*.rs`, one binary): JSON bodies (the typed decode of
//! every kind's strategy, strict and duplicate-key handling), YAML bodies, protobuf bodies
//! (envelope and transcoding, watch frames), patch bodies (JSON patch, merge patch,
//! strategic merge patch with the served schema), label and field selectors, query
//! parameters (routing, `Query`, resource versions, limits, continue tokens, timeouts), and
//! the whole request stack in-process on a SQLite store. Here: what they share — the run
//! loop with its case count and seed ([`check`]), the seeds (real objects and patches,
//! [`seeds`]), byte-level mutation ([`mutate`]) and structure-aware generators
//! ([`gen`]).
//!
//! Properties beyond "no panic": decoders return errors as values; what decodes, encodes and
//! decodes back to the same value (protobuf, selectors' string forms, the stored form of
//! every kind); the server answers bad input with a 4xx `Status` carrying a message, never
//! a 500, and keeps answering.
//!
//! Does not own: the decoders (they live in `api`, `protobuf` and `apiserver`; what the
//! targets need from the API server's private parts is its `fuzzing` module).
//!
//! May depend on: api, apiserver, protobuf, store, proptest. Test-only: never published,
//! never linked into the binary.
//!
//! Running: `cargo test -p fuzz` runs every target briefly, with a fixed seed so `make test`
//! is repeatable (a few seconds each). By hand, `make fuzz` (`PEAPOD_FUZZ_CASES=100000
//! cargo test --profile fuzz -p fuzz -- --nocapture`: optimised, overflow checks kept) runs
//! longer with a fresh seed each time (printed; `PEAPOD_FUZZ_SEED=<n>` replays one), and
//! `-- <target>` picks one target.

pub mod gen;
pub mod mutate;
pub mod seeds;

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};

pub use proptest;

/// The seed of `make test` runs: fixed, so a run is repeatable and CI cannot turn red on an
/// input nobody has seen before; longer runs by hand draw a fresh one.
const DEFAULT_SEED: u64 = 0x137e_a90d;

/// How many cases a target runs: `default` (sized for a few seconds of a debug build), or
/// `PEAPOD_FUZZ_CASES` for every target.
pub fn cases(default: u32) -> u32 {
    std::env::var("PEAPOD_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The seed of this run: `PEAPOD_FUZZ_SEED`, else the fixed one for the default run and a
/// random one when `PEAPOD_FUZZ_CASES` asks for a longer run.
fn seed() -> u64 {
    if let Some(seed) = std::env::var("PEAPOD_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return seed;
    }
    if std::env::var_os("PEAPOD_FUZZ_CASES").is_some() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        return nanos ^ u64::from(std::process::id());
    }
    DEFAULT_SEED
}

/// Runs `test` on `cases(default_cases)` inputs drawn from `strategy`. A failing input
/// (an `Err`, or a panic) is shrunk to a smallest one, which the panic message shows with
/// the seed that finds it again.
pub fn check<S>(
    target: &str,
    default_cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S: Strategy,
    S::Value: std::fmt::Debug,
{
    let seed = seed();
    let config = Config {
        cases: cases(default_cases),
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        max_shrink_iters: 512,
        max_global_rejects: u32::MAX,
        ..Config::default()
    };
    let cases = config.cases;
    let started = std::time::Instant::now();
    let mut runner = TestRunner::new(config);
    match runner.run(&strategy, test) {
        Ok(()) => eprintln!(
            "fuzz {target}: {cases} cases in {:.1} s (seed {seed})",
            started.elapsed().as_secs_f64()
        ),
        Err(TestError::Fail(why, input)) => {
            panic!("fuzz {target} (PEAPOD_FUZZ_SEED={seed}): {why}\nsmallest input: {input:#?}")
        }
        Err(TestError::Abort(why)) => panic!("fuzz {target} (seed {seed}) aborted: {why}"),
    }
}

/// `Err` unless `cond`, with a message (the targets' assertion).
pub fn ensure(cond: bool, what: impl FnOnce() -> String) -> Result<(), TestCaseError> {
    if cond {
        Ok(())
    } else {
        Err(TestCaseError::fail(what()))
    }
}
