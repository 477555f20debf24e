//! `staves inspect`: the size report of an image, later, from the SBOM it carries.

use std::io::Write;
use std::process::ExitCode;

/// Flags of `staves inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image: a name on the engine (`hello:1.0`), `oci:DIR` or `oci-archive:FILE`.
    #[arg(value_name = "IMAGE_OR_ARCHIVE")]
    target: String,
    /// How many packages the text report lists (`--format json` lists them all).
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Docker engine address (default: DOCKER_HOST, else the local socket).
    #[arg(long, env = "DOCKER_HOST", value_name = "URL")]
    docker_host: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = crate::Format::Text)]
    format: crate::Format,
}

/// Run `staves inspect`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = staves_core::sbom::store_dir();
    let found = staves_core::find_sbom(&args.target, args.docker_host, store.as_deref())?;
    let sbom = &found.sbom;
    let size = sbom.size_report();
    let mut stdout = std::io::stdout().lock();
    match args.format {
        crate::Format::Text => {
            writeln!(
                stdout,
                "{}:{} ({}); SBOM from the {}",
                sbom.name, sbom.tag, sbom.manifest_digest, found.source
            )?;
            write!(stdout, "{}", size.render_text(args.top))?;
        }
        crate::Format::Json => {
            let value = serde_json::json!({
                "image": format!("{}:{}", sbom.name, sbom.tag),
                "manifest_digest": sbom.manifest_digest,
                "sbom_source": found.source,
                "builder_image": sbom.builder_image,
                "builder_image_id": sbom.builder_image_id,
                "portage_image": sbom.portage_image,
                "portage_image_id": sbom.portage_image_id,
                "portage_timestamp": sbom.portage_timestamp,
                "size": size,
            });
            writeln!(stdout, "{}", serde_json::to_string_pretty(&value)?)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
