//! Streaming the rootfs out of the builder into the (synchronous) sink, with no temporary copy.

use super::super::{BuildError, CancelToken, RootfsSink};
use super::session::{Session, remove_all};
use crate::plan::ROOTFS_DIR;
use bollard::query_parameters::DownloadFromContainerOptionsBuilder;
use bytes::Bytes;
use futures_util::StreamExt;
use std::io::Read;
use std::sync::PoisonError;

/// What the download task hands the reader.
enum Chunk {
    Data(Bytes),
    Failed(String),
    /// The engine sent the whole archive.
    End,
}

/// Aborts a task when dropped: the download stops with the build.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Stream `/tmp/rootfs/.` out of the builder into `sink`, which runs on a blocking thread.
///
/// Once the engine has sent the whole rootfs the containers are of no further use: they are removed while the
/// sink (the image writer) finishes, and [`Session::cleanup`] waits for that removal. On cancel the sink's reader
/// fails, and this waits for the sink to return (it deletes its temporary files) before reporting the interrupt.
pub(super) async fn export_rootfs(
    session: &Session,
    cancel: &CancelToken,
    sink: RootfsSink,
    report: crate::builder::BuildReport,
) -> crate::Result<()> {
    let container = session.container_name("builder");
    let docker = session.docker.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(8);
    let (remover, names, volumes, slot, id) = (
        session.docker.clone(),
        session.container_names(),
        session.volumes_to_remove(),
        session.early_removal.clone(),
        session.id.clone(),
    );
    let forward_cancel = cancel.clone();
    let forward = AbortOnDrop(tokio::spawn(async move {
        let download = DownloadFromContainerOptionsBuilder::default()
            .path(&format!("{ROOTFS_DIR}/."))
            .build();
        let mut stream = docker.download_from_container(&container, Some(download));
        loop {
            let item = tokio::select! {
                item = stream.next() => item,
                () = forward_cancel.cancelled() => return,
            };
            let chunk = match item {
                Some(Ok(bytes)) => Chunk::Data(bytes),
                Some(Err(e)) => Chunk::Failed(crate::engine::describe(&e)),
                None => {
                    let task =
                        tokio::spawn(
                            async move { remove_all(&remover, &id, &names, &volumes).await },
                        );
                    *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(task);
                    let _ = tx.send(Chunk::End).await;
                    return;
                }
            };
            let failed = matches!(chunk, Chunk::Failed(_));
            if tx.send(chunk).await.is_err() || failed {
                return;
            }
        }
    }));
    let reader = ChannelReader {
        rx,
        current: Bytes::new(),
        cancel: cancel.clone(),
        ended: false,
    };
    let result = sink.consume_blocking(reader, report).await;
    drop(forward);
    if cancel.is_cancelled() {
        return Err(BuildError::Interrupted.into());
    }
    result
}

/// A blocking reader over the chunks the download task sends.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Chunk>,
    current: Bytes,
    cancel: CancelToken,
    ended: bool,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            if self.ended {
                return Ok(0);
            }
            if self.cancel.is_cancelled() {
                return Err(std::io::Error::other("the build was interrupted"));
            }
            match self.rx.blocking_recv() {
                Some(Chunk::Data(chunk)) => self.current = chunk,
                Some(Chunk::End) => self.ended = true,
                Some(Chunk::Failed(message)) => {
                    return Err(std::io::Error::other(format!(
                        "downloading {ROOTFS_DIR} from the builder: {message}"
                    )));
                }
                None => {
                    return Err(std::io::Error::other(
                        "the rootfs download stopped before the archive ended",
                    ));
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}
