//! One bounded HTTP exchange with a registry or its token service: an idle timeout (no byte moved either way for
//! so long), a total deadline, and response bodies read only up to a cap.
//!
//! reqwest's own `read_timeout` starts with the request and is not reset while a request body is being sent, so
//! it would cut off a long upload; `timeout` is per client. Both are done here instead, per request: the upload
//! body marks each chunk the connection takes ([`Progress`]), and the response body is read chunk by chunk.

use bytes::{Bytes, BytesMut};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// The most of an error answer's body that is read (the rest is never downloaded).
pub(crate) const ERROR_BODY_CAP: usize = 64 * 1024;

/// The most of a document (manifest, index, token answer) that is read: the distribution spec lets registries
/// refuse manifests above 4 MiB.
pub(crate) const DOCUMENT_CAP: usize = 4 * 1024 * 1024;

/// How long the messages of an error answer may be in an error of Staves.
pub(crate) const MESSAGE_CHARS: usize = 500;

/// The deadlines of every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// No byte sent or received for this long ends the request.
    pub idle: Duration,
    /// The most one request may take, from its start until its answer's body is read.
    pub total: Duration,
}

/// An upload of `size` bytes gets this many more seconds per MiB on top of [`Limits::total`]: a floor of
/// 256 KiB/s (2 Mbit/s) under which a big layer is not expected to arrive.
pub(crate) const UPLOAD_SECONDS_PER_MIB: u64 = 4;

impl Limits {
    /// The total deadline of a request that sends `size` bytes.
    pub(crate) fn total_for_upload(&self, size: u64) -> Duration {
        self.total + Duration::from_secs(size.div_ceil(1 << 20) * UPLOAD_SECONDS_PER_MIB)
    }
}

/// Why an exchange was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stalled {
    /// No byte moved for this long.
    Idle(Duration),
    /// The request took longer than this.
    Deadline(Duration),
}

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stalled::Idle(d) => write!(f, "no byte arrived or left for {} s", d.as_secs()),
            Stalled::Deadline(d) => write!(f, "the request took more than {} s", d.as_secs()),
        }
    }
}

/// When bytes last moved in an exchange; shared with the upload body, which marks each chunk it hands over.
#[derive(Debug, Clone)]
pub(crate) struct Progress {
    start: Instant,
    /// Milliseconds after `start`.
    last: Arc<AtomicU64>,
}

impl Progress {
    pub(crate) fn new() -> Self {
        Self {
            start: Instant::now(),
            last: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Bytes moved now.
    pub(crate) fn mark(&self) {
        let millis = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.fetch_max(millis, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }
}

/// The clock of one exchange: its deadline, its idle timeout and its progress.
#[derive(Debug, Clone)]
pub(crate) struct Clock {
    idle: Duration,
    total: Duration,
    deadline: Instant,
    progress: Progress,
}

impl Clock {
    /// Start the clock of a request that may take `total` and may stall for `idle`.
    pub(crate) fn start(idle: Duration, total: Duration) -> Self {
        let progress = Progress::new();
        Self {
            idle,
            total,
            deadline: progress.start + total,
            progress,
        }
    }

    /// The progress to mark as the request body is sent.
    pub(crate) fn progress(&self) -> Progress {
        self.progress.clone()
    }

    /// Wait for `fut` until it is done, no byte has moved for the idle timeout, or the deadline has passed.
    pub(crate) async fn bound<T>(&self, fut: impl Future<Output = T>) -> Result<T, Stalled> {
        tokio::pin!(fut);
        loop {
            let idle_at = self.progress.last() + self.idle;
            tokio::select! {
                biased;
                out = &mut fut => return Ok(out),
                () = tokio::time::sleep_until(self.deadline) => return Err(Stalled::Deadline(self.total)),
                () = tokio::time::sleep_until(idle_at) => {
                    // Progress made while sleeping moves the idle point on.
                    if self.progress.last() + self.idle <= Instant::now() {
                        return Err(Stalled::Idle(self.idle));
                    }
                }
            }
        }
    }

    /// Read `response`'s body up to `cap` bytes, under this clock. `cut` says the body was longer (the rest is not
    /// read: the connection is dropped).
    pub(crate) async fn read(
        &self,
        mut response: reqwest::Response,
        cap: usize,
    ) -> Result<Body, BodyError> {
        let mut bytes = BytesMut::new();
        loop {
            let chunk = self
                .bound(response.chunk())
                .await
                .map_err(BodyError::Stalled)?
                .map_err(BodyError::Http)?;
            let Some(chunk) = chunk else {
                return Ok(Body {
                    bytes: bytes.freeze(),
                    cut: false,
                });
            };
            self.progress.mark();
            let room = cap - bytes.len();
            if chunk.len() > room {
                bytes.extend_from_slice(&chunk[..room]);
                return Ok(Body {
                    bytes: bytes.freeze(),
                    cut: true,
                });
            }
            bytes.extend_from_slice(&chunk);
        }
    }
}

/// A response body read up to a cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Body {
    /// What was read.
    pub bytes: Bytes,
    /// The body was longer than the cap; only its start was read.
    pub cut: bool,
}

impl Body {
    /// The registry's message in an error answer: the `message`s of a distribution-spec error envelope (with their
    /// codes), else the text, shortened; says so when the body was cut.
    pub(crate) fn error_message(&self) -> String {
        #[derive(serde::Deserialize)]
        struct Envelope {
            errors: Vec<EnvelopeError>,
        }
        #[derive(serde::Deserialize)]
        struct EnvelopeError {
            #[serde(default)]
            code: String,
            #[serde(default)]
            message: String,
        }
        let text = match serde_json::from_slice::<Envelope>(&self.bytes) {
            Ok(envelope) if !envelope.errors.is_empty() => envelope
                .errors
                .iter()
                .map(|e| format!("{}: {}", e.code, e.message))
                .collect::<Vec<_>>()
                .join("; "),
            _ => String::from_utf8_lossy(&self.bytes).into_owned(),
        };
        let text = text.trim();
        let mut message: String = text
            .chars()
            .filter(|c| !c.is_control() || *c == '\n')
            .take(MESSAGE_CHARS)
            .collect();
        if text.chars().count() > MESSAGE_CHARS {
            message.push('…');
        }
        if self.cut {
            message.push_str(&format!(
                " [the answer's body is longer than {} KiB; only its start was read]",
                ERROR_BODY_CAP / 1024
            ));
        }
        message
    }
}

/// Why a body could not be read.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// Its bytes stopped coming, or came too slowly.
    Stalled(Stalled),
    /// The connection failed.
    Http(reqwest::Error),
}

/// A request body streamed from a file in chunks, marking `progress` as the connection takes each one.
pub(crate) fn file_body(file: tokio::fs::File, progress: Progress) -> reqwest::Body {
    use futures_util::StreamExt;
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 18).inspect(move |_| {
        progress.mark();
    });
    reqwest::Body::wrap_stream(stream)
}

/// Bytes as a request body (small documents: sent at once).
pub(crate) fn bytes_body(bytes: Bytes) -> reqwest::Body {
    reqwest::Body::from(bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn uploads_get_more_time_in_proportion_to_their_size() {
        let limits = Limits {
            idle: Duration::from_secs(60),
            total: Duration::from_secs(300),
        };
        assert_eq!(limits.total_for_upload(0), Duration::from_secs(300));
        assert_eq!(limits.total_for_upload(1), Duration::from_secs(304));
        assert_eq!(
            limits.total_for_upload(500 << 20),
            Duration::from_secs(300 + 2000)
        );
    }

    #[test]
    fn error_messages_are_short_and_say_when_the_body_was_cut() {
        let envelope = Body {
            bytes: Bytes::from_static(
                br#"{"errors":[{"code":"BLOB_UPLOAD_INVALID","message":"blob upload invalid"}]}"#,
            ),
            cut: false,
        };
        assert_eq!(
            envelope.error_message(),
            "BLOB_UPLOAD_INVALID: blob upload invalid"
        );
        let long = Body {
            bytes: Bytes::from(vec![b'x'; ERROR_BODY_CAP]),
            cut: true,
        };
        let message = long.error_message();
        assert!(message.starts_with(&"x".repeat(MESSAGE_CHARS)), "{message}");
        assert!(message.contains("longer than 64 KiB"), "{message}");
        assert!(message.len() < MESSAGE_CHARS + 200, "{message}");
    }

    #[tokio::test]
    async fn progress_moves_the_idle_timeout_on_and_the_deadline_stays() {
        // Marked far more often than the idle timeout: never idle, so the deadline ends it.
        let clock = Clock::start(Duration::from_secs(5), Duration::from_millis(300));
        let progress = clock.progress();
        let marking = async {
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
                progress.mark();
            }
        };
        assert_eq!(
            clock.bound(marking).await,
            Err(Stalled::Deadline(Duration::from_millis(300)))
        );
        let clock = Clock::start(Duration::from_millis(100), Duration::from_secs(60));
        assert_eq!(
            clock.bound(std::future::pending::<()>()).await,
            Err(Stalled::Idle(Duration::from_millis(100)))
        );
        assert_eq!(clock.bound(async { 7 }).await, Ok(7));
    }
}
