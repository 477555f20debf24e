//! Progress events and cancellation, shared by the CLI and the Python module.

use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;

/// Which output stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Something that happened during a build, delivered as it happens.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum BuildEvent {
    /// The backend is preparing (checking images, creating containers).
    Preparing {
        /// What it is doing.
        message: String,
    },
    /// A step started.
    StepStarted {
        /// 1-based step number.
        index: usize,
        /// Number of steps.
        total: usize,
        /// The step's label.
        label: String,
    },
    /// A line of a step's output.
    Log {
        /// 1-based step number.
        step: usize,
        /// stdout or stderr.
        stream: LogStream,
        /// The line, without its newline.
        line: String,
    },
    /// emerge started merging a package.
    Package {
        /// 1-based step number.
        step: usize,
        /// Position in emerge's merge list.
        index: usize,
        /// Length of the merge list.
        total: usize,
        /// `category/package-version`.
        cpv: String,
        /// From a binary package.
        binary: bool,
    },
    /// A step finished successfully.
    StepFinished {
        /// 1-based step number.
        index: usize,
        /// Seconds spent.
        seconds: f64,
    },
    /// The rootfs is being streamed into the image writer.
    Exporting,
}

/// A callback receiving [`BuildEvent`]s; called on the backend's threads, so it must be quick and thread-safe.
pub type EventHandler = Arc<dyn Fn(&BuildEvent) + Send + Sync>;

/// A cloneable flag that cancels a build; every clone sees the same state.
#[derive(Clone, Default)]
pub struct CancelToken {
    inner: Arc<CancelInner>,
}

#[derive(Default)]
struct CancelInner {
    cancelled: AtomicBool,
    notify: Notify,
}

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancel the build. Safe to call from any thread, any number of times.
    pub fn cancel(&self) {
        self.inner.cancelled.store(true, Ordering::SeqCst);
        self.inner.notify.notify_waiters();
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::SeqCst)
    }

    /// Resolves once the token is cancelled.
    pub(crate) async fn cancelled(&self) {
        let notified = self.inner.notify.notified();
        tokio::pin!(notified);
        // Register before checking the flag, so a cancel() in between is not missed.
        notified.as_mut().enable();
        if self.is_cancelled() {
            return;
        }
        notified.await;
    }
}

impl std::fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelToken")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}
