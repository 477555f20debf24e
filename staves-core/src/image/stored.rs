//! Layers kept in the local image store: copied (and checked) into an image's staging directory, and read back as
//! tar streams.

use super::{Compression, ImageError};
use crate::store::StoredLayer;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

/// A reader of the tar inside a compressed layer blob (every gzip member or zstd frame in turn).
pub(crate) fn decompress(file: File, compression: Compression) -> io::Result<Box<dyn Read + Send>> {
    let file = BufReader::new(file);
    Ok(match compression {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(file)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(file)?),
    })
}

/// Copies everything read into `out`, hashing it and counting the bytes.
fn copy_hashed(mut from: impl Read, out: &mut impl Write) -> io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        total += n as u64;
    }
    out.flush()?;
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((format!("sha256:{hex}"), total))
}

/// Copy the stored blob into `layer_file`, and its uncompressed tar into `tee` when there is one; both are checked
/// against the digests the layer was stored under, so a damaged store is an error and never an image.
pub(crate) fn copy_layer(
    blob: &Path,
    layer: &StoredLayer,
    layer_file: File,
    tee: Option<File>,
) -> Result<(), ImageError> {
    let err = |context: &str| {
        let context = format!("{context} {}", blob.display());
        move |source| ImageError::Write { context, source }
    };
    let damaged = |what: &str| ImageError::Write {
        context: format!("reading the stored layer {}", blob.display()),
        source: io::Error::other(format!(
            "its {what} does not match the store's record; remove the store (`staves cache clear --store`) and build \
             again"
        )),
    };
    let input = File::open(blob).map_err(err("opening the stored layer"))?;
    let (digest, size) = copy_hashed(input, &mut BufWriter::new(layer_file))
        .map_err(err("copying the stored layer"))?;
    if digest != layer.digest || size != layer.size {
        return Err(damaged("digest"));
    }
    if let Some(tee) = tee {
        let input = File::open(blob).map_err(err("opening the stored layer"))?;
        let tar =
            decompress(input, layer.compression).map_err(err("decompressing the stored layer"))?;
        let (diff_id, size) = copy_hashed(tar, &mut BufWriter::new(tee))
            .map_err(err("decompressing the stored layer"))?;
        if diff_id != layer.diff_id || size != layer.uncompressed_size {
            return Err(damaged("uncompressed content"));
        }
    }
    Ok(())
}
