//! Seeds for randomised tests: replayable through `SHOAL_TEST_SEED`, printed up front.

/// The test seed: `SHOAL_TEST_SEED` or random; printed so a failure can be replayed.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("SHOAL_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("{test}: seed {seed} (SHOAL_TEST_SEED={seed} to replay)");
    seed
}

/// Unwrapping that names the seed in the panic message.
pub trait OrPanic<T> {
    /// The value, or a panic naming `seed` and the error chain.
    fn or_panic(self, seed: u64) -> T;
}

impl<T, E: Into<anyhow::Error>> OrPanic<T> for Result<T, E> {
    #[track_caller]
    fn or_panic(self, seed: u64) -> T {
        match self {
            Ok(v) => v,
            Err(e) => panic!("seed {seed}: {:#}", e.into()),
        }
    }
}
