//! `staves cache`: the build cache volume. `export` writes it as a binary package host (binhost).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Subcommands of `staves cache`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Write the volume's binary packages and a Packages index into DIR: a binhost any static web server can
    /// serve (then build elsewhere with --binhost URL).
    Export(ExportArgs),
}

/// Flags of `staves cache export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The directory to write (new, empty, or an earlier export, which is replaced).
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// The build cache volume to export.
    #[arg(long, default_value = staves_core::DEFAULT_BUILD_CACHE)]
    build_cache: String,
    /// The image whose Portage writes the Packages index (the builder image of the builds).
    #[arg(long, default_value = staves_core::DEFAULT_BUILDER_IMAGE)]
    builder: String,
    /// The Docker engine address (default: DOCKER_HOST, else the local socket).
    #[arg(long, env = "DOCKER_HOST")]
    docker_host: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = crate::Format::Text)]
    format: crate::Format,
}

/// Run `staves cache …`.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Export(args) => export(args),
    }
}

fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let export = staves_core::export_binhost(
        &args.build_cache,
        &args.dir,
        &args.builder,
        args.docker_host.as_deref(),
    )?;
    let mut stdout = std::io::stdout().lock();
    match args.format {
        crate::Format::Json => writeln!(stdout, "{}", serde_json::to_string_pretty(&export)?)?,
        crate::Format::Text => writeln!(
            stdout,
            "exported {} binary packages ({} files, {} bytes) from volume {} into {}",
            export.packages.len(),
            export.files,
            export.bytes,
            args.build_cache,
            export.dir.display()
        )?,
    }
    Ok(ExitCode::SUCCESS)
}
