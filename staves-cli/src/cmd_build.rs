//! `staves build`: spec → plan → builder container → image.

use crate::progress::Progress;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Flags of `staves build`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The spec to build.
    #[arg(long, short = 'c', default_value = "staves.toml")]
    config: PathBuf,
    /// The builder image: a Gentoo stage3 (or compatible).
    #[arg(long, default_value = staves_core::DEFAULT_BUILDER_IMAGE, value_parser = crate::parse_image_reference)]
    builder: String,
    /// The image holding the Portage tree as a volume (like gentoo/portage).
    #[arg(long, default_value = staves_core::DEFAULT_PORTAGE_IMAGE, value_parser = crate::parse_image_reference)]
    portage: String,
    /// Named volume that keeps binary packages between builds.
    #[arg(long, default_value = staves_core::DEFAULT_BUILD_CACHE)]
    build_cache: String,
    /// Copy libstdc++ into the image, whatever the spec says.
    #[arg(long)]
    stdlib: bool,
    /// Mount ~/.ssh read-only into the builder when it exists (the default).
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
    /// LANG inside the builder.
    #[arg(long, default_value = staves_core::defaults::BUILDER_LOCALE)]
    locale: String,
    /// Also write the plain rootfs tar here (as the original's staves_root.tar).
    #[arg(long)]
    image_path: Option<PathBuf>,
    /// The image tag, instead of the spec's `version`.
    #[arg(long = "version", value_parser = crate::parse_tag)]
    tag: Option<String>,
    /// Where to write the image: docker, oci:DIR, oci-archive:FILE, docker-archive:FILE, rootfs:FILE,
    /// docker://HOST[:PORT]/REPO[:TAG] (repeatable).
    #[arg(long = "output", short = 'o')]
    outputs: Vec<staves_core::Output>,
    /// Layer compression.
    #[arg(long, default_value_t = staves_core::defaults::COMPRESSION)]
    compression: staves_core::Compression,
    /// Parallel jobs for emerge and make (default: number of CPUs).
    #[arg(long, short = 'j')]
    jobs: Option<usize>,
    /// Start no new emerge job while the load average is at least this (default: no limit).
    #[arg(long, value_name = "LOAD", value_parser = crate::parse_load_average)]
    load_average: Option<f64>,
    /// The Docker engine address (default: DOCKER_HOST, else the local socket).
    #[arg(long, env = "DOCKER_HOST")]
    docker_host: Option<String>,
    #[command(flatten)]
    registry: crate::registry_args::RegistryArgs,
    /// Fetch binary packages from this binhost (a Packages index and binary packages over http, https, ftp or
    /// file) before building; what it lacks is built from source. Repeatable, first one preferred.
    #[arg(long = "binhost", value_name = "URL", value_parser = parse_binhost)]
    binhosts: Vec<String>,
    /// Attach the builder container to this Docker network (e.g. where the binhost runs).
    #[arg(long, value_name = "NAME")]
    network: Option<String>,
    /// Print only errors and the result.
    #[arg(long, short = 'q', conflicts_with = "verbose")]
    quiet: bool,
    /// Print every line the builder prints.
    #[arg(long, short = 'v')]
    verbose: bool,
    /// Output format of the final report.
    #[arg(long, default_value = "text")]
    format: crate::Format,
}

/// Run `staves build`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut spec = crate::load_spec(&args.config)?;
    if args.stdlib {
        spec.stdlib = true;
    }
    if let Some(tag) = args.tag {
        spec.version = tag;
    }
    let mut outputs = args.outputs;
    if outputs.is_empty() {
        outputs.push(staves_core::Output::Docker);
    }
    if let Some(path) = args.image_path {
        outputs.push(staves_core::Output::Rootfs(path));
    }
    let builder = staves_core::DockerBuilder::new(args.builder)?
        .portage_image(args.portage)
        .build_cache(args.build_cache)
        .ssh(args.ssh || (!args.no_ssh && staves_core::defaults::SSH))
        .netrc(args.netrc || (!args.no_netrc && staves_core::defaults::NETRC))
        .locale(args.locale)
        .docker_host(args.docker_host.clone())
        .network(args.network)
        .cancel_on_ctrl_c(true);
    let progress = Arc::new(Progress::new(args.quiet, args.verbose));
    let handler = progress.clone();
    let options =
        staves_core::BuildOptions::default().with_events(Arc::new(move |e| handler.event(e)));
    let request = staves_core::BuildRequest::new(outputs)
        .jobs(args.jobs)
        .load_average(args.load_average)
        .compression(args.compression)
        .docker_host(args.docker_host)
        .registry(args.registry.options())
        .binhosts(args.binhosts);
    let result = staves_core::build_image(&spec, &builder, &request, &options);
    progress.finish();
    let outcome = result?;
    match args.format {
        crate::Format::Json => println!("{}", serde_json::to_string_pretty(&outcome)?),
        crate::Format::Text => {
            let report = &outcome.report;
            if !args.quiet {
                eprintln!(
                    "{} packages in the image; emerge built {} from source and installed {} from binary \
                     packages; {:.1}s in all",
                    report.packages.len(),
                    report.built_from_source.len(),
                    report.installed_from_binary.len(),
                    report.total_duration.as_secs_f64()
                );
                if !report.fetched_from_binhost.is_empty() {
                    eprintln!(
                        "fetched {} binary packages from the binhost",
                        report.fetched_from_binhost.len()
                    );
                }
                for output in &outcome.image.outputs {
                    match crate::registry_args::describe_push(output) {
                        Some(line) => eprintln!("{line}"),
                        None => eprintln!("wrote {} ({} bytes)", output.output, output.size),
                    }
                }
            }
            println!("{}", outcome.image.digest);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// clap's parser for `--binhost`: a URL Portage can fetch from.
fn parse_binhost(text: &str) -> Result<String, String> {
    staves_core::binhost::check_binhost_url(text)
        .map(|()| text.to_owned())
        .map_err(|e| e.to_string())
}
