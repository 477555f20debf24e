//! `staves validate`.

use std::process::ExitCode;

/// Flags of `staves validate`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `staves validate`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("staves validate is not implemented yet")
}
