//! `staves prune`: remove the containers, volumes, untagged images and temporary files that builds left behind.

use staves_core::{BuildResources, Engine, Ownership, PruneOptions, PruneReport};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Flags of `staves prune`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Also remove the resources of builds that may still run (this stops them), after asking.
    #[arg(long)]
    all: bool,
    /// Do not ask before removing the resources of live builds (needed for --all without a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = crate::Format::Text)]
    format: crate::Format,
    /// The Docker engine address (default: DOCKER_HOST, else the local socket).
    #[arg(long, env = "DOCKER_HOST")]
    docker_host: Option<String>,
    /// The local image store whose journal names the untagged images and temporary files of image writes
    /// (default: $XDG_CACHE_HOME/staves, else ~/.cache/staves).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
}

/// Run `staves prune`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let engine = Engine::new(args.docker_host);
    let options = match args.cache_dir {
        Some(dir) => PruneOptions::new().store_dir(Some(dir)),
        None => PruneOptions::new(),
    };
    let report = if args.all {
        let builds = staves_core::list_builds(&engine)?;
        let live: Vec<&BuildResources> = builds
            .iter()
            .filter(|b| b.ownership != Ownership::Gone)
            .collect();
        if !live.is_empty() && !args.yes && !confirm(&live)? {
            eprintln!("nothing was removed");
            return Ok(ExitCode::SUCCESS);
        }
        let mut report = staves_core::remove_builds(&engine, &builds)?;
        if let Some(dir) = &options.store_dir {
            report.extend(staves_core::remove_leftovers(&engine, dir)?);
        }
        report
    } else {
        staves_core::prune(&engine, &options)?
    };
    print(&report, args.format)?;
    if report.errors.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(3))
    }
}

/// Ask on the terminal whether to remove the resources of `live` builds; refuse (usage error) without one.
fn confirm(live: &[&BuildResources]) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return Err(crate::UsageError(format!(
            "--all would remove the containers and volumes of {} build(s) that may still be running, and there \
             is no terminal to ask on\n  help: pass --yes to confirm",
            live.len()
        ))
        .into());
    }
    let mut stderr = std::io::stderr().lock();
    writeln!(
        stderr,
        "These builds may still be running; removing their containers stops them:"
    )?;
    for build in live {
        writeln!(stderr, "  {}", describe(build))?;
    }
    write!(stderr, "Remove them? [y/N] ")?;
    stderr.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// One build in a line: id, owner and what it has.
fn describe(build: &BuildResources) -> String {
    let owner = match (&build.owner, build.ownership) {
        (Some(o), Ownership::Alive) => format!("process {} on {} is running", o.pid, o.host),
        (Some(o), Ownership::OtherHost) => format!("process {} on another host, {}", o.pid, o.host),
        (Some(o), _) => format!("process {} on {} is gone", o.pid, o.host),
        (None, _) => "no owner labels".to_owned(),
    };
    format!(
        "build {} ({owner}): {}",
        build.build_id,
        build
            .containers
            .iter()
            .map(|c| format!("container {c}"))
            .chain(build.volumes.iter().map(|v| format!("volume {v}")))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn print(report: &PruneReport, format: crate::Format) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match format {
        crate::Format::Json => writeln!(stdout, "{}", serde_json::to_string_pretty(report)?)?,
        crate::Format::Text => {
            for name in &report.removed.containers {
                writeln!(stdout, "removed container {name}")?;
            }
            for name in &report.removed.volumes {
                writeln!(stdout, "removed volume {name}")?;
            }
            for id in &report.removed.images {
                writeln!(stdout, "removed untagged image {id}")?;
            }
            for path in &report.removed.files {
                writeln!(stdout, "removed temporary file {}", path.display())?;
            }
            if report.removed.is_empty() {
                writeln!(stdout, "nothing to remove")?;
            }
            if !report.kept.is_empty() {
                eprintln!(
                    "kept the resources of {} build(s) that may still be running (--all removes them too):",
                    report.kept.len()
                );
                for build in &report.kept {
                    eprintln!("  {}", describe(build));
                }
            }
            for error in &report.errors {
                eprintln!("error: {error}");
            }
        }
    }
    Ok(())
}
