//! Embed the library: load a `staves.toml`, validate it, and print the build as a standalone shell script.
//!
//! ```sh
//! cargo run -p staves-examples --example render_plan -- examples/bash/staves.toml
//! ```

use staves_core::{BuildPlan, ImageSpec, PlanOptions, SpecReport};
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let path = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| "staves.toml".into());
    // Every diagnostic, rendered rustc-style, before anything else.
    match SpecReport::check(&path) {
        Ok(report) if report.has_errors() => {
            eprint!("{}", report.render_text());
            return ExitCode::FAILURE;
        }
        Ok(_) => {}
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    }
    let result = ImageSpec::load(&path)
        .map_err(staves_core::Error::from)
        .and_then(|spec| Ok(BuildPlan::new(&spec, &PlanOptions::with_jobs(4))?));
    match result {
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
