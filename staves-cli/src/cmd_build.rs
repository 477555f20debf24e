//! `staves build`: spec → plan → builder container → image.

use crate::progress::Progress;
use staves_core::BuildEvent;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};

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
    /// Merge every package through emerge, without Staves' direct merge of binary packages that define no
    /// install-time phase (the image is the same; this is slower, and there in case the direct merge is suspected).
    #[arg(long)]
    portage_merge: bool,
    /// The Docker engine address (default: DOCKER_HOST, else the local socket).
    #[arg(long, env = "DOCKER_HOST")]
    docker_host: Option<String>,
    #[command(flatten)]
    registry: crate::registry_args::RegistryArgs,
    /// Fetch binary packages from this binhost (a Packages index and binary packages over http, https, ftp or
    /// file) before building; what it lacks is built from source. Repeatable, first one preferred.
    #[arg(long = "binhost", value_name = "URL", value_parser = parse_binhost)]
    binhosts: Vec<String>,
    #[command(flatten)]
    binhost_timeouts: crate::binhost_args::BinhostTimeoutArgs,
    /// Attach the builder container to this Docker network (e.g. where the binhost runs).
    #[arg(long, value_name = "NAME")]
    network: Option<String>,
    /// Print only errors and the result.
    #[arg(long, short = 'q', conflicts_with = "verbose")]
    quiet: bool,
    /// Print every line the builder prints.
    #[arg(long, short = 'v')]
    verbose: bool,
    /// Refuse to build unless staves.lock exists and matches the spec and Portage's resolution (never write it).
    #[arg(long)]
    locked: bool,
    /// As --locked, and do not sync repositories (they must be in the builder at the locked commit).
    #[arg(long)]
    frozen: bool,
    /// Output format of the final report (on stdout).
    #[arg(long, default_value = "text")]
    format: crate::Format,
    /// Format of the progress log on stderr: text, or one JSON event per line (`{"kind": "step-started", …}`).
    #[arg(long, value_enum, default_value_t = crate::Format::Text)]
    log_format: crate::Format,
    /// The local image store (default: $XDG_CACHE_HOME/staves, else ~/.cache/staves).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Build even when the local image store has the image of an unchanged spec.
    #[arg(long)]
    rebuild: bool,
    /// Reuse a stored image of a spec with [[repositories]] without syncing them (they are assumed unchanged).
    #[arg(long)]
    offline: bool,
    /// Also write the image's SBOM to this file (written only when the whole build succeeds).
    #[arg(long, value_name = "PATH")]
    sbom: Option<PathBuf>,
    /// The format of --sbom: spdx-json (SPDX 2.3) or cyclonedx-json (CycloneDX 1.5).
    #[arg(long, value_name = "FORMAT", default_value = "spdx-json", value_parser = parse_sbom_format, requires = "sbom")]
    sbom_format: staves_core::sbom::SbomFormat,
    /// Fail (exit code 6) before tagging, writing or pushing anything when a security advisory (GLSA) of the
    /// Portage snapshot applies to an installed package.
    #[arg(long)]
    deny_advisories: bool,
}

/// clap's parser for `--sbom-format`.
fn parse_sbom_format(text: &str) -> Result<staves_core::sbom::SbomFormat, String> {
    text.parse()
}

/// Where progress goes: the terminal (spinner or plain lines), or one JSON object per line on stderr.
enum Reporter {
    Text(Progress),
    Json,
}

impl Reporter {
    fn event(&self, event: &BuildEvent) {
        match self {
            Reporter::Text(progress) => progress.event(event),
            Reporter::Json => {
                if let Ok(line) = serde_json::to_string(event) {
                    let mut stderr = std::io::stderr().lock();
                    let _ = writeln!(stderr, "{line}");
                }
            }
        }
    }

    /// A message of the command itself (signals), as a line or as `{"kind": KIND, "message": …}`.
    fn note(&self, kind: &str, message: &str) {
        match self {
            Reporter::Text(progress) => progress.message(message),
            Reporter::Json => json_line(&serde_json::json!({"kind": kind, "message": message})),
        }
    }

    fn finish(&self) {
        if let Reporter::Text(progress) = self {
            progress.finish();
        }
    }
}

fn json_line(value: &serde_json::Value) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{value}");
}

/// What the signal handler needs to say what a build left behind.
#[derive(Default)]
struct BuildState {
    build_id: Option<String>,
    /// The image ID of the `docker` output once its load began (it is untagged until the commit).
    loading: Option<String>,
    signal: Option<String>,
    /// The build returned successfully: its outputs are committed and nothing of it is left.
    done: bool,
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
    let output_dirs = temp_file_dirs(&outputs);
    // An explicit --cache-dir that can never hold a store is a usage error, said before any container exists. The
    // default store is only a cache: one that cannot be used is said, and the build goes on without it.
    let (store, store_warning) =
        match staves_core::store::ImageStore::open(args.cache_dir.as_deref()) {
            Ok(store) => (Some(store), None),
            Err(err) if args.cache_dir.is_some() => {
                return Err(crate::UsageError(format!("--cache-dir: {err}")).into());
            }
            Err(err) => (
                None,
                Some(BuildEvent::Warning {
                    message: format!("{err}\n  building without the local image store"),
                }),
            ),
        };
    let builder = staves_core::DockerBuilder::new(args.builder)?
        .portage_image(args.portage)
        .build_cache(args.build_cache)
        .ssh(args.ssh || (!args.no_ssh && staves_core::defaults::SSH))
        .netrc(args.netrc || (!args.no_netrc && staves_core::defaults::NETRC))
        .locale(args.locale)
        .docker_host(args.docker_host)
        .network(args.network);
    let reporter = Arc::new(match args.log_format {
        crate::Format::Text => Reporter::Text(Progress::new(args.quiet, args.verbose)),
        crate::Format::Json => Reporter::Json,
    });
    if let Some(warning) = &store_warning {
        reporter.event(warning);
    }
    let state = Arc::new(Mutex::new(BuildState::default()));
    let (handler, handler_state) = (reporter.clone(), state.clone());
    let cancel = staves_core::CancelToken::new();
    let options = staves_core::BuildOptions::default()
        .with_cancel(cancel.clone())
        .with_events(Arc::new(move |e: &BuildEvent| {
            match e {
                BuildEvent::Started { build_id } => {
                    lock(&handler_state).build_id = Some(build_id.clone());
                }
                BuildEvent::Loading { image_id } => {
                    lock(&handler_state).loading = Some(image_id.clone());
                }
                _ => {}
            }
            handler.event(e);
        }));
    let (first, second) = (reporter.clone(), reporter.clone());
    let (first_state, second_state) = (state.clone(), state.clone());
    let signals = crate::signals::cancel_on_signals(
        cancel,
        move |name| {
            lock(&first_state).signal = Some(name.to_owned());
            first.note(
                "signal",
                &format!(
                    "received {name}: stopping the build and removing its containers \
                     (send it again to exit at once)"
                ),
            );
        },
        move |name| {
            let (build_id, loading, done) = {
                let state = lock(&second_state);
                (state.build_id.clone(), state.loading.clone(), state.done)
            };
            if done {
                second.note(
                    "signal",
                    &format!("received {name} again: exiting at once; the build had completed"),
                );
                second.finish();
                return 0;
            }
            let resources = match build_id {
                Some(id) => format!(
                    "the containers and volumes of build {id} (label {}={id})",
                    staves_core::BUILD_LABEL
                ),
                None => "any container or volume the build had created".to_owned(),
            };
            let image = match loading {
                Some(id) => format!(
                    ", the untagged image {id} loaded for the docker output unless it was tagged or removed \
                     already (`docker image rm {id}`)"
                ),
                None => String::new(),
            };
            second.note(
                "signal",
                &format!(
                    "received {name} again: exiting at once. Left behind: {resources}, any .staves-* \
                     temporary files in {}{image}; `staves prune` removes them all",
                    output_dirs.join(", ")
                ),
            );
            second.finish();
            4
        },
    )?;
    let request = staves_core::BuildRequest::new(outputs)
        .jobs(args.jobs)
        .load_average(args.load_average)
        .direct_merge(!args.portage_merge)
        .compression(args.compression)
        .lock(staves_core::LockOptions::new(if args.frozen {
            staves_core::LockMode::Frozen
        } else if args.locked {
            staves_core::LockMode::Locked
        } else {
            staves_core::LockMode::Update
        }))
        .store(store)
        .rebuild(args.rebuild)
        .offline(args.offline)
        .registry(args.registry.options())
        .binhosts(args.binhosts)
        .binhost_timeouts(args.binhost_timeouts.idle(), args.binhost_timeouts.total())
        .sbom(args.sbom, args.sbom_format)
        .deny_advisories(args.deny_advisories);
    let result = staves_core::build_image(&spec, &builder, &request, &options);
    reporter.finish();
    let mut outcome = match (result, args.log_format) {
        (Ok(outcome), _) => {
            lock(&state).done = true;
            outcome
        }
        (Err(err), crate::Format::Json) => {
            let code = err.exit_code();
            json_line(&serde_json::json!({
                "kind": "error",
                "message": err.to_string(),
                "exit_code": code,
            }));
            return Ok(ExitCode::from(code));
        }
        (Err(err), crate::Format::Text) => return Err(err.into()),
    };
    let late_signal = || {
        if let Some(name) = lock(&state).signal.take() {
            reporter.note(
                "signal",
                &format!("{name} arrived after the image was committed: the build completed"),
            );
        }
    };
    late_signal();
    // The store this command could not open is a store warning of the build too.
    if let Some(BuildEvent::Warning { message }) = store_warning {
        outcome.store_warnings.insert(0, message);
    }
    // Advisories are warnings whatever the format (denied ones never get here: the build failed).
    if let Some(reason) = &outcome.report.advisories_unreadable {
        reporter.note(
            "warning",
            &format!(
                "warning: the snapshot's advisories could not be read, none was checked: {reason}"
            ),
        );
    }
    for finding in &outcome.advisories {
        match args.log_format {
            crate::Format::Text => eprintln!("warning: {finding}"),
            crate::Format::Json => json_line(&serde_json::json!({
                "kind": "warning",
                "message": finding.to_string(),
                "advisory": finding,
            })),
        }
    }
    match args.format {
        crate::Format::Json => println!("{}", serde_json::to_string_pretty(&outcome)?),
        crate::Format::Text => {
            let report = &outcome.report;
            if !args.quiet && args.log_format == crate::Format::Text {
                if !report.reaped.is_empty() {
                    eprintln!(
                        "removed {} container(s) and {} volume(s) left by earlier builds whose process is gone",
                        report.reaped.containers.len(),
                        report.reaped.volumes.len()
                    );
                }
                for step in report.steps.iter().filter(|s| s.skipped) {
                    eprintln!(
                        "skipped: {} ({})",
                        step.label,
                        step.reason.as_deref().unwrap_or("nothing to do")
                    );
                }
                if let Some(reused) = &outcome.reused {
                    eprintln!(
                        "unchanged: the image comes from the local image store ({}; {} packages); no container \
                         was created (--rebuild builds anyway)",
                        reused.reason,
                        report.packages.len()
                    );
                } else {
                    eprintln!(
                        "{} packages in the image; emerge built {} from source and installed {} from binary \
                     packages; {:.1}s in all",
                        report.packages.len(),
                        report.built_from_source.len(),
                        report.installed_from_binary.len(),
                        report.total_duration.as_secs_f64()
                    );
                    if let Some(binhost) = report.binhost_use {
                        eprintln!("{binhost}");
                    }
                }
                for output in &outcome.image.outputs {
                    match crate::registry_args::describe_push(output) {
                        Some(line) => eprintln!("{line}"),
                        None => eprintln!("wrote {} ({} bytes)", output.output, output.size),
                    }
                }
                if let Some(path) = &outcome.sbom_file {
                    eprintln!("wrote the SBOM to {}", path.display());
                }
                if let Some(size) = &outcome.size {
                    eprint!("{}", size.render_text(SIZE_REPORT_TOP));
                }
                let lock = &outcome.lock;
                if let (true, Some(path)) = (lock.locked, &lock.path) {
                    let what = if lock.written { "updated" } else { "unchanged" };
                    eprintln!("locked by {} ({what})", path.display());
                    for change in &lock.changes {
                        eprintln!("  {change}");
                    }
                    for pin in &lock.dropped {
                        eprintln!("  the spec no longer allows the pin {pin}: resolved again");
                    }
                }
            }
            println!("{}", outcome.image.digest);
        }
    }
    // A signal up to here still gets its answer; the build is done either way.
    drop(signals);
    late_signal();
    Ok(ExitCode::SUCCESS)
}

/// How many packages the text size report lists (`--format json` has them all).
const SIZE_REPORT_TOP: usize = 10;

/// clap's parser for `--binhost`: a URL Portage can fetch from.
fn parse_binhost(text: &str) -> Result<String, String> {
    staves_core::binhost::check_binhost_url(text)
        .map(|()| text.to_owned())
        .map_err(|e| e.to_string())
}

fn lock(state: &Mutex<BuildState>) -> std::sync::MutexGuard<'_, BuildState> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The directories where the image writer keeps its temporary files: next to each file output, else the
/// system's temporary directory.
pub(crate) fn temp_file_dirs(outputs: &[staves_core::Output]) -> Vec<String> {
    use staves_core::Output;
    let mut dirs: Vec<String> = outputs
        .iter()
        .filter_map(|o| match o {
            Output::OciDir(p)
            | Output::OciArchive(p)
            | Output::DockerArchive(p)
            | Output::Rootfs(p) => {
                let parent = p.parent().filter(|d| !d.as_os_str().is_empty());
                Some(
                    parent
                        .unwrap_or(std::path::Path::new("."))
                        .display()
                        .to_string(),
                )
            }
            _ => None,
        })
        .collect();
    if dirs.is_empty() {
        dirs.push(std::env::temp_dir().display().to_string());
    }
    dirs.dedup();
    dirs
}
