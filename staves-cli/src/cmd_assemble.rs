//! `staves assemble`.

use staves_core::{Compression, ImageWriter, Output};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Flags of `staves assemble`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The rootfs: a directory, a tar file, or `-` for a tar stream on stdin (entries in `tar --sort=name` order).
    #[arg(long, value_name = "PATH")]
    rootfs: PathBuf,
    /// The spec that gives the name, tag, entrypoint, labels and `[image]` settings.
    #[arg(long, value_name = "PATH", default_value = "staves.toml")]
    config: PathBuf,
    /// Where to write the image: docker, oci:DIR, oci-archive:FILE, docker-archive:FILE, rootfs:FILE,
    /// docker://HOST[:PORT]/REPO[:TAG]. Repeatable.
    #[arg(long = "output", value_name = "DEST", default_value = "docker")]
    outputs: Vec<Output>,
    /// Layer compression.
    #[arg(long, value_name = "gzip|zstd", default_value = "gzip")]
    compression: Compression,
    /// Output format.
    #[arg(long, value_enum, default_value_t = crate::Format::Text)]
    format: crate::Format,
    /// Docker engine address (default: DOCKER_HOST, else the local socket).
    #[arg(long, value_name = "URL")]
    docker_host: Option<String>,
    #[command(flatten)]
    registry: crate::registry_args::RegistryArgs,
}

/// Run `staves assemble`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let spec = crate::load_spec(&args.config)?;
    let cancel = staves_core::CancelToken::new();
    let dirs = crate::cmd_build::temp_file_dirs(&args.outputs).join(", ");
    // The first signal stops the write (a push too) and removes what it made; a second one exits at once.
    let signals = crate::signals::cancel_on_signals(
        cancel.clone(),
        |name| {
            eprintln!(
                "received {name}: stopping and removing what was written so far (send it again to exit at once)"
            );
        },
        move |name| {
            eprintln!(
                "received {name} again: exiting at once. Left behind: any .staves-* temporary files in {dirs}, \
                 and for the docker output the untagged image it was loading or had loaded (its ID is the image's \
                 config digest; `docker image ls --filter dangling=true` lists it)"
            );
            4
        },
    )?;
    let writer = ImageWriter::new(&spec)
        .compression(args.compression)
        .docker_host(args.docker_host)
        .registry(args.registry.options())
        .cancel(cancel);
    let report = if args.rootfs == Path::new("-") {
        writer.write_tar(std::io::stdin().lock(), &args.outputs)
    } else {
        writer.write_path(&args.rootfs, &args.outputs)
    };
    // The write is over either way: a signal from here on ends the process as usual.
    drop(signals);
    let report = report?;
    let mut stdout = std::io::stdout().lock();
    match args.format {
        crate::Format::Text => {
            for line in report
                .outputs
                .iter()
                .filter_map(crate::registry_args::describe_push)
            {
                eprintln!("{line}");
            }
            writeln!(stdout, "{}", report.digest)?
        }
        crate::Format::Json => writeln!(stdout, "{}", serde_json::to_string_pretty(&report)?)?,
    }
    Ok(ExitCode::SUCCESS)
}
