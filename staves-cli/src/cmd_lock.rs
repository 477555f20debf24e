//! `staves lock`: resolve the spec with Portage in the builder, without building, and write `staves.lock`.

use crate::progress::Progress;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Flags of `staves lock`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The spec to lock.
    #[arg(long, short = 'c', value_name = "PATH", default_value = "staves.toml")]
    config: PathBuf,
    /// The builder image: a Gentoo stage3 (or compatible).
    #[arg(long, value_name = "IMAGE", default_value = staves_core::DEFAULT_BUILDER_IMAGE, value_parser = crate::parse_image_reference)]
    builder: String,
    /// The image holding the Portage tree as a volume (like gentoo/portage).
    #[arg(long, value_name = "IMAGE", default_value = staves_core::DEFAULT_PORTAGE_IMAGE, value_parser = crate::parse_image_reference)]
    portage: String,
    /// Where to write the lock (default: staves.lock next to the spec).
    #[arg(long, short = 'o', value_name = "PATH")]
    output: Option<PathBuf>,
    /// Named volume mounted as the builder's binary package cache (not read by the resolution).
    #[arg(long, value_name = "VOLUME", default_value = staves_core::DEFAULT_BUILD_CACHE)]
    build_cache: String,
    /// Mount ~/.ssh read-only into the builder when it exists (the default), for private repositories.
    #[arg(long, overrides_with = "no_ssh")]
    ssh: bool,
    /// Do not mount ~/.ssh.
    #[arg(long, overrides_with = "ssh")]
    no_ssh: bool,
    /// Mount ~/.netrc read-only into the builder when it exists (the default).
    #[arg(long, overrides_with = "no_netrc")]
    netrc: bool,
    /// Do not mount ~/.netrc.
    #[arg(long, overrides_with = "netrc")]
    no_netrc: bool,
    /// The Docker engine address (default: DOCKER_HOST, else the local socket).
    #[arg(long, env = "DOCKER_HOST")]
    docker_host: Option<String>,
    /// Print only errors and the result.
    #[arg(long, short = 'q', conflicts_with = "verbose")]
    quiet: bool,
    /// Print every line the builder prints.
    #[arg(long, short = 'v')]
    verbose: bool,
    /// Output format of the result.
    #[arg(long, default_value = "text")]
    format: crate::Format,
}

/// Run `staves lock`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let spec = crate::load_spec(&args.config)?;
    let builder = staves_core::DockerBuilder::new(args.builder)?
        .portage_image(args.portage)
        .build_cache(args.build_cache)
        .ssh(args.ssh || (!args.no_ssh && staves_core::defaults::SSH))
        .netrc(args.netrc || (!args.no_netrc && staves_core::defaults::NETRC))
        .docker_host(args.docker_host)
        .cancel_on_ctrl_c(true);
    let progress = Arc::new(Progress::new(args.quiet, args.verbose));
    let handler = progress.clone();
    let options =
        staves_core::BuildOptions::default().with_events(Arc::new(move |e| handler.event(e)));
    let request = staves_core::LockRequest::new().output(args.output);
    let result = staves_core::lock_spec(&spec, &builder, &request, &options);
    progress.finish();
    let outcome = result?;
    match args.format {
        crate::Format::Json => println!("{}", serde_json::to_string_pretty(&outcome)?),
        crate::Format::Text => {
            for change in &outcome.changes {
                println!("{change}");
            }
            if outcome.changes.is_empty() {
                println!("no entry changed");
            }
            println!(
                "wrote {}: {} rootfs packages, {} build dependencies",
                outcome.path.display(),
                outcome.lock.rootfs.len(),
                outcome.lock.builder.len()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
