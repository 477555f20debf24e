//! `staves assemble`.

use std::process::ExitCode;

/// Flags of `staves assemble`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `staves assemble`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("staves assemble is not implemented yet")
}
