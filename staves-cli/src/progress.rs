//! Build progress on the terminal: a spinner with the current step and package, or plain lines off a terminal.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use staves_core::BuildEvent;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

/// Turns build events into terminal output. No colours are used, so `NO_COLOR` is always honoured.
pub struct Progress {
    quiet: bool,
    verbose: bool,
    bar: Option<ProgressBar>,
    step: Mutex<String>,
}

impl Progress {
    /// A spinner on stderr when it is a terminal (and not `quiet`), else plain lines.
    pub fn new(quiet: bool, verbose: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template("{spinner} [{elapsed}] {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Self {
            quiet,
            verbose,
            bar,
            step: Mutex::new(String::new()),
        }
    }

    /// Show one event.
    pub fn event(&self, event: &BuildEvent) {
        // Warnings show even with `-q`, as errors do.
        if let BuildEvent::Warning { message } = event {
            self.line(&format!("warning: {message}"));
            return;
        }
        if self.quiet {
            return;
        }
        match event {
            BuildEvent::Preparing { message } => self.status(message),
            BuildEvent::StepStarted {
                index,
                total,
                label,
            } => {
                let step = format!("[{index}/{total}] {label}");
                if let Ok(mut current) = self.step.lock() {
                    current.clone_from(&step);
                }
                self.status(&step);
            }
            BuildEvent::Package {
                index,
                total,
                cpv,
                binary,
                ..
            } => {
                let step = self.step.lock().map(|s| s.clone()).unwrap_or_default();
                let how = if *binary { " (binary)" } else { "" };
                self.status(&format!("{step}: package {index} of {total}: {cpv}{how}"));
            }
            // On a terminal, log lines show only with -v; off a terminal, they are the progress.
            BuildEvent::Log { line, .. } if self.verbose || self.bar.is_none() => self.line(line),
            BuildEvent::StepFinished { .. } => {}
            BuildEvent::Exporting => self.status("writing the image"),
            BuildEvent::Loading { .. } => self.status("loading the image into the engine"),
            BuildEvent::Reaped {
                containers,
                volumes,
            } => self.line(&format!(
                "removed what earlier builds whose process is gone left behind: {}",
                containers
                    .iter()
                    .map(|c| format!("container {c}"))
                    .chain(volumes.iter().map(|v| format!("volume {v}")))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            _ => {}
        }
    }

    fn status(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(message.to_owned()),
            None => eprintln!("==> {message}"),
        }
    }

    /// A message that shows even with `-q` (signals).
    pub fn message(&self, message: &str) {
        self.line(message);
    }

    fn line(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// Remove the spinner.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
