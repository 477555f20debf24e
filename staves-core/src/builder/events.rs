//! Progress events, their in-order delivery off the engine's I/O path, and cancellation.

use super::BuildOptions;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
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
///
/// Serialized with a `kind` tag in kebab-case, one object per event (what `staves build --log-format json`
/// prints): `{"kind":"step-started","index":1,"total":8,"label":"…"}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum BuildEvent {
    /// The backend is preparing (checking images, creating containers).
    Preparing {
        /// What it is doing.
        message: String,
    },
    /// The build has an id: every container and volume it creates carries the label
    /// [`BUILD_LABEL`](crate::BUILD_LABEL)` = build_id`.
    Started {
        /// The build's id.
        build_id: String,
    },
    /// Containers and volumes of earlier builds whose process is gone were removed.
    Reaped {
        /// Names of the removed containers.
        containers: Vec<String>,
        /// Names of the removed volumes.
        volumes: Vec<String>,
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
    /// The image is being loaded into the engine for the `docker` output. It stays untagged until the outputs are
    /// committed; a build that stops before then removes it again.
    Loading {
        /// The ID the image has in the engine (`sha256:…` of its config).
        image_id: String,
    },
    /// The build's containers and volumes were removed.
    CleanedUp,
    /// Something the user should know that does not stop the build (e.g. the local image store cannot be written,
    /// so the image will not be kept in it).
    Warning {
        /// What happened, what it means for this build, and what to do.
        message: String,
    },
}

/// A callback receiving [`BuildEvent`]s.
///
/// During a build it is called on one dedicated delivery thread, in the order the events happened, never on the
/// threads that talk to the engine: a slow handler delays only later events, not the build.
pub type EventHandler = Arc<dyn Fn(&BuildEvent) + Send + Sync>;

/// In-order delivery of events on a dedicated thread, so a slow handler never stalls the engine's streams.
///
/// Created at the start of a build; [`EventQueue::finish`] waits until every event queued before it was handled.
/// Dropped without `finish` (the build's future was dropped), the thread still delivers what was queued, then
/// ends. Events queued after the end are dropped.
pub(crate) struct EventQueue {
    sender: Option<std::sync::mpsc::Sender<Option<BuildEvent>>>,
    done: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl EventQueue {
    /// Start a delivery thread calling `handler`, and return the handler that queues for it.
    pub(crate) fn start(handler: EventHandler) -> (Self, EventHandler) {
        let (sender, receiver) = std::sync::mpsc::channel::<Option<BuildEvent>>();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let thread_handler = handler.clone();
        let spawned = std::thread::Builder::new()
            .name("staves-events".into())
            .spawn(move || {
                // `None` marks the end of the build; a closed channel ends it too.
                while let Ok(Some(event)) = receiver.recv() {
                    thread_handler(&event);
                }
                let _ = done_tx.send(());
            });
        match spawned {
            Ok(_) => {
                let queue_sender = sender.clone();
                let queued: EventHandler = Arc::new(move |event: &BuildEvent| {
                    let _ = queue_sender.send(Some(event.clone()));
                });
                let queue = Self {
                    sender: Some(sender),
                    done: Some(done_rx),
                };
                (queue, queued)
            }
            // No thread could be started: deliver inline rather than not at all.
            Err(_) => (
                Self {
                    sender: None,
                    done: None,
                },
                handler,
            ),
        }
    }

    /// Wait until every event queued so far was delivered.
    pub(crate) async fn finish(mut self) {
        if let Some(sender) = self.sender.take() {
            let _ = sender.send(None);
        }
        if let Some(done) = self.done.take() {
            let _ = done.await;
        }
    }
}

impl Drop for EventQueue {
    fn drop(&mut self) {
        if let Some(sender) = self.sender.take() {
            let _ = sender.send(None);
        }
    }
}

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

    /// Cancel the build. Safe to call from any thread (or a signal-handling thread), any number of times.
    pub fn cancel(&self) {
        self.inner.cancelled.store(true, Ordering::SeqCst);
        self.inner.notify.notify_waiters();
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::SeqCst)
    }

    /// Resolves once the token is cancelled.
    pub async fn cancelled(&self) {
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

/// The environment variable that makes a build pause at a named point, for tests only: `STAVES_TEST_PAUSE=POINT`
/// waits up to 5 s at POINT (`setup`: between creating the snapshot and the builder container; `write`: with the
/// outputs written to temporary files and the `docker` output loaded, before the commit), ending early on cancel.
/// It emits a [`BuildEvent::Preparing`] naming the point, so a test can send a signal at exactly that moment.
pub(crate) const TEST_PAUSE_VAR: &str = "STAVES_TEST_PAUSE";

/// Pause at `point` when [`TEST_PAUSE_VAR`] names it (tests only).
pub(crate) async fn test_pause(point: &str, options: &BuildOptions) {
    if std::env::var(TEST_PAUSE_VAR).ok().as_deref() != Some(point) {
        return;
    }
    options.emit(BuildEvent::Preparing {
        message: format!("test pause at {point} ({TEST_PAUSE_VAR})"),
    });
    tokio::select! {
        () = tokio::time::sleep(Duration::from_secs(5)) => {}
        () = options.cancel.cancelled() => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn events_arrive_in_order_and_a_slow_handler_does_not_block_the_sender() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
        let gate = Mutex::new(gate_rx);
        let sink = seen.clone();
        let handler: EventHandler = Arc::new(move |e: &BuildEvent| {
            // The first event waits until the sender has queued everything: a blocked handler.
            if let BuildEvent::StepFinished { index: 0, .. } = e {
                let _ = gate.lock().unwrap().recv();
            }
            sink.lock().unwrap().push(e.clone());
        });
        let (queue, queued) = EventQueue::start(handler);
        for index in 0..1000 {
            queued(&BuildEvent::StepFinished {
                index,
                seconds: 0.0,
            });
        }
        // All 1000 were queued while the handler was still blocked on the first.
        assert!(seen.lock().unwrap().len() <= 1);
        gate_tx.send(()).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(queue.finish());
        let seen = seen.lock().unwrap();
        let order: Vec<usize> = seen
            .iter()
            .map(|e| match e {
                BuildEvent::StepFinished { index, .. } => *index,
                _ => usize::MAX,
            })
            .collect();
        assert_eq!(order, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn events_serialize_with_a_kind_tag() {
        let json = serde_json::to_string(&BuildEvent::StepStarted {
            index: 1,
            total: 2,
            label: "x".into(),
        })
        .unwrap();
        assert_eq!(
            json,
            r#"{"kind":"step-started","index":1,"total":2,"label":"x"}"#
        );
        let json = serde_json::to_string(&BuildEvent::Exporting).unwrap();
        assert_eq!(json, r#"{"kind":"exporting"}"#);
        // The same shape as the CLI's own warnings (`{"kind": "warning", "message": …}`).
        let json = serde_json::to_string(&BuildEvent::Warning {
            message: "m".into(),
        })
        .unwrap();
        assert_eq!(json, r#"{"kind":"warning","message":"m"}"#);
    }
}
