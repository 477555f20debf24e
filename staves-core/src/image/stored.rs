//! Layers kept in the local image store, read back verified: every byte of the blob is hashed as it is read (its
//! digest and size) and so is the tar inside it (the `diff_id` and the uncompressed size), in the same pass that
//! copies or recompresses it. A blob that does not match its record is reported as
//! [`StoreError::Damaged`](crate::store::StoreError::Damaged), and never becomes an image: the caller fails before
//! anything is committed.

use super::{Compression, ImageError};
use crate::Error;
use crate::store::{StoreError, StoredLayer};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

/// `sha256:<hex>` of what `hasher` saw.
fn digest_of(hasher: Sha256) -> String {
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// The stored blob as it is read: hashed, counted, and copied to `copy` (a sink when nothing is to be copied).
struct BlobReader<W: Write> {
    file: File,
    hasher: Sha256,
    size: u64,
    copy: W,
    /// Reading the blob failed (an I/O error of the store's disk, not a mismatch).
    read_failed: Option<io::Error>,
    /// Writing the copy failed (an error of the output, not of the blob).
    copy_failed: Option<io::Error>,
}

impl<W: Write> Read for BlobReader<W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.file.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                let message = e.to_string();
                self.read_failed = Some(e);
                return Err(io::Error::other(message));
            }
        };
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        if let Err(e) = self.copy.write_all(&buf[..n]) {
            let message = e.to_string();
            self.copy_failed = Some(e);
            return Err(io::Error::other(message));
        }
        Ok(n)
    }
}

/// A decompressor that gives its input back (every gzip member or zstd frame in turn).
enum Decoder<R: Read> {
    Gzip(Box<flate2::read::MultiGzDecoder<BufReader<R>>>),
    Zstd(zstd::stream::read::Decoder<'static, BufReader<R>>),
}

impl<R: Read> Decoder<R> {
    fn new(input: R, compression: Compression) -> io::Result<Self> {
        let input = BufReader::new(input);
        Ok(match compression {
            Compression::Gzip => Self::Gzip(Box::new(flate2::read::MultiGzDecoder::new(input))),
            Compression::Zstd => Self::Zstd(zstd::stream::read::Decoder::with_buffer(input)?),
        })
    }

    fn get_ref(&self) -> &R {
        match self {
            Self::Gzip(d) => d.get_ref().get_ref(),
            Self::Zstd(d) => d.get_ref().get_ref(),
        }
    }

    /// The input, at the point the decompressor stopped reading it (what it buffered was read from it already).
    fn into_inner(self) -> R {
        match self {
            Self::Gzip(d) => d.into_inner().into_inner(),
            Self::Zstd(d) => d.finish().into_inner(),
        }
    }
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Gzip(d) => d.read(buf),
            Self::Zstd(d) => d.read(buf),
        }
    }
}

/// The tar inside a stored layer, read once from its blob. Both the blob and the tar are hashed as they are read
/// (and the blob copied to `W`); [`VerifiedTar::finish`] reads what is left of both and tells whether they match
/// the layer's record. Until then, nothing read from it may be committed anywhere.
pub(crate) struct VerifiedTar<'a, W: Write> {
    blob: &'a Path,
    layer: &'a StoredLayer,
    decoder: Decoder<BlobReader<W>>,
    hasher: Sha256,
    size: u64,
    /// Why the tar could not be decompressed, when it could not.
    decode_failed: Option<String>,
}

impl<'a, W: Write> VerifiedTar<'a, W> {
    /// Start reading `layer`'s blob at `blob`, copying the compressed bytes to `copy`.
    pub(crate) fn open(blob: &'a Path, layer: &'a StoredLayer, copy: W) -> Result<Self, Error> {
        let file = match File::open(blob) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(damaged(blob, layer, "the blob is missing".to_owned()));
            }
            Err(e) => return Err(read_error(blob, e)),
        };
        let input = BlobReader {
            file,
            hasher: Sha256::new(),
            size: 0,
            copy,
            read_failed: None,
            copy_failed: None,
        };
        let decoder = Decoder::new(input, layer.compression).map_err(|e| read_error(blob, e))?;
        Ok(Self {
            blob,
            layer,
            decoder,
            hasher: Sha256::new(),
            size: 0,
            decode_failed: None,
        })
    }

    /// Read what is left of the tar and of the blob, and check both against the layer's record; `used` is what the
    /// consumer of the tar made of it. A mismatch is [`StoreError::Damaged`] whatever `used` says (an error of a
    /// consumer reading a damaged tar is a symptom of the damage); otherwise `used`'s error, if any, is returned.
    /// On success, the copy of the blob is handed back.
    pub(crate) fn finish<T, E: Into<Error>>(mut self, used: Result<T, E>) -> Result<(T, W), Error> {
        if used.is_ok() {
            // The consumer may stop at the tar's end-of-archive marker: the rest counts too.
            let _ = io::copy(&mut self, &mut io::sink());
        }
        let (blob, layer, decode_failed) = (self.blob, self.layer, self.decode_failed.take());
        let (diff_id, tar_size) = (digest_of(self.hasher), self.size);
        let mut input = self.decoder.into_inner();
        // The blob is hashed whole, whatever the decompressor made of it.
        let _ = io::copy(&mut input, &mut io::sink());
        if let Some(e) = input.read_failed {
            return Err(read_error(blob, e));
        }
        if let Some(e) = input.copy_failed {
            return Err(ImageError::Write {
                context: format!("copying the stored layer {}", blob.display()),
                source: e,
            }
            .into());
        }
        let digest = digest_of(input.hasher);
        if digest != layer.digest {
            return Err(damaged(
                blob,
                layer,
                format!("its content has the digest {digest}"),
            ));
        }
        if input.size != layer.size {
            return Err(damaged(
                blob,
                layer,
                format!("it is {} bytes, its record says {}", input.size, layer.size),
            ));
        }
        if let Some(reason) = decode_failed {
            return Err(damaged(
                blob,
                layer,
                format!("it does not decompress as {}: {reason}", layer.compression),
            ));
        }
        let used = used.map_err(Into::into)?;
        if diff_id != layer.diff_id || tar_size != layer.uncompressed_size {
            return Err(damaged(
                blob,
                layer,
                format!(
                    "its tar has the diff_id {diff_id} ({tar_size} bytes), its record says {} ({} bytes)",
                    layer.diff_id, layer.uncompressed_size
                ),
            ));
        }
        Ok((used, input.copy))
    }
}

impl<W: Write> Read for VerifiedTar<'_, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.decoder.read(buf) {
            Ok(n) => {
                self.hasher.update(&buf[..n]);
                self.size += n as u64;
                Ok(n)
            }
            Err(e) => {
                let input = self.decoder.get_ref();
                if input.read_failed.is_none()
                    && input.copy_failed.is_none()
                    && e.kind() != io::ErrorKind::Interrupted
                {
                    self.decode_failed.get_or_insert_with(|| e.to_string());
                }
                Err(e)
            }
        }
    }
}

fn damaged(blob: &Path, layer: &StoredLayer, reason: String) -> Error {
    StoreError::Damaged {
        digest: layer.digest.clone(),
        path: blob.to_path_buf(),
        reason,
    }
    .into()
}

fn read_error(blob: &Path, source: io::Error) -> Error {
    ImageError::Write {
        context: format!("reading the stored layer {}", blob.display()),
        source,
    }
    .into()
}

/// Copy the stored blob into `layer_file`, and its uncompressed tar into `tee` when there is one, in one pass that
/// checks both against the digests the layer was stored under, so a damaged store is an error and never an image.
pub(crate) fn copy_layer(
    blob: &Path,
    layer: &StoredLayer,
    layer_file: File,
    tee: Option<File>,
) -> Result<(), Error> {
    let write_err = |source| ImageError::Write {
        context: format!("copying the stored layer {}", blob.display()),
        source,
    };
    let mut tar = VerifiedTar::open(blob, layer, BufWriter::new(layer_file))?;
    let copied = match tee {
        Some(tee) => {
            let mut tee = BufWriter::new(tee);
            io::copy(&mut tar, &mut tee).and_then(|_| tee.flush())
        }
        None => io::copy(&mut tar, &mut io::sink()).map(drop),
    };
    let ((), mut copy) = tar.finish(copied.map_err(write_err))?;
    copy.flush().map_err(write_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layer blob of `tar` in `compression`, and its record.
    fn blob(dir: &Path, tar: &[u8], compression: Compression) -> (std::path::PathBuf, StoredLayer) {
        let compressed = match compression {
            Compression::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(tar).unwrap();
                e.finish().unwrap()
            }
            Compression::Zstd => zstd::stream::encode_all(tar, 1).unwrap(),
        };
        let path = dir.join("blob");
        std::fs::write(&path, &compressed).unwrap();
        let layer = StoredLayer {
            digest: digest_of(Sha256::new_with_prefix(&compressed)),
            diff_id: digest_of(Sha256::new_with_prefix(tar)),
            size: compressed.len() as u64,
            uncompressed_size: tar.len() as u64,
            compression,
        };
        (path, layer)
    }

    fn copy(blob: &Path, layer: &StoredLayer, dir: &Path) -> Result<(Vec<u8>, Vec<u8>), Error> {
        let (out, tee) = (dir.join("out"), dir.join("tee"));
        copy_layer(
            blob,
            layer,
            File::create(&out).unwrap(),
            Some(File::create(&tee).unwrap()),
        )?;
        Ok((std::fs::read(out).unwrap(), std::fs::read(tee).unwrap()))
    }

    fn reason(result: Result<(Vec<u8>, Vec<u8>), Error>) -> String {
        match result {
            Err(Error::Store(StoreError::Damaged { reason, .. })) => reason,
            other => panic!("not a damaged layer: {other:?}"),
        }
    }

    #[test]
    fn an_intact_layer_is_copied_whole_with_its_tar() {
        for compression in [Compression::Gzip, Compression::Zstd] {
            let dir = tempfile::tempdir().unwrap();
            let tar = b"not really a tar, but bytes".repeat(1000);
            let (path, layer) = blob(dir.path(), &tar, compression);
            let (out, tee) = copy(&path, &layer, dir.path()).unwrap();
            assert_eq!(out, std::fs::read(&path).unwrap());
            assert_eq!(tee, tar);
        }
    }

    #[test]
    fn every_kind_of_damage_is_reported_as_damage() {
        let dir = tempfile::tempdir().unwrap();
        let tar = b"the original tar".repeat(1000);
        let (path, layer) = blob(dir.path(), &tar, Compression::Gzip);
        let original = std::fs::read(&path).unwrap();

        // Truncated: the gzip stream ends early.
        std::fs::write(&path, &original[..original.len() / 2]).unwrap();
        assert!(reason(copy(&path, &layer, dir.path())).contains("digest"));
        // Another valid gzip, padded to the same size.
        let (other, _) = blob(
            dir.path(),
            &b"a tampered tar!!".repeat(1000),
            Compression::Gzip,
        );
        let mut tampered = std::fs::read(&other).unwrap();
        assert!(tampered.len() <= original.len());
        tampered.resize(original.len(), 0);
        std::fs::write(&path, &tampered).unwrap();
        assert!(reason(copy(&path, &layer, dir.path())).contains("digest"));
        // Missing.
        std::fs::remove_file(&path).unwrap();
        assert!(reason(copy(&path, &layer, dir.path())).contains("missing"));
        // Intact blob, but a record whose diff_id or compression is wrong.
        std::fs::write(&path, &original).unwrap();
        let wrong_diff = StoredLayer {
            diff_id: format!("sha256:{}", "0".repeat(64)),
            ..layer.clone()
        };
        assert!(reason(copy(&path, &wrong_diff, dir.path())).contains("diff_id"));
        let wrong_compression = StoredLayer {
            compression: Compression::Zstd,
            ..layer.clone()
        };
        assert!(reason(copy(&path, &wrong_compression, dir.path())).contains("decompress"));
        copy(&path, &layer, dir.path()).unwrap();
    }
}
