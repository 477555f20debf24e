//! `staves validate`.
//!
//! Text mode prints every diagnostic rustc-style to stdout, followed by a summary line. JSON mode prints one
//! JSON array of objects (`severity`, `line`, `column`, `message`, `path`, `key`) to stdout. Exit status: 0 when
//! there are no errors (warnings alone are fine), 1 when there are errors or the file cannot be read.

use staves_core::SpecReport;
use std::path::PathBuf;
use std::process::ExitCode;

/// Flags of `staves validate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The spec to check.
    #[arg(long, value_name = "PATH", default_value = "staves.toml")]
    config: PathBuf,
    /// How to print diagnostics.
    #[arg(long, value_enum, default_value_t = crate::Format::Text)]
    format: crate::Format,
}

/// Run `staves validate`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let report = SpecReport::check(&args.config).map_err(staves_core::Error::from)?;
    match args.format {
        crate::Format::Text => print!("{}", report.render_text()),
        crate::Format::Json => println!("{}", report.to_json()),
    }
    Ok(if report.has_errors() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
