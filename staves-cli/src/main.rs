//! The `staves` command: a thin layer over `staves-core`.
//!
//! Each subcommand turns its flags into a settings struct and makes one call into the library.
//!
//! Exit codes:
//! - `0`: success;
//! - `1`: the spec is invalid (or `validate` found errors), or `staves.lock` is invalid, or missing or out of date
//!   under `--locked`;
//! - `2`: usage error (bad flags);
//! - `3`: the Docker engine failed or could not be reached;
//! - `4`: the build failed (a step exited non-zero, or it was interrupted, or the snapshot lacks a locked version);
//! - `5`: any other error (I/O, image writing);
//! - `6`: security advisories apply (`audit`, and `build --deny-advisories`, which then writes nothing).

mod binhost_args;
mod cmd_assemble;
mod cmd_audit;
mod cmd_build;
mod cmd_cache;
mod cmd_inspect;
mod cmd_lock;
mod cmd_plan;
mod cmd_prune;
mod cmd_schema;
mod cmd_validate;
mod progress;
mod registry_args;
mod signals;

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
    /// Resolve a staves.toml with Portage, without building, and write staves.lock next to it.
    Lock(cmd_lock::Args),
    /// Check an SBOM written earlier against the security advisories (GLSAs) of a Portage snapshot.
    Audit(cmd_audit::Args),
    /// Print the size report of an image from the SBOM it carries (an engine image, oci:DIR, oci-archive:FILE).
    Inspect(cmd_inspect::Args),
    /// Print the JSON Schema of staves.toml (for editors such as taplo / Even Better TOML).
    Schema(cmd_schema::Args),
    /// Remove the containers, volumes, untagged images and temporary files of builds whose process is gone
    /// (--all: the containers and volumes of every build).
    Prune(cmd_prune::Args),
    /// Inspect and clean the binary package volume and the local image store.
    Cache(cmd_cache::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(args) => cmd_validate::run(args),
        Command::Plan(args) => cmd_plan::run(args),
        Command::Assemble(args) => cmd_assemble::run(args),
        Command::Build(args) => cmd_build::run(*args),
        Command::Lock(args) => cmd_lock::run(args),
        Command::Audit(args) => cmd_audit::run(args),
        Command::Inspect(args) => cmd_inspect::run(args),
        Command::Schema(args) => cmd_schema::run(args),
        Command::Prune(args) => cmd_prune::run(args),
        Command::Cache(args) => cmd_cache::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            match err.downcast_ref::<staves_core::Error>() {
                // Lock diagnostics point into the lock file: show them rustc-style.
                Some(staves_core::Error::Lock(lock)) if !lock.diagnostics().is_empty() => {
                    eprint!("{}", lock.render());
                }
                _ => eprintln!("error: {}", error_message(&err)),
            }
            ExitCode::from(exit_code_for(&err))
        }
    }
}

/// The error and its causes, each said once: many messages already quote their cause (`…: {source}`), so a cause
/// whose text is already in the message is not repeated. Control characters other than newlines are escaped, so
/// no message (which may quote a hostile archive or spec) writes raw bytes to the terminal.
fn error_message(err: &anyhow::Error) -> String {
    let mut message = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
    }
    let mut out = String::with_capacity(message.len());
    for c in message.chars() {
        if c.is_control() && c != '\n' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Map an error to the documented exit code.
fn exit_code_for(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<UsageError>().is_some() {
        return 2;
    }
    if let Some(hinted) = err.downcast_ref::<WithHelp>() {
        return hinted.error.exit_code();
    }
    match err.downcast_ref::<staves_core::Error>() {
        Some(core) => core.exit_code(),
        None => 5,
    }
}

/// A library error with a hint that only makes sense on the command line (the library names no flags).
#[derive(Debug)]
struct WithHelp {
    error: staves_core::Error,
    help: &'static str,
}

impl std::fmt::Display for WithHelp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\n  help: {}", self.error, self.help)
    }
}

impl std::error::Error for WithHelp {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

/// A spec error for the CLI: an unreadable file gets a hint about `--config`.
fn spec_error(err: staves_core::SpecError) -> anyhow::Error {
    let unreadable = matches!(err, staves_core::SpecError::Read { .. });
    let error = staves_core::Error::from(err);
    if unreadable {
        WithHelp {
            error,
            help: "check the path, or pass another one with --config",
        }
        .into()
    } else {
        error.into()
    }
}
/// A usage error found after the flags were parsed (exit code 2).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

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
    staves_core::ImageSpec::load(path).map_err(spec_error)
}

/// clap's parser for `--load-average`: a number the plan accepts.
fn parse_load_average(text: &str) -> Result<f64, String> {
    let load: f64 = text
        .parse()
        .map_err(|_| format!("'{text}' is not a number: give a load average such as 2 or 3.5"))?;
    staves_core::plan::check_load_average(load).map_err(|e| e.to_string())
}

/// clap's parser for an image tag override (`--version`): the rule a spec's `version` follows.
fn parse_tag(text: &str) -> Result<String, String> {
    staves_core::spec::check_tag(text)
        .map(|()| text.to_owned())
        .map_err(|e| e.to_string())
}

/// clap's parser for an image reference (`--builder`, `--portage`): `NAME[:TAG][@DIGEST]`.
fn parse_image_reference(text: &str) -> Result<String, String> {
    staves_core::spec::check_image_reference(text)
        .map(|()| text.to_owned())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_is_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let core = staves_core::Error::Io {
            context: "reading x".to_owned(),
            source: io,
        };
        let err = anyhow::Error::from(core);
        assert_eq!(error_message(&err), "reading x: no such file");
        let err = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_message(&err), "outer: inner");
    }

    #[test]
    fn an_unreadable_spec_gets_the_config_hint_once_and_exit_1() {
        let err = load_spec(std::path::Path::new("/nonexistent/staves.toml")).unwrap_err();
        let message = error_message(&err);
        assert_eq!(
            message,
            "cannot read /nonexistent/staves.toml: No such file or directory (os error 2)\n  \
             help: check the path, or pass another one with --config"
        );
        assert_eq!(exit_code_for(&err), 1);
    }

    #[test]
    fn overrides_are_checked_like_spec_values() {
        assert_eq!(parse_tag("1.0").unwrap(), "1.0");
        assert!(
            parse_tag("bad tag!")
                .unwrap_err()
                .contains("not a valid image tag")
        );
        assert!(parse_image_reference(staves_core::DEFAULT_BUILDER_IMAGE).is_ok());
        assert!(parse_image_reference(staves_core::DEFAULT_PORTAGE_IMAGE).is_ok());
        assert!(
            parse_image_reference("Bad Ref!")
                .unwrap_err()
                .contains("not a valid image reference")
        );
    }

    #[test]
    fn control_characters_are_escaped_but_newlines_kept() {
        let err = anyhow::anyhow!("bad `\u{1b}[2J`\n  help: x\u{7}");
        assert_eq!(error_message(&err), "bad `\\u{1b}[2J`\n  help: x\\u{7}");
    }
}
