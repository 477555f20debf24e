//! The `staves` command: a thin layer over `staves-core`.
//!
//! Each subcommand turns its flags into a settings struct and makes one call into the library.
//!
//! Exit codes:
//! - `0`: success;
//! - `1`: the spec is invalid (or `validate` found errors);
//! - `2`: usage error (bad flags);
//! - `3`: the Docker engine failed or could not be reached;
//! - `4`: the build failed (a step exited non-zero, or it was interrupted);
//! - `5`: any other error (I/O, image writing).

mod cmd_assemble;
mod cmd_build;
mod cmd_cache;
mod cmd_plan;
mod cmd_validate;
mod progress;
mod registry_args;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Build minimal container images from a declarative `staves.toml` with Gentoo's Portage.
#[derive(Debug, Parser)]
#[command(name = "staves", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a staves.toml and print every diagnostic.
    Validate(cmd_validate::Args),
    /// Show the Portage configuration and the steps a build would run.
    Plan(cmd_plan::Args),
    /// Turn an existing rootfs (directory or tar) into an image, with no Portage step.
    Assemble(cmd_assemble::Args),
    /// Build an image from a staves.toml in a Gentoo builder container.
    Build(Box<cmd_build::Args>),
    /// Work with the build cache volume (binary packages).
    #[command(subcommand)]
    Cache(cmd_cache::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(args) => cmd_validate::run(args),
        Command::Plan(args) => cmd_plan::run(args),
        Command::Assemble(args) => cmd_assemble::run(args),
        Command::Build(args) => cmd_build::run(*args),
        Command::Cache(command) => cmd_cache::run(command),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(exit_code_for(&err))
        }
    }
}

/// Map an error to the documented exit code.
fn exit_code_for(err: &anyhow::Error) -> u8 {
    match err.downcast_ref::<staves_core::Error>() {
        Some(core) => core.exit_code(),
        None => 5,
    }
}

/// Output format of the commands that print a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human-readable text.
    Text,
    /// JSON, for tools.
    Json,
}

/// Read, parse and validate a spec; errors carry every diagnostic with its position.
fn load_spec(path: &std::path::Path) -> anyhow::Result<staves_core::ImageSpec> {
    Ok(staves_core::ImageSpec::load(path).map_err(staves_core::Error::from)?)
}

/// clap's parser for `--load-average`: a number the plan accepts.
fn parse_load_average(text: &str) -> Result<f64, String> {
    let load: f64 = text
        .parse()
        .map_err(|_| format!("'{text}' is not a number: give a load average such as 2 or 3.5"))?;
    staves_core::check_load_average(load).map_err(|e| e.to_string())
}
