//! Flags for the binhost downloads of a build, shared by `build` and `plan` (the plan shows the fetch step).

use std::time::Duration;

/// The idle timeout and total deadline of each binhost download.
#[derive(Debug, Clone, clap::Args)]
pub struct BinhostTimeoutArgs {
    /// Fail a binhost download that receives no byte for SECONDS (what it would have given is built from source).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = staves_core::defaults::BINHOST_IDLE_TIMEOUT.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    binhost_idle_timeout: u64,
    /// Fail a binhost download that takes longer than SECONDS in all.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = staves_core::defaults::BINHOST_TIMEOUT.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    binhost_timeout: u64,
}

impl BinhostTimeoutArgs {
    /// The idle timeout.
    pub fn idle(&self) -> Duration {
        Duration::from_secs(self.binhost_idle_timeout)
    }

    /// The total deadline.
    pub fn total(&self) -> Duration {
        Duration::from_secs(self.binhost_timeout)
    }
}
