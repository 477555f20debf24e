//! `staves assemble`.

use anyhow::Context;
use staves_core::{Compression, ImageSpec, ImageWriter, Output};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// How results are printed.
#[derive(Debug, Clone, Copy, Default, clap::ValueEnum)]
pub enum Format {
    /// The image digest on one line.
    #[default]
    Text,
    /// A JSON object: digests, sizes, and every destination written.
    Json,
}

/// Flags of `staves assemble`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The rootfs: a directory, a tar file, or `-` for a tar stream on stdin (entries in `tar --sort=name` order).
    #[arg(long, value_name = "PATH")]
    rootfs: PathBuf,
    /// The spec that gives the name, tag, entrypoint, labels and `[image]` settings.
    #[arg(long, value_name = "PATH", default_value = "staves.toml")]
    config: PathBuf,
    /// Where to write the image: docker, oci:DIR, oci-archive:FILE, docker-archive:FILE, rootfs:FILE. Repeatable.
    #[arg(long = "output", value_name = "DEST", default_value = "docker")]
    outputs: Vec<Output>,
    /// Layer compression.
    #[arg(long, value_name = "gzip|zstd", default_value = "gzip")]
    compression: Compression,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Docker engine address (default: DOCKER_HOST, else the local socket).
    #[arg(long, value_name = "URL")]
    docker_host: Option<String>,
}

/// Run `staves assemble`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let spec = load_spec(&args.config)?;
    let writer = ImageWriter::new(&spec)
        .compression(args.compression)
        .docker_host(args.docker_host);
    let report = if args.rootfs == Path::new("-") {
        writer.write_tar(std::io::stdin().lock(), &args.outputs)?
    } else if args.rootfs.is_dir() {
        writer.write_dir(&args.rootfs, &args.outputs)?
    } else {
        writer.write_tar_file(&args.rootfs, &args.outputs)?
    };
    let mut stdout = std::io::stdout().lock();
    match args.format {
        Format::Text => writeln!(stdout, "{}", report.digest)?,
        Format::Json => writeln!(stdout, "{}", serde_json::to_string_pretty(&report)?)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Load the spec. Temporary: reads the fields `assemble` needs through a local mirror until the spec parser lands
/// (then this becomes `ImageSpec::load(path)`).
fn load_spec(path: &Path) -> anyhow::Result<ImageSpec> {
    #[derive(serde::Deserialize)]
    struct Mirror {
        name: String,
        #[serde(default)]
        version: Option<String>,
        #[serde(default)]
        command: Vec<String>,
        #[serde(default)]
        annotations: std::collections::BTreeMap<String, String>,
        #[serde(default)]
        image: staves_core::ImageConfig,
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the spec {}", path.display()))?;
    let mirror: Mirror =
        toml::from_str(&text).with_context(|| format!("parsing the spec {}", path.display()))?;
    let mut spec = ImageSpec::new(mirror.name);
    if let Some(version) = mirror.version {
        spec.version = version;
    }
    spec.command = mirror.command;
    spec.annotations = mirror.annotations;
    spec.image = mirror.image;
    Ok(spec)
}
