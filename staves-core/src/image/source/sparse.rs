//! Sparse files in a rootfs tar, expanded to their real content (holes read as zeros).
//!
//! GNU tar writes sparse files in four ways, and every one is read here:
//! - the old GNU format (`--format=gnu`): entry type `S`, the map in the header and in extension blocks after it.
//!   The tar crate expands these itself when streaming; for a seekable file the map is read here;
//! - PAX 0.0 (`--sparse-version=0.0`): repeated `GNU.sparse.offset` / `GNU.sparse.numbytes` records;
//! - PAX 0.1: one `GNU.sparse.map` record (`offset,size,offset,size,…`);
//! - PAX 1.0 (the default of `--format=posix`): `GNU.sparse.major=1`, `GNU.sparse.minor=0`, and the map as decimal
//!   lines at the start of the entry's data, padded to a 512-byte block.
//!
//! In the PAX formats the real name is `GNU.sparse.name` (the header names `…/GNUSparseFile.PID/NAME`) and the real
//! size is `GNU.sparse.size` or `GNU.sparse.realsize`. The stored data is the map's data chunks, back to back.

use std::io::{self, Read};

/// Most data chunks accepted in one sparse map (GNU tar writes one per run of data; a million is far beyond any
/// real file, and bounds the memory a hostile map can claim).
const MAX_CHUNKS: u64 = 1 << 20;

/// A sparse file's map: the real size, and each chunk of data as `(offset in the file, length)`, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SparseMap {
    pub(crate) real_size: u64,
    pub(crate) chunks: Vec<(u64, u64)>,
}

impl SparseMap {
    /// Check the map against the bytes stored for it: chunks in order, not overlapping, inside the real size, and
    /// their lengths adding up to exactly `stored` bytes.
    pub(crate) fn check(&self, stored: u64) -> Result<(), String> {
        let mut end = 0u64;
        let mut total = 0u64;
        for &(offset, len) in &self.chunks {
            if offset < end {
                return Err(format!(
                    "its sparse map has a chunk at offset {offset} that overlaps the previous one or is out of order"
                ));
            }
            end = offset
                .checked_add(len)
                .filter(|&e| e <= self.real_size)
                .ok_or_else(|| {
                    format!(
                        "its sparse map has a chunk at offset {offset} of {len} bytes, past the file's size of {} \
                         bytes",
                        self.real_size
                    )
                })?;
            total = total
                .checked_add(len)
                .ok_or_else(|| "its sparse map lists more data than fits a u64".to_owned())?;
        }
        if total != stored {
            return Err(format!(
                "its sparse map lists {total} bytes of data but the entry stores {stored}"
            ));
        }
        Ok(())
    }
}

/// What the PAX records of an entry say about sparseness.
#[derive(Debug, Default)]
pub(crate) struct PaxSparse {
    major: Option<String>,
    minor: Option<String>,
    size: Option<u64>,
    numblocks: Option<u64>,
    map: Option<String>,
    offsets: Vec<u64>,
    numbytes: Vec<u64>,
    /// `GNU.sparse.name`: the real path.
    pub(crate) name: Option<Vec<u8>>,
    /// Any `GNU.sparse.*` record was seen.
    pub(crate) present: bool,
}

/// How a PAX sparse entry's map is found.
#[derive(Debug)]
pub(crate) enum PaxLayout {
    /// The map was in the PAX records (0.0, 0.1).
    Map(SparseMap),
    /// The map is at the start of the data (1.0); the real size is known.
    InData { real_size: u64 },
}

fn number(key: &str, value: &[u8]) -> Result<u64, String> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .ok_or_else(|| format!("its PAX record {key} is not a number"))
}

impl PaxSparse {
    /// Take one PAX record; records that are not `GNU.sparse.*` are ignored.
    pub(crate) fn record(&mut self, key: &[u8], value: &[u8]) -> Result<(), String> {
        let Some(name) = key.strip_prefix(b"GNU.sparse.") else {
            return Ok(());
        };
        self.present = true;
        let text = || String::from_utf8_lossy(value).trim().to_owned();
        match name {
            b"major" => self.major = Some(text()),
            b"minor" => self.minor = Some(text()),
            b"size" | b"realsize" => {
                self.size = Some(number("GNU.sparse.size", value)?);
            }
            b"numblocks" => self.numblocks = Some(number("GNU.sparse.numblocks", value)?),
            b"map" => self.map = Some(text()),
            b"offset" => {
                self.offsets.push(number("GNU.sparse.offset", value)?);
                if self.offsets.len() as u64 > MAX_CHUNKS {
                    return Err(format!("its sparse map has more than {MAX_CHUNKS} chunks"));
                }
            }
            b"numbytes" => self.numbytes.push(number("GNU.sparse.numbytes", value)?),
            b"name" => self.name = Some(value.to_vec()),
            // Unknown GNU.sparse records carry nothing needed to expand the file.
            _ => {}
        }
        Ok(())
    }

    /// Which layout the records describe. `Err(Unsupported)` names a version this reader does not know.
    pub(crate) fn layout(&self) -> Result<PaxLayout, SparseError> {
        if let Some(major) = &self.major {
            let minor = self.minor.as_deref().unwrap_or("");
            if major != "1" || minor != "0" {
                return Err(SparseError::Unsupported(format!(
                    "PAX sparse file format {major}.{minor}"
                )));
            }
            let real_size = self.size.ok_or_else(|| {
                SparseError::Corrupt("its PAX records have no GNU.sparse.realsize".to_owned())
            })?;
            return Ok(PaxLayout::InData { real_size });
        }
        let real_size = self.size.ok_or_else(|| {
            SparseError::Corrupt("its PAX records have no GNU.sparse.size".to_owned())
        })?;
        let pairs: Vec<u64> = if let Some(map) = &self.map {
            if map.is_empty() {
                Vec::new()
            } else {
                map.split(',')
                    .map(|n| {
                        n.trim().parse::<u64>().map_err(|_| {
                            SparseError::Corrupt(
                                "its GNU.sparse.map record is not a list of numbers".to_owned(),
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?
            }
        } else {
            if self.offsets.len() != self.numbytes.len() {
                return Err(SparseError::Corrupt(
                    "its GNU.sparse.offset and GNU.sparse.numbytes records do not pair up"
                        .to_owned(),
                ));
            }
            self.offsets
                .iter()
                .zip(&self.numbytes)
                .flat_map(|(&o, &n)| [o, n])
                .collect()
        };
        if pairs.len() % 2 != 0 {
            return Err(SparseError::Corrupt(
                "its sparse map has an odd number of values".to_owned(),
            ));
        }
        if pairs.len() as u64 / 2 > MAX_CHUNKS {
            return Err(SparseError::Corrupt(format!(
                "its sparse map has more than {MAX_CHUNKS} chunks"
            )));
        }
        if let Some(n) = self.numblocks {
            if n != pairs.len() as u64 / 2 {
                return Err(SparseError::Corrupt(format!(
                    "its GNU.sparse.numblocks says {n} chunks but the map has {}",
                    pairs.len() / 2
                )));
            }
        }
        let chunks = pairs.chunks_exact(2).map(|p| (p[0], p[1])).collect();
        Ok(PaxLayout::Map(SparseMap { real_size, chunks }))
    }
}

/// Why a sparse entry cannot be expanded.
#[derive(Debug)]
pub(crate) enum SparseError {
    /// A format this reader does not know.
    Unsupported(String),
    /// The map is malformed or disagrees with the data.
    Corrupt(String),
    /// Reading the map failed.
    Io(io::Error),
}

/// Read a PAX 1.0 map from the start of an entry's data: decimal numbers, one per line (the count, then offset and
/// size of each chunk), padded with zeros to a 512-byte block. Returns the chunks and how many bytes the map took.
pub(crate) fn read_map_in_data(
    data: &mut dyn Read,
    stored: u64,
) -> Result<(Vec<(u64, u64)>, u64), SparseError> {
    let mut numbers: Vec<u64> = Vec::new();
    let mut wanted: Option<u64> = None;
    let mut current: Option<u64> = None;
    let mut consumed = 0u64;
    let mut block = [0u8; 512];
    loop {
        if consumed + 512 > stored {
            return Err(SparseError::Corrupt(
                "its sparse map runs past the end of its data".to_owned(),
            ));
        }
        data.read_exact(&mut block).map_err(SparseError::Io)?;
        consumed += 512;
        for &b in &block {
            if wanted.is_some_and(|w| numbers.len() as u64 == 1 + 2 * w) {
                break;
            }
            match b {
                b'0'..=b'9' => {
                    let digit = u64::from(b - b'0');
                    current = Some(
                        current
                            .unwrap_or(0)
                            .checked_mul(10)
                            .and_then(|n| n.checked_add(digit))
                            .ok_or_else(|| {
                                SparseError::Corrupt(
                                    "its sparse map has a number too large".to_owned(),
                                )
                            })?,
                    );
                }
                b'\n' => {
                    let n = current.take().ok_or_else(|| {
                        SparseError::Corrupt("its sparse map has an empty line".to_owned())
                    })?;
                    if wanted.is_none() {
                        if n > MAX_CHUNKS {
                            return Err(SparseError::Corrupt(format!(
                                "its sparse map has {n} chunks, more than the {MAX_CHUNKS} accepted"
                            )));
                        }
                        wanted = Some(n);
                    }
                    numbers.push(n);
                }
                _ => {
                    return Err(SparseError::Corrupt(
                        "its sparse map is not a list of decimal numbers".to_owned(),
                    ));
                }
            }
        }
        if let Some(w) = wanted {
            if numbers.len() as u64 == 1 + 2 * w {
                let chunks = numbers[1..].chunks_exact(2).map(|p| (p[0], p[1])).collect();
                return Ok((chunks, consumed));
            }
        }
    }
}

/// Read the map of an old-GNU sparse entry (type `S`): up to four chunks in the header, then, while the "extended"
/// flag is set, extension blocks of 21 chunks each. `read_block(i)` reads the `i`-th extension block (from 0).
/// Returns the map and the number of extension blocks.
pub(crate) fn gnu_map(
    header: &tar::Header,
    mut read_block: impl FnMut(u64) -> io::Result<[u8; 512]>,
) -> Result<(SparseMap, u64), SparseError> {
    let corrupt = |e: io::Error| SparseError::Corrupt(format!("its sparse header is invalid: {e}"));
    let gnu = header.as_gnu().ok_or_else(|| {
        SparseError::Corrupt("it is a GNU sparse entry without a GNU header".to_owned())
    })?;
    let real_size = gnu.real_size().map_err(corrupt)?;
    let mut chunks = Vec::new();
    let mut push = |block: &tar::GnuSparseHeader| -> Result<(), SparseError> {
        if block.is_empty() {
            return Ok(());
        }
        if chunks.len() as u64 >= MAX_CHUNKS {
            return Err(SparseError::Corrupt(format!(
                "its sparse map has more than {MAX_CHUNKS} chunks"
            )));
        }
        chunks.push((
            block.offset().map_err(corrupt)?,
            block.length().map_err(corrupt)?,
        ));
        Ok(())
    };
    for block in &gnu.sparse {
        push(block)?;
    }
    let mut extensions = 0u64;
    let mut extended = gnu.is_extended();
    while extended {
        let bytes = read_block(extensions).map_err(SparseError::Io)?;
        extensions += 1;
        let mut ext = tar::GnuExtSparseHeader::new();
        *ext.as_mut_bytes() = bytes;
        for block in ext.sparse() {
            push(block)?;
        }
        extended = ext.is_extended();
    }
    // The map may end with a zero-length chunk at the real size (GNU tar writes one for a trailing hole).
    Ok((SparseMap { real_size, chunks }, extensions))
}

/// Reads a sparse file's real content: zeros for the holes, the stored chunks in between.
pub(crate) struct SparseReader<'a> {
    inner: &'a mut dyn Read,
    chunks: std::vec::IntoIter<(u64, u64)>,
    /// Position in the real file.
    pos: u64,
    /// The chunk being read: (start, end) in the real file.
    current: Option<(u64, u64)>,
    real_size: u64,
}

impl<'a> SparseReader<'a> {
    /// `inner` yields the stored chunks back to back; the map must have passed [`SparseMap::check`].
    pub(crate) fn new(inner: &'a mut dyn Read, map: SparseMap) -> Self {
        Self {
            inner,
            chunks: map.chunks.into_iter(),
            pos: 0,
            current: None,
            real_size: map.real_size,
        }
    }
}

impl Read for SparseReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.current.is_none_or(|(_, end)| self.pos >= end) {
                self.current = self.chunks.next().map(|(o, l)| (o, o + l));
            }
            // In a hole before the next chunk (or at the end of the file).
            let hole_end = match self.current {
                Some((start, _)) => start,
                None => self.real_size,
            };
            if self.pos < hole_end {
                let n = usize::try_from(hole_end - self.pos)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                buf[..n].fill(0);
                self.pos += n as u64;
                return Ok(n);
            }
            match self.current {
                None => return Ok(0),
                Some((_, end)) if self.pos >= end => continue,
                Some((_, end)) => {
                    let want = usize::try_from(end - self.pos)
                        .unwrap_or(usize::MAX)
                        .min(buf.len());
                    let n = self.inner.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the sparse file's stored data ends early",
                        ));
                    }
                    self.pos += n as u64;
                    return Ok(n);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(map: SparseMap, stored: &[u8]) -> Vec<u8> {
        map.check(stored.len() as u64).unwrap();
        let mut inner = stored;
        let mut out = Vec::new();
        SparseReader::new(&mut inner, map)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn holes_read_as_zeros_around_the_chunks() {
        let map = SparseMap {
            real_size: 10,
            chunks: vec![(2, 3), (7, 1), (10, 0)],
        };
        assert_eq!(expand(map, b"abcd"), b"\0\0abc\0\0d\0\0");
        let empty = SparseMap {
            real_size: 4,
            chunks: vec![],
        };
        assert_eq!(expand(empty, b""), b"\0\0\0\0");
    }

    #[test]
    fn bad_maps_are_refused() {
        let overlap = SparseMap {
            real_size: 10,
            chunks: vec![(2, 3), (4, 1)],
        };
        assert!(overlap.check(4).unwrap_err().contains("overlaps"));
        let past = SparseMap {
            real_size: 4,
            chunks: vec![(2, 3)],
        };
        assert!(past.check(3).unwrap_err().contains("past the file's size"));
        let short = SparseMap {
            real_size: 10,
            chunks: vec![(2, 3)],
        };
        assert!(short.check(4).unwrap_err().contains("stores 4"));
    }

    #[test]
    fn a_map_in_the_data_is_read_up_to_its_padding() {
        let mut data = b"2\n1024\n3\n4096\n0\n".to_vec();
        data.resize(512, 0);
        data.extend_from_slice(b"xyz");
        let mut reader = &data[..];
        let (chunks, used) = read_map_in_data(&mut reader, data.len() as u64).unwrap();
        assert_eq!(chunks, vec![(1024, 3), (4096, 0)]);
        assert_eq!(used, 512);
        assert_eq!(reader, b"xyz");
        let mut garbage = &[b'x'; 512][..];
        assert!(matches!(
            read_map_in_data(&mut garbage, 512),
            Err(SparseError::Corrupt(_))
        ));
    }
}
