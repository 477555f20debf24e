//! `staves plan`: the Portage files and the steps a build would run, without running anything.

use std::path::PathBuf;
use std::process::ExitCode;

/// How `staves plan` prints the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanFormat {
    /// Every file's path and content, then every step's command line.
    Text,
    /// The same as JSON.
    Json,
    /// One standalone POSIX sh script that runs the plan in a Gentoo container.
    Script,
}

/// Flags of `staves plan`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The spec to plan.
    #[arg(long, short = 'c', value_name = "PATH", default_value = "staves.toml")]
    config: PathBuf,
    /// How to print the plan.
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    format: PlanFormat,
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
    #[command(flatten)]
    binhost_timeouts: crate::binhost_args::BinhostTimeoutArgs,
}

/// Run `staves plan`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let spec = crate::load_spec(&args.config)?;
    let options = staves_core::PlanOptions::new(args.jobs, args.load_average)
        .direct_merge(!args.portage_merge)
        .binhost_timeouts(args.binhost_timeouts.idle(), args.binhost_timeouts.total());
    let lock = staves_core::LockOptions::default();
    let (plan, pins) = staves_core::plan_for(&spec, &options, &lock)?;
    match args.format {
        PlanFormat::Text => {
            if let Some(pins) = &pins {
                println!(
                    "Pinned by {}: {} package(s), {} repository commit(s) (see package.mask/staves-lock below)\n",
                    pins.path.display(),
                    pins.pins.packages.len(),
                    pins.pins
                        .repositories
                        .iter()
                        .filter(|r| r.commit.is_some())
                        .count()
                );
            }
            print!("{}", plan.render_text())
        }
        PlanFormat::Json => println!("{}", serde_json::to_string_pretty(&plan)?),
        PlanFormat::Script => print!("{}", plan.render_script()),
    }
    Ok(ExitCode::SUCCESS)
}
