//! Running one step in the builder with exec, streaming its output as events.

use super::super::{BuildError, BuildEvent, BuildOptions, BuildReport, LogStream, StepReport};
use crate::engine::EngineError;
use crate::plan::{Step, StepKind};
use crate::portage::{EmergeEvent, parse_emerge_line};
use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecResults};
use futures_util::StreamExt;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// How many trailing lines of a failed step's output the error shows.
const TAIL_LINES: usize = 30;

/// The last [`BuildReport::LOG_LIMIT`] lines of every step, in the order they arrived (background steps
/// interleave); shared with background steps.
#[derive(Clone, Default)]
pub(super) struct SharedLog(Arc<Mutex<VecDeque<String>>>);

impl SharedLog {
    fn push(&self, line: String) {
        let mut log = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if log.len() == BuildReport::LOG_LIMIT {
            log.pop_front();
        }
        log.push_back(line);
    }

    /// The lines kept, oldest first.
    pub(super) fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner)).into()
    }
}

/// One step being run, with its position.
#[derive(Clone)]
pub(super) struct StepRun {
    pub(super) index: usize,
    pub(super) total: usize,
    pub(super) step: Step,
    /// Keep the step's stdout (the package list).
    pub(super) capture: bool,
    pub(super) log: SharedLog,
}

/// What a finished step produced; merged into the report by the caller.
pub(super) struct StepOutput {
    exit_code: i64,
    duration: std::time::Duration,
    tail: Vec<String>,
    captured: String,
    emerged: Vec<(String, bool)>,
    skipped: Option<String>,
    fetched: Vec<String>,
    direct: Vec<String>,
}

impl StepOutput {
    /// Fold the step into the report, or fail with the tail of its output when it exited non-zero.
    pub(super) fn finish(
        self,
        run: &StepRun,
        options: &BuildOptions,
        report: &mut BuildReport,
    ) -> crate::Result<String> {
        for (cpv, binary) in &self.emerged {
            report.record_emerge(cpv, *binary);
        }
        for cpv in self.direct {
            if !report.merged_directly.contains(&cpv) {
                report.merged_directly.push(cpv);
            }
        }
        for cpv in self.fetched {
            if !report.fetched_from_binhost.contains(&cpv) {
                report.fetched_from_binhost.push(cpv);
            }
        }
        if self.exit_code != 0 {
            return Err(BuildError::StepFailed {
                index: run.index,
                total: run.total,
                label: run.step.label.clone(),
                exit_code: self.exit_code,
                tail: self.tail,
            }
            .into());
        }
        report.steps.push(StepReport {
            kind: run.step.kind.clone(),
            label: run.step.label.clone(),
            duration: self.duration,
            exit_code: self.exit_code,
            skipped: self.skipped.is_some(),
            reason: self.skipped,
        });
        options.emit(BuildEvent::StepFinished {
            index: run.index,
            seconds: self.duration.as_secs_f64(),
        });
        Ok(self.captured)
    }
}

/// Run one plan step, streaming its output as events as it arrives.
pub(super) async fn exec_step(
    docker: &Docker,
    container: &str,
    run: &StepRun,
    options: &BuildOptions,
) -> crate::Result<StepOutput> {
    let started = Instant::now();
    let env: Vec<String> = run
        .step
        .env
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let label = &run.step.label;
    let exec = docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(run.step.exec_argv()),
                env: Some(env),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| EngineError::request(format!("creating the exec for step {label}"), e))?;
    let mut lines = LineSplitter::new(run, options);
    if let StartExecResults::Attached { mut output, .. } =
        docker
            .start_exec(&exec.id, None)
            .await
            .map_err(|e| EngineError::request(format!("starting step {label}"), e))?
    {
        while let Some(item) = output.next().await {
            use bollard::container::LogOutput;
            match item
                .map_err(|e| EngineError::request(format!("reading the output of {label}"), e))?
            {
                LogOutput::StdErr { message } => lines.feed(LogStream::Stderr, &message),
                LogOutput::StdOut { message } | LogOutput::Console { message } => {
                    lines.feed(LogStream::Stdout, &message)
                }
                LogOutput::StdIn { .. } => {}
            }
        }
    }
    let code = exit_code(docker, &exec.id)
        .await
        .map_err(|e| EngineError::request(format!("reading the exit code of {label}"), e))?;
    Ok(lines.finish(code.unwrap_or(-1), started.elapsed()))
}

/// The exit code of a finished exec. The engine may still say "running", without an exit code, for a moment after
/// the exec's output stream has ended: ask again (for up to 10 s) until it has one.
async fn exit_code(docker: &Docker, exec: &str) -> Result<Option<i64>, bollard::errors::Error> {
    const ATTEMPTS: u32 = 500;
    for _ in 1..ATTEMPTS {
        let inspect = docker.inspect_exec(exec).await?;
        if inspect.running != Some(true) && inspect.exit_code.is_some() {
            return Ok(inspect.exit_code);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(docker.inspect_exec(exec).await?.exit_code)
}

/// The commands a Gentoo stage3 has and a build needs, checked before any step. `sleep` is the builder's
/// entrypoint: the check names it even when the init has not yet noticed that it is missing.
const STAGE3_COMMANDS: [&str; 3] = ["sleep", "emerge", "portageq"];

/// How one exec in the builder ended, as far as the stage3 check needs to know.
enum Probe {
    /// It ran; its exit code (if the engine gave one) and what it printed on stdout.
    Ran(Option<i64>, String),
    /// The container is not running: its entrypoint (`sleep infinity` under the engine's init) is gone.
    NotRunning,
    /// The exec's program does not exist in the image.
    NotFound,
}

/// Run `cmd` in `container` and say how it ended. Engine errors other than "not running" and "not found" are
/// errors.
async fn probe(docker: &Docker, container: &str, cmd: Vec<String>) -> Result<Probe, EngineError> {
    let not_running = |e: &bollard::errors::Error| e.to_string().contains("is not running");
    let not_found =
        |e: &bollard::errors::Error| e.to_string().contains("executable file not found");
    let exec = match docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(cmd),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
    {
        Ok(exec) => exec,
        Err(e) if not_running(&e) => return Ok(Probe::NotRunning),
        Err(e) => return Err(EngineError::request("checking the builder image", e)),
    };
    let mut stdout = String::new();
    match docker.start_exec(&exec.id, None).await {
        Ok(StartExecResults::Attached { mut output, .. }) => {
            while let Some(item) = output.next().await {
                if let Ok(bollard::container::LogOutput::StdOut { message }) = item {
                    stdout.push_str(&String::from_utf8_lossy(&message));
                }
            }
        }
        Ok(StartExecResults::Detached) => {}
        Err(e) if not_found(&e) => return Ok(Probe::NotFound),
        Err(e) if not_running(&e) => return Ok(Probe::NotRunning),
        Err(e) => return Err(EngineError::request("checking the builder image", e)),
    }
    let code = exit_code(docker, &exec.id)
        .await
        .map_err(|e| EngineError::request("checking the builder image", e))?;
    Ok(match code {
        // 126/127: the engine could not start the program.
        Some(126 | 127) => Probe::NotFound,
        code => Probe::Ran(code, stdout),
    })
}

/// Fail with [`BuildError::NotAStage3`] when the builder lacks `sleep` (its entrypoint), `sh`, `emerge` or
/// `portageq`.
///
/// The builder runs `sleep infinity` under the engine's init, so a missing `sleep` does not fail the start: the
/// init exits a moment later. Whether the check's `sh` then meets a running or a stopped container is a race, so
/// every failure to run `sh` is followed by a probe of `sleep` itself, which gives the same answer either way.
pub(super) async fn check_stage3(
    docker: &Docker,
    container: &str,
    image: &str,
) -> crate::Result<()> {
    let not_a_stage3 = |missing: &str| -> crate::Error {
        BuildError::NotAStage3 {
            image: image.to_owned(),
            missing: missing.to_owned(),
        }
        .into()
    };
    let script = format!(
        "for c in {}; do command -v \"$c\" >/dev/null 2>&1 || {{ echo \"$c\"; exit 3; }}; done",
        STAGE3_COMMANDS.join(" ")
    );
    match probe(docker, container, vec!["sh".into(), "-c".into(), script]).await? {
        Probe::Ran(Some(0), _) => return Ok(()),
        Probe::Ran(Some(3), missing) if !missing.trim().is_empty() => {
            return Err(not_a_stage3(missing.trim()));
        }
        Probe::Ran(..) | Probe::NotRunning | Probe::NotFound => {}
    }
    match probe(docker, container, vec!["sleep".into(), "0".into()]).await? {
        Probe::NotRunning | Probe::NotFound => Err(not_a_stage3("sleep")),
        Probe::Ran(..) => Err(not_a_stage3("sh")),
    }
}

/// Splits a step's output into lines, emitting events and keeping the tail.
struct LineSplitter<'a> {
    run: &'a StepRun,
    options: &'a BuildOptions,
    partial: [Vec<u8>; 2],
    tail: VecDeque<String>,
    captured: String,
    emerged: Vec<(String, bool)>,
    skipped: Option<String>,
    fetched: Vec<String>,
    direct: Vec<String>,
}

impl<'a> LineSplitter<'a> {
    fn new(run: &'a StepRun, options: &'a BuildOptions) -> Self {
        Self {
            run,
            options,
            partial: [Vec::new(), Vec::new()],
            tail: VecDeque::new(),
            captured: String::new(),
            emerged: Vec::new(),
            skipped: None,
            fetched: Vec::new(),
            direct: Vec::new(),
        }
    }

    fn feed(&mut self, stream: LogStream, bytes: &[u8]) {
        let slot = stream as usize;
        self.partial[slot].extend_from_slice(bytes);
        while let Some(pos) = self.partial[slot].iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial[slot].drain(..=pos).collect();
            self.line(stream, &line[..line.len() - 1]);
        }
    }

    fn line(&mut self, stream: LogStream, bytes: &[u8]) {
        let line = String::from_utf8_lossy(bytes)
            .trim_end_matches('\r')
            .to_owned();
        if self.run.capture && stream == LogStream::Stdout {
            self.captured.push_str(&line);
            self.captured.push('\n');
        }
        if let Some(reason) = crate::cache::parse_skipped_line(&line) {
            self.skipped = Some(reason.to_owned());
        }
        if let Some(EmergeEvent::Emerging {
            index,
            total,
            cpv,
            binary,
            ..
        }) = parse_emerge_line(&line)
        {
            self.emerged.push((cpv.clone(), binary));
            self.options.emit(BuildEvent::Package {
                step: self.run.index,
                index,
                total,
                cpv,
                binary,
            });
        }
        if let Some(cpv) = crate::cache::parse_direct_merge_line(&line) {
            self.direct.push(cpv);
        }
        if self.run.step.kind == StepKind::FetchBinaries {
            self.fetched
                .extend(crate::binhost::parse_fetched_binaries([line.as_str()]));
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.clone());
        self.run.log.push(line.clone());
        self.options.emit(BuildEvent::Log {
            step: self.run.index,
            stream,
            line,
        });
    }

    fn finish(mut self, exit_code: i64, duration: std::time::Duration) -> StepOutput {
        for stream in [LogStream::Stdout, LogStream::Stderr] {
            let rest = std::mem::take(&mut self.partial[stream as usize]);
            if !rest.is_empty() {
                self.line(stream, &rest);
            }
        }
        StepOutput {
            exit_code,
            duration,
            tail: self.tail.into_iter().collect(),
            captured: self.captured,
            emerged: self.emerged,
            skipped: self.skipped,
            fetched: self.fetched,
            direct: self.direct,
        }
    }
}
