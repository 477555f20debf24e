//! `staves plan`.

use std::process::ExitCode;

/// Flags of `staves plan`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `staves plan`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("staves plan is not implemented yet")
}
