//! Embed the library: load a `staves.toml`, validate it, and print the build as a standalone shell script.
//!
//! ```sh
//! cargo run -p staves-examples --example render_plan -- examples/bash/staves.toml
//! ```

use staves_core::{BuildPlan, ImageSpec, PlanOptions};
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let path = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| "staves.toml".into());
    // Every diagnostic, rendered rustc-style by the error itself, before anything else.
    let spec = match ImageSpec::load(&path) {
        Ok(spec) => spec,
        Err(err) => {
            eprint!("{}", err.render());
            return ExitCode::FAILURE;
        }
    };
    eprint!("{}", spec.render_diagnostics(spec.warnings()));
    match BuildPlan::new(&spec, &PlanOptions::with_jobs(4)) {
        Ok(plan) => {
            print!("{}", plan.render_script());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
