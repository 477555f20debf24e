//! `staves schema`: the JSON Schema of `staves.toml`, for editors and validators.
//!
//! Point taplo / Even Better TOML at it (e.g. `#:schema ./staves.schema.json` on the first line of a spec, or a
//! `[[rule]]` in `.taplo.toml`) to get completion and checks while editing.

use std::io::Write;
use std::process::ExitCode;

/// Flags of `staves schema`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `staves schema`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", staves_core::ImageSpec::json_schema())?;
    Ok(ExitCode::SUCCESS)
}
