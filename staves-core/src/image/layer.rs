//! The layer: canonical entries → tar stream → parallel, deterministic compression, both digests in one pass.

use super::entry::{self, Entry, Kind, MAX_PATH_BYTES, cmp_paths, show, unrepresentable_path};
use super::{Compression, ImageError};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Size of the independently compressed blocks (gzip members or zstd frames) the layer is cut into.
pub(crate) const COMPRESSION_BLOCK: usize = 1 << 20;

/// Fixed gzip level.
pub(crate) const GZIP_LEVEL: u32 = 6;
/// Fixed zstd level: 1 is about 3× faster than gzip 6 at a smaller size (level 3 is ~13% smaller again but only
/// ~2.5× faster; see BENCHMARKS.md).
pub(crate) const ZSTD_LEVEL: i32 = 1;

/// What the layer pass produced.
#[derive(Debug, Clone)]
pub(crate) struct LayerInfo {
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
    /// `sha256:<hex>` of the compressed blob.
    pub digest: String,
    /// Size of the compressed blob.
    pub size: u64,
    /// Size of the uncompressed tar.
    pub uncompressed_size: u64,
}

/// Compresses one block; each worker keeps one, so the zstd context is reused (the output does not depend on it).
struct BlockCompressor {
    compression: Compression,
    zstd: Option<zstd::bulk::Compressor<'static>>,
}

impl BlockCompressor {
    fn compress(&mut self, data: &[u8]) -> io::Result<Vec<u8>> {
        match self.compression {
            Compression::Gzip => {
                let mut encoder = flate2::GzBuilder::new()
                    .mtime(0)
                    .operating_system(255)
                    .write(
                        Vec::with_capacity(data.len() / 2),
                        flate2::Compression::new(GZIP_LEVEL),
                    );
                encoder.write_all(data)?;
                encoder.finish()
            }
            Compression::Zstd => {
                let zstd = match &mut self.zstd {
                    Some(z) => z,
                    None => self.zstd.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL)?),
                };
                zstd.compress(data)
            }
        }
    }
}

/// The channel to the thread that hashes uncompressed blocks, and that thread.
type DiffHasher = (SyncSender<Arc<Vec<u8>>>, JoinHandle<Sha256>);

/// A block to compress and where to send the result.
type Job = (Arc<Vec<u8>>, SyncSender<io::Result<Vec<u8>>>);

/// A `Write` that hashes the uncompressed stream, optionally tees it to a file, cuts it into blocks, compresses the
/// blocks on a pool of worker threads (one per core) and writes them in order, hashing the compressed output.
///
/// At most `max_pending` blocks are in flight, so memory stays bounded by about
/// `2 × max_pending × COMPRESSION_BLOCK`.
pub(crate) struct LayerSink {
    block_size: usize,
    block: Vec<u8>,
    /// Hashes the uncompressed blocks in order on its own thread (the diff_id).
    diff: Option<DiffHasher>,
    uncompressed: u64,
    tee: Option<BufWriter<File>>,
    jobs: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    pending: VecDeque<Receiver<io::Result<Vec<u8>>>>,
    max_pending: usize,
    out: File,
    blob: Sha256,
    blob_size: u64,
}

impl LayerSink {
    pub(crate) fn new(
        out: File,
        tee: Option<File>,
        compression: Compression,
        block_size: usize,
    ) -> Self {
        let workers = std::thread::available_parallelism().map_or(1, usize::from);
        let (jobs, queue) = sync_channel::<Job>(workers);
        let queue = Arc::new(Mutex::new(queue));
        let workers: Vec<JoinHandle<()>> = (0..workers)
            .map(|_| {
                let queue = Arc::clone(&queue);
                let mut compressor = BlockCompressor {
                    compression,
                    zstd: None,
                };
                std::thread::spawn(move || {
                    loop {
                        let job = match queue.lock() {
                            Ok(q) => q.recv(),
                            Err(_) => return,
                        };
                        let Ok((data, reply)) = job else { return };
                        // The receiver is gone only when the sink was dropped early; nothing to do then.
                        let _ = reply.send(compressor.compress(&data));
                    }
                })
            })
            .collect();
        let max_pending = workers.len() * 2 + 1;
        let (blocks, hashed) = sync_channel::<Arc<Vec<u8>>>(max_pending);
        let hasher = std::thread::spawn(move || {
            let mut diff = Sha256::new();
            for block in hashed {
                diff.update(&block[..]);
            }
            diff
        });
        Self {
            block_size,
            block: Vec::with_capacity(block_size),
            diff: Some((blocks, hasher)),
            uncompressed: 0,
            tee: tee.map(|f| BufWriter::with_capacity(1 << 16, f)),
            jobs: Some(jobs),
            workers,
            pending: VecDeque::new(),
            max_pending,
            out,
            blob: Sha256::new(),
            blob_size: 0,
        }
    }

    fn submit(&mut self) -> io::Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        while self.pending.len() >= self.max_pending {
            self.drain_one()?;
        }
        let data = Arc::new(std::mem::replace(
            &mut self.block,
            Vec::with_capacity(self.block_size),
        ));
        if let Some((blocks, _)) = &self.diff {
            blocks
                .send(Arc::clone(&data))
                .map_err(|_| io::Error::other("the hashing thread stopped"))?;
        }
        let (reply, result) = sync_channel(1);
        let jobs = self
            .jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("the layer is already finished"))?;
        jobs.send((data, reply))
            .map_err(|_| io::Error::other("the compression workers stopped"))?;
        self.pending.push_back(result);
        Ok(())
    }

    fn drain_one(&mut self) -> io::Result<()> {
        if let Some(result) = self.pending.pop_front() {
            let compressed = result
                .recv()
                .map_err(|_| io::Error::other("a compression worker stopped"))??;
            self.blob.update(&compressed);
            self.blob_size += compressed.len() as u64;
            self.out.write_all(&compressed)?;
        }
        Ok(())
    }

    /// Flush everything and return the digests and sizes.
    pub(crate) fn finish(mut self) -> io::Result<(LayerInfo, Option<File>)> {
        self.submit()?;
        while !self.pending.is_empty() {
            self.drain_one()?;
        }
        self.out.flush()?;
        let tee = match self.tee.take() {
            Some(t) => Some(t.into_inner().map_err(|e| e.into_error())?),
            None => None,
        };
        let diff = match self.diff.take() {
            Some((blocks, hasher)) => {
                drop(blocks);
                hasher
                    .join()
                    .map_err(|_| io::Error::other("the hashing thread panicked"))?
            }
            None => return Err(io::Error::other("the layer is already finished")),
        };
        let info = LayerInfo {
            diff_id: format!("sha256:{}", hex::encode(diff.finalize())),
            digest: format!("sha256:{}", hex::encode(self.blob.clone().finalize())),
            size: self.blob_size,
            uncompressed_size: self.uncompressed,
        };
        Ok((info, tee))
    }
}

impl Drop for LayerSink {
    fn drop(&mut self) {
        self.pending.clear();
        self.jobs = None;
        if let Some((blocks, hasher)) = self.diff.take() {
            drop(blocks);
            let _ = hasher.join();
        }
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

impl LayerSink {
    /// Copy exactly `size` bytes of file data from `data`, reading straight into the block buffer in large reads,
    /// then pad to the tar block size. Fails with [`io::ErrorKind::UnexpectedEof`] when `data` ends early.
    pub(crate) fn copy_data(&mut self, data: &mut dyn Read, size: u64) -> io::Result<()> {
        const MAX_READ: usize = 256 << 10;
        let mut remaining = size;
        while remaining > 0 {
            let start = self.block.len();
            let want = (self.block_size - start)
                .min(MAX_READ)
                .min(usize::try_from(remaining).unwrap_or(MAX_READ));
            self.block.resize(start + want, 0);
            // `want > 0`: the block is submitted as soon as it is full, and `remaining > 0`.
            let n = match data.read(&mut self.block[start..]) {
                Ok(0) => {
                    self.block.truncate(start);
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "expected {size} bytes of data, got only {}",
                            size - remaining
                        ),
                    ));
                }
                Ok(n) => n,
                Err(e) => {
                    self.block.truncate(start);
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(e);
                }
            };
            self.block.truncate(start + n);
            if let Some(tee) = &mut self.tee {
                tee.write_all(&self.block[start..start + n])?;
            }
            self.uncompressed += n as u64;
            remaining -= n as u64;
            if self.block.len() == self.block_size {
                self.submit()?;
            }
        }
        let pad = ((entry::BLOCK - size % entry::BLOCK) % entry::BLOCK) as usize;
        self.write_all(&[0u8; entry::BLOCK as usize][..pad])
    }
}

impl Write for LayerSink {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let total = buf.len();
        self.uncompressed += total as u64;
        if let Some(tee) = &mut self.tee {
            tee.write_all(buf)?;
        }
        while !buf.is_empty() {
            let room = self.block_size - self.block.len();
            let n = room.min(buf.len());
            self.block.extend_from_slice(&buf[..n]);
            buf = &buf[n..];
            if self.block.len() == self.block_size {
                self.submit()?;
            }
        }
        Ok(total)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The inode metadata a hardlink header repeats (Docker applies a hardlink header's mode and owner to the inode).
#[derive(Debug, Clone, Copy)]
struct LinkMeta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: i64,
}

/// Takes normalized entries in canonical order, checks them, and writes the layer tar into a [`LayerSink`].
pub(crate) struct LayerBuilder {
    sink: LayerSink,
    mtime_clamp: i64,
    last: Option<Vec<u8>>,
    /// Non-directory, non-hardlink entries seen so far (hardlink targets), with their metadata.
    targets: HashMap<Vec<u8>, LinkMeta>,
    /// Hardlink entries seen so far and the path they resolve to.
    links: HashMap<Vec<u8>, Vec<u8>>,
    /// Symlink entries seen so far and their targets: nothing may be below them.
    symlinks: HashMap<Vec<u8>, Vec<u8>>,
    /// Where the rootfs comes from, for messages.
    pub(crate) source: String,
}

impl LayerBuilder {
    pub(crate) fn new(sink: LayerSink, mtime_clamp: i64, source: String) -> Self {
        Self {
            sink,
            mtime_clamp,
            last: None,
            targets: HashMap::new(),
            links: HashMap::new(),
            symlinks: HashMap::new(),
            source,
        }
    }

    /// Add one entry; `data` must yield exactly `entry.size` bytes for a regular file.
    pub(crate) fn add(
        &mut self,
        mut entry: Entry,
        data: Option<&mut dyn Read>,
    ) -> Result<(), ImageError> {
        if let Some(last) = &self.last {
            match cmp_paths(last, &entry.path) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => {
                    return Err(ImageError::Duplicate {
                        source_name: self.source.clone(),
                        entry: show(&entry.path),
                    });
                }
                std::cmp::Ordering::Greater => {
                    return Err(ImageError::OutOfOrder {
                        source_name: self.source.clone(),
                        previous: show(last),
                        entry: show(&entry.path),
                    });
                }
            }
        }
        self.check_representable(&entry)?;
        entry.mtime = entry.mtime.clamp(0, self.mtime_clamp.max(0));
        // SELinux labels describe the host that made the rootfs, not the image (and Docker's archive drops them).
        entry.xattrs.retain(|(name, _)| name != b"security.selinux");
        match entry.kind {
            Kind::Dir => {}
            Kind::Hardlink => {
                let target = self
                    .links
                    .get(&entry.link)
                    .cloned()
                    .unwrap_or_else(|| entry.link.clone());
                let Some(meta) = self.targets.get(&target) else {
                    return Err(ImageError::Hardlink {
                        source_name: self.source.clone(),
                        entry: show(&entry.path),
                        target: show(&entry.link),
                        reason: "the target is not a file that appears earlier in the rootfs"
                            .to_owned(),
                    });
                };
                entry.mode = meta.mode;
                entry.uid = meta.uid;
                entry.gid = meta.gid;
                entry.mtime = meta.mtime;
                entry.xattrs.clear();
                entry.size = 0;
                entry.link = target.clone();
                self.links.insert(entry.path.clone(), target);
            }
            _ => {
                if entry.kind == Kind::Symlink {
                    self.symlinks.insert(entry.path.clone(), entry.link.clone());
                }
                self.targets.insert(
                    entry.path.clone(),
                    LinkMeta {
                        mode: entry.mode,
                        uid: entry.uid,
                        gid: entry.gid,
                        mtime: entry.mtime,
                    },
                );
            }
        }
        if entry.kind != Kind::File {
            entry.size = 0;
        }
        let write_err = |e: io::Error| ImageError::Write {
            context: format!("writing the layer entry `{}`", show(&entry.path)),
            source: e,
        };
        entry::write_header(&mut self.sink, &entry).map_err(write_err)?;
        if entry.kind == Kind::File {
            let mut empty = io::empty();
            let data: &mut dyn Read = match data {
                Some(d) => d,
                None => &mut empty,
            };
            self.sink.copy_data(data, entry.size).map_err(|e| {
                if matches!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData
                ) {
                    ImageError::Truncated {
                        source_name: self.source.clone(),
                        detail: format!("entry `{}`: {e}", show(&entry.path)),
                    }
                } else {
                    ImageError::Read {
                        source_name: self.source.clone(),
                        context: format!("reading the data of `{}`", show(&entry.path)),
                        source: e,
                    }
                }
            })?;
        }
        self.last = Some(entry.path);
        Ok(())
    }

    /// Refuse what a layer cannot carry as written: a path Linux cannot hold, a NUL byte, a symlink target longer
    /// than `PATH_MAX`, and an entry below a symlink or a file that came earlier (extracting it would follow the
    /// symlink, or fail, so the image would not hold what the layer lists).
    fn check_representable(&self, entry: &Entry) -> Result<(), ImageError> {
        let refuse = |reason: String| ImageError::Unrepresentable {
            source_name: self.source.clone(),
            entry: show(&entry.path),
            reason,
        };
        if let Some(reason) = unrepresentable_path(&entry.path, "path") {
            return Err(refuse(reason));
        }
        if entry.kind == Kind::Symlink {
            if entry.link.contains(&0) {
                return Err(refuse(
                    "its symlink target contains a NUL byte, which no symlink can hold".to_owned(),
                ));
            }
            if entry.link.len() > MAX_PATH_BYTES {
                return Err(refuse(format!(
                    "its symlink target is {} bytes long, more than the {MAX_PATH_BYTES} bytes Linux allows",
                    entry.link.len()
                )));
            }
        }
        let ancestors = entry
            .path
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'/')
            .map(|(i, _)| &entry.path[..i]);
        for ancestor in ancestors {
            let reason = if let Some(target) = self.symlinks.get(ancestor) {
                format!(
                    "it lies below `{}`, a symlink to `{}`: extracting the layer would follow the symlink and                      write the file wherever it points",
                    show(ancestor),
                    show(target)
                )
            } else if self.targets.contains_key(ancestor) || self.links.contains_key(ancestor) {
                format!(
                    "it lies below `{}`, which is not a directory",
                    show(ancestor)
                )
            } else {
                continue;
            };
            return Err(ImageError::UnsafePath {
                entry: show(&entry.path),
                reason,
            });
        }
        Ok(())
    }

    /// Write the end-of-archive marker and finish compression.
    pub(crate) fn finish(mut self) -> Result<(LayerInfo, Option<File>), ImageError> {
        let write_err = |e: io::Error| ImageError::Write {
            context: "finishing the layer".to_owned(),
            source: e,
        };
        entry::write_trailer(&mut self.sink).map_err(write_err)?;
        self.sink.finish().map_err(write_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(data: &[u8], compression: Compression, block: usize) -> (LayerInfo, Vec<u8>) {
        let out = tempfile::tempfile().unwrap();
        let mut sink = LayerSink::new(out.try_clone().unwrap(), None, compression, block);
        sink.write_all(data).unwrap();
        let (info, _) = sink.finish().unwrap();
        let mut compressed = Vec::new();
        let mut f = out;
        use std::io::Seek;
        f.rewind().unwrap();
        f.read_to_end(&mut compressed).unwrap();
        (info, compressed)
    }

    fn sample() -> Vec<u8> {
        (0..3_000_000u32)
            .map(|i| (i % 251) as u8 ^ (i / 7000) as u8)
            .collect()
    }

    #[test]
    fn gzip_blocks_decompress_to_the_input_and_hash_right() {
        let data = sample();
        let (info, compressed) = run(&data, Compression::Gzip, 1 << 18);
        let mut decoded = Vec::new();
        flate2::read::MultiGzDecoder::new(&compressed[..])
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded, data);
        assert_eq!(
            info.diff_id,
            format!("sha256:{}", hex::encode(Sha256::digest(&data)))
        );
        assert_eq!(
            info.digest,
            format!("sha256:{}", hex::encode(Sha256::digest(&compressed)))
        );
        assert_eq!(info.size, compressed.len() as u64);
        assert_eq!(info.uncompressed_size, data.len() as u64);
    }

    #[test]
    fn zstd_frames_decompress_to_the_input() {
        let data = sample();
        let (_, compressed) = run(&data, Compression::Zstd, 1 << 18);
        let decoded = zstd::stream::decode_all(&compressed[..]).unwrap();
        assert_eq!(decoded, data);
    }

    #[test]
    fn compression_is_deterministic_whatever_the_write_pattern() {
        let data = sample();
        let (a, _) = run(&data, Compression::Gzip, 1 << 18);
        let out = tempfile::tempfile().unwrap();
        let mut sink = LayerSink::new(out, None, Compression::Gzip, 1 << 18);
        for chunk in data.chunks(777) {
            sink.write_all(chunk).unwrap();
        }
        let (b, _) = sink.finish().unwrap();
        assert_eq!(a.digest, b.digest);
    }
}
