//! SIGINT, SIGTERM and SIGHUP during a build (or an assemble): the first cancels it (containers, volumes, temporary
//! files and a loaded untagged image are removed, exit code 4); a second one exits at once, saying what it left
//! behind. Once the guard is dropped, the signals have their default action again (they end the process).

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};
use staves_core::CancelToken;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const HANDLED: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

/// Stops listening when dropped, and gives the signals their default action back.
pub struct SignalGuard {
    handle: Handle,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Set on drop: from then on a signal runs its default action. signal-hook never uninstalls its handler, so
    /// without this a signal after the drop would be swallowed.
    default: Arc<AtomicBool>,
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        self.default.store(true, Ordering::SeqCst);
        self.handle.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Cancel `cancel` on the first SIGINT, SIGTERM or SIGHUP, after calling `first(name)`; on a second one exit at
/// once with the code `second(name)` returns.
pub fn cancel_on_signals(
    cancel: CancelToken,
    first: impl Fn(&str) + Send + 'static,
    second: impl Fn(&str) -> i32 + Send + 'static,
) -> anyhow::Result<SignalGuard> {
    // The iterator first: until it is registered a signal has its default action. Registered the other way
    // round, a signal in between would reach only the (not yet armed) default and be swallowed.
    let mut signals = Signals::new(HANDLED)?;
    let handle = signals.handle();
    let default = Arc::new(AtomicBool::new(false));
    for signal in HANDLED {
        signal_hook::flag::register_conditional_default(signal, default.clone())?;
    }
    let thread = std::thread::Builder::new()
        .name("staves-signals".into())
        .spawn(move || {
            let mut seen = false;
            for signal in signals.forever() {
                let name = signal_hook::low_level::signal_name(signal).unwrap_or("a signal");
                if seen {
                    std::process::exit(second(name));
                }
                seen = true;
                first(name);
                cancel.cancel();
            }
        })?;
    Ok(SignalGuard {
        handle,
        thread: Some(thread),
        default,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    /// Set in the child process the test below starts.
    const CHILD: &str = "STAVES_SIGNALS_TEST_CHILD";

    /// A SIGTERM that arrived after the guard was dropped (while the command printed its report, or returned an
    /// error) was swallowed: signal-hook's handler stays installed, and nothing listened any more.
    #[test]
    fn a_signal_after_the_guard_is_dropped_is_not_swallowed() {
        if std::env::var_os(CHILD).is_some() {
            let guard = cancel_on_signals(CancelToken::new(), |_| {}, |_| 9).unwrap();
            drop(guard);
            signal_hook::low_level::raise(SIGTERM).unwrap();
            // Still alive: the signal was swallowed.
            std::thread::sleep(std::time::Duration::from_secs(2));
            std::process::exit(0);
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "signals::tests::a_signal_after_the_guard_is_dropped_is_not_swallowed",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .output()
            .unwrap();
        assert_eq!(
            out.status.signal(),
            Some(SIGTERM),
            "the child ended with {:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
