//! `staves build`.

use std::process::ExitCode;

/// Flags of `staves build`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `staves build`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("staves build is not implemented yet")
}
