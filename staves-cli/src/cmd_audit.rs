//! `staves audit`: check an SBOM written earlier against the advisories of a Portage snapshot.
//!
//! Exit status: 0 when no advisory applies, 6 when any does, 8 when a package could not be checked (unless
//! `--allow-unchecked`), and the usual codes for errors.

use staves_core::audit::{AdvisorySource, audit};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Flags of `staves audit`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The SBOM to check (SPDX or CycloneDX JSON, as `staves build --sbom` writes it).
    #[arg(long, value_name = "FILE")]
    sbom: PathBuf,
    /// The Portage snapshot image whose `metadata/glsa/` advisories to check against.
    #[arg(long, value_name = "IMAGE", default_value = staves_core::DEFAULT_PORTAGE_IMAGE, conflicts_with = "glsa_dir")]
    portage: String,
    /// Check against a directory of `glsa-*.xml` files instead of a snapshot image.
    #[arg(long, value_name = "DIR")]
    glsa_dir: Option<PathBuf>,
    /// Docker engine address (default: DOCKER_HOST, else the local socket).
    #[arg(long, value_name = "URL")]
    docker_host: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = crate::Format::Text)]
    format: crate::Format,
    /// Exit 0 even when some packages of the SBOM could not be checked (they are still reported as warnings).
    #[arg(long)]
    allow_unchecked: bool,
}

/// Run `staves audit`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let source = match args.glsa_dir {
        Some(dir) => AdvisorySource::Directory(dir),
        None => AdvisorySource::PortageImage {
            image: args.portage,
            docker_host: args.docker_host,
        },
    };
    let report = audit(&args.sbom, &source)?;
    let mut stdout = std::io::stdout().lock();
    match args.format {
        crate::Format::Text => write!(stdout, "{}", report.render_text())?,
        crate::Format::Json => writeln!(stdout, "{}", serde_json::to_string_pretty(&report)?)?,
    }
    Ok(ExitCode::from(report.exit_code(args.allow_unchecked)))
}
