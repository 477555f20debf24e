//! SIGINT, SIGTERM and SIGHUP during a build: the first cancels it (containers, volumes and temporary files are
//! removed, exit code 4); a second one exits at once, saying what it left behind.

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};
use staves_core::CancelToken;

/// Stops listening when dropped.
pub struct SignalGuard {
    handle: Handle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
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
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    let handle = signals.handle();
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
    })
}
