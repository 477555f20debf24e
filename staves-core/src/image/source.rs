//! Rootfs sources: a directory, a tar stream, a seekable tar file. Each feeds canonical entries to a
//! [`LayerBuilder`].

mod sparse;

use super::ImageError;
use super::entry::{BLOCK, Entry, Kind, cmp_paths, escape_text, normalize_path, show};
use super::layer::LayerBuilder;
use sparse::{PaxLayout, PaxSparse, SparseError, SparseMap, SparseReader};
use std::cell::Cell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::Path;
use std::rc::Rc;

/// Walk `root` depth-first with each directory's children sorted by name; symlinks are never followed.
pub(crate) fn feed_dir(root: &Path, layer: &mut LayerBuilder) -> Result<(), ImageError> {
    let source = root.display().to_string();
    let meta = std::fs::metadata(root).map_err(|e| ImageError::Read {
        source_name: source.clone(),
        context: "reading the rootfs directory".to_owned(),
        source: e,
    })?;
    if !meta.is_dir() {
        return Err(ImageError::NotARootfs {
            path: source,
            reason: "it is not a directory".to_owned(),
        });
    }
    // First path seen for each multiply-linked inode.
    let mut inodes: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    let walker = walkdir::WalkDir::new(root)
        .min_depth(1)
        .follow_links(false)
        .sort_by(|a, b| a.file_name().as_bytes().cmp(b.file_name().as_bytes()));
    for item in walker {
        let item = item.map_err(|e| {
            let path = e
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            ImageError::Read {
                source_name: source.clone(),
                context: format!("walking the rootfs at {path}"),
                source: e.into(),
            }
        })?;
        let rel = item.path().strip_prefix(root).unwrap_or(item.path());
        let path = rel.as_os_str().as_bytes().to_vec();
        let read_err = |context: &str, e: io::Error| ImageError::Read {
            source_name: source.clone(),
            context: format!("{context} `{}`", show(&path)),
            source: e,
        };
        let md = std::fs::symlink_metadata(item.path())
            .map_err(|e| read_err("reading the metadata of", e))?;
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_file() {
            Kind::File
        } else if ft.is_char_device() {
            Kind::Char
        } else if ft.is_block_device() {
            Kind::Block
        } else if ft.is_fifo() {
            Kind::Fifo
        } else {
            // Sockets cannot be stored in a tar; GNU tar and Docker skip them too.
            continue;
        };
        let mut entry = Entry::new(path.clone(), kind);
        entry.mode = md.mode() & 0o7777;
        entry.uid = u64::from(md.uid());
        entry.gid = u64::from(md.gid());
        entry.mtime = md.mtime();
        if kind != Kind::Dir && md.nlink() > 1 {
            match inodes.get(&(md.dev(), md.ino())) {
                Some(first) => {
                    entry.kind = Kind::Hardlink;
                    entry.link = first.clone();
                    layer.add(entry, None)?;
                    continue;
                }
                None => {
                    inodes.insert((md.dev(), md.ino()), path.clone());
                }
            }
        }
        let xattr_names =
            xattr::list(item.path()).map_err(|e| read_err("listing the xattrs of", e))?;
        for name in xattr_names {
            if let Some(value) =
                xattr::get(item.path(), &name).map_err(|e| read_err("reading the xattrs of", e))?
            {
                entry.xattrs.push((name.as_bytes().to_vec(), value));
            }
        }
        entry.xattrs.sort();
        match kind {
            Kind::File => {
                entry.size = md.len();
                let mut file = File::open(item.path()).map_err(|e| read_err("opening", e))?;
                layer.add(entry, Some(&mut file))?;
            }
            Kind::Symlink => {
                let target = std::fs::read_link(item.path())
                    .map_err(|e| read_err("reading the symlink", e))?;
                entry.link = target.as_os_str().as_bytes().to_vec();
                layer.add(entry, None)?;
            }
            Kind::Char | Kind::Block => {
                let rdev = md.rdev();
                entry.dev_major = (((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff)) as u32;
                entry.dev_minor = ((rdev & 0xff) | ((rdev >> 12) & !0xff)) as u32;
                layer.add(entry, None)?;
            }
            _ => layer.add(entry, None)?,
        }
    }
    Ok(())
}

/// Counts the bytes read through it, in a counter the caller keeps.
struct Counting<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK) * BLOCK
}

/// How a file entry's data is stored in the tar.
#[derive(Debug)]
enum Data {
    /// As is (also every non-file entry).
    Plain,
    /// An old-GNU sparse file (type `S`): the tar crate expands it when streaming.
    GnuSparse,
    /// A PAX sparse file whose map was in its PAX records.
    PaxMap(SparseMap),
    /// A PAX 1.0 sparse file: the map is at the start of the data.
    PaxInlineMap {
        /// The real size of the file.
        real_size: u64,
    },
}

/// Largest real size of a sparse file that is expanded (64 GiB). Its holes become zeros in the layer, so a tiny
/// archive could otherwise ask for any amount of disk (a `lastlog` grows to terabytes with large UIDs).
const MAX_SPARSE_REAL_SIZE: u64 = 64 << 30;

/// Check a sparse map against the bytes stored for it, and refuse to expand a file beyond
/// [`MAX_SPARSE_REAL_SIZE`].
fn check_sparse(
    map: &SparseMap,
    stored: u64,
    source: &str,
    entry: &[u8],
) -> Result<(), ImageError> {
    map.check(stored)
        .map_err(|d| sparse_error(source, entry, SparseError::Corrupt(d)))?;
    check_sparse_size(map.real_size, stored, source, entry)
}

fn check_sparse_size(
    real_size: u64,
    stored: u64,
    source: &str,
    entry: &[u8],
) -> Result<(), ImageError> {
    if real_size > MAX_SPARSE_REAL_SIZE {
        return Err(ImageError::Unrepresentable {
            source_name: source.to_owned(),
            entry: show(entry),
            reason: format!(
                "it is a sparse file of {real_size} bytes ({stored} stored), and a layer holds it expanded: \
                 more than the {} GiB Staves expands; remove it from the rootfs or truncate it",
                MAX_SPARSE_REAL_SIZE >> 30
            ),
        });
    }
    Ok(())
}

fn sparse_error(source: &str, entry: &[u8], e: SparseError) -> ImageError {
    match e {
        SparseError::Unsupported(what) => ImageError::Unrepresentable {
            source_name: source.to_owned(),
            entry: show(entry),
            reason: format!(
                "it is a sparse file in {what}, which Staves cannot expand; write the tar with GNU tar's \
                 default sparse format (`--sparse`), or without `--sparse`"
            ),
        },
        SparseError::Corrupt(detail) => ImageError::Truncated {
            source_name: source.to_owned(),
            detail: format!(
                "the sparse file `{}`: {}",
                show(entry),
                escape_text(&detail)
            ),
        },
        SparseError::Io(e) => read_error(
            source,
            &format!("reading the sparse map of `{}`", show(entry)),
            e,
        ),
    }
}

/// Turn a tar entry's header into a normalized [`Entry`] and how its data is stored; `None` for the root directory
/// itself. For a sparse file, `Entry::size` is the real size.
fn entry_from_tar<R: Read>(
    e: &mut tar::Entry<'_, R>,
    source: &str,
) -> Result<Option<(Entry, Data)>, ImageError> {
    let mut raw_path = e.path_bytes().into_owned();
    let shown = show(&raw_path);
    let header = e.header().clone();
    let bad = |what: &str, err: io::Error| ImageError::Truncated {
        source_name: source.to_owned(),
        detail: format!(
            "entry `{shown}` has an invalid {what} field: {}",
            escape_text(&err.to_string())
        ),
    };
    let mut data = Data::Plain;
    let kind = match header.entry_type() {
        tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File,
        tar::EntryType::GNUSparse => {
            data = Data::GnuSparse;
            Kind::File
        }
        tar::EntryType::Directory => Kind::Dir,
        tar::EntryType::Symlink => Kind::Symlink,
        tar::EntryType::Link => Kind::Hardlink,
        tar::EntryType::Char => Kind::Char,
        tar::EntryType::Block => Kind::Block,
        tar::EntryType::Fifo => Kind::Fifo,
        other => {
            return Err(ImageError::UnsupportedEntry {
                source_name: source.to_owned(),
                entry: show(&raw_path),
                kind: format!("{other:?}"),
            });
        }
    };
    let mut pax_sparse = PaxSparse::default();
    let mut xattrs = Vec::new();
    let (mut uid, mut gid, mut mtime) = (None, None, None);
    let pax = e.pax_extensions().map_err(|err| bad("PAX header", err))?;
    if let Some(pax) = pax {
        for record in pax {
            let record = record.map_err(|err| bad("PAX record", err))?;
            let key = record.key_bytes();
            let parse = |what: &str| -> Result<u64, ImageError> {
                std::str::from_utf8(record.value_bytes())
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .ok_or_else(|| ImageError::Truncated {
                        source_name: source.to_owned(),
                        detail: format!("entry `{shown}` has an invalid PAX {what}"),
                    })
            };
            if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                xattrs.push((name.to_vec(), record.value_bytes().to_vec()));
            } else if key == b"uid" {
                uid = Some(parse("uid")?);
            } else if key == b"gid" {
                gid = Some(parse("gid")?);
            } else if key == b"mtime" {
                // Fractional seconds are dropped; mtimes are clamped anyway.
                let v = String::from_utf8_lossy(record.value_bytes()).into_owned();
                let secs = v.split('.').next().unwrap_or("0");
                mtime = Some(secs.parse::<i64>().unwrap_or(0));
            } else {
                pax_sparse
                    .record(key, record.value_bytes())
                    .map_err(|detail| {
                        sparse_error(source, &raw_path, SparseError::Corrupt(detail))
                    })?;
            }
        }
    }
    if pax_sparse.present {
        if kind != Kind::File || matches!(data, Data::GnuSparse) {
            return Err(sparse_error(
                source,
                &raw_path,
                SparseError::Corrupt(
                    "it has GNU.sparse PAX records but is not a regular file".to_owned(),
                ),
            ));
        }
        data = match pax_sparse.layout() {
            Ok(PaxLayout::Map(map)) => Data::PaxMap(map),
            Ok(PaxLayout::InData { real_size }) => Data::PaxInlineMap { real_size },
            Err(err) => return Err(sparse_error(source, &raw_path, err)),
        };
        // The header names `…/GNUSparseFile.PID/NAME`; the real name is in the records (0.1, 1.0).
        if let Some(name) = pax_sparse.name.take() {
            raw_path = name;
        }
    }
    let Some(path) = normalize_path(&raw_path)? else {
        if kind == Kind::Dir {
            return Ok(None);
        }
        return Err(ImageError::UnsafePath {
            entry: show(&raw_path),
            reason: "a non-directory entry names the rootfs itself".to_owned(),
        });
    };
    let mut entry = Entry::new(path, kind);
    entry.mode = header.mode().map_err(|err| bad("mode", err))? & 0o7777;
    entry.uid = match uid {
        Some(uid) => uid,
        None => header.uid().map_err(|err| bad("uid", err))?,
    };
    entry.gid = match gid {
        Some(gid) => gid,
        None => header.gid().map_err(|err| bad("gid", err))?,
    };
    entry.mtime = match mtime {
        Some(mtime) => mtime,
        None => i64::try_from(header.mtime().map_err(|err| bad("mtime", err))?).unwrap_or(i64::MAX),
    };
    if kind == Kind::File {
        entry.size = match &data {
            Data::Plain | Data::GnuSparse => e.size(),
            Data::PaxMap(map) => map.real_size,
            Data::PaxInlineMap { real_size } => *real_size,
        };
    }
    if matches!(kind, Kind::Char | Kind::Block) {
        entry.dev_major = header
            .device_major()
            .map_err(|err| bad("device major", err))?
            .unwrap_or(0);
        entry.dev_minor = header
            .device_minor()
            .map_err(|err| bad("device minor", err))?
            .unwrap_or(0);
    }
    let link = e
        .link_name_bytes()
        .map(|l| l.into_owned())
        .unwrap_or_default();
    match kind {
        Kind::Symlink => entry.link = link,
        Kind::Hardlink => match normalize_path(&link) {
            Ok(Some(target)) => entry.link = target,
            Ok(None) | Err(_) => {
                return Err(ImageError::Hardlink {
                    source_name: source.to_owned(),
                    entry: show(&entry.path),
                    target: show(&link),
                    reason: "the target escapes the rootfs or is the rootfs itself".to_owned(),
                });
            }
        },
        _ => {}
    }
    xattrs.sort();
    entry.xattrs = xattrs;
    Ok(Some((entry, data)))
}

/// The bytes the tar stores for an entry's data (for a sparse file, the stored chunks, not the real size).
fn stored_size<R: Read>(e: &tar::Entry<'_, R>, data: &Data) -> Result<u64, io::Error> {
    match data {
        Data::GnuSparse => e.header().entry_size(),
        _ => Ok(e.size()),
    }
}

fn read_error(source: &str, context: &str, e: io::Error) -> ImageError {
    // The tar reader reports a malformed archive as `Other` (a checksum mismatch, a bad number field, …) or
    // `InvalidData`; only the remaining kinds are failures to read.
    if matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData | io::ErrorKind::Other
    ) {
        let detail = e.to_string();
        let hint = if detail.contains("checksum") || detail.contains("cksum") {
            " (is it a tar archive?)"
        } else {
            ""
        };
        // The reader's message may quote whole fields of garbage: escaped, and cut short.
        let mut detail = escape_text(&detail);
        if let Some((cut, _)) = detail.char_indices().nth(MAX_DETAIL_CHARS) {
            detail.truncate(cut);
            detail.push('…');
        }
        ImageError::Truncated {
            source_name: source.to_owned(),
            detail: format!("{context}: {detail}{hint}"),
        }
    } else {
        ImageError::Read {
            source_name: source.to_owned(),
            context: context.to_owned(),
            source: e,
        }
    }
}

/// How much of the tar reader's own message an error quotes.
const MAX_DETAIL_CHARS: usize = 160;

fn missing_trailer(source: &str) -> ImageError {
    ImageError::Truncated {
        source_name: source.to_owned(),
        detail: "the archive ends without its end-of-archive marker (two zero blocks)".to_owned(),
    }
}

/// Stream a tar whose entries are in canonical order (an out-of-order entry is an error).
pub(crate) fn feed_tar_stream(
    reader: &mut dyn Read,
    source: &str,
    layer: &mut LayerBuilder,
) -> Result<(), ImageError> {
    let count = Rc::new(Cell::new(0u64));
    let mut counting = Counting {
        inner: reader,
        count: Rc::clone(&count),
    };
    let mut archive = tar::Archive::new(&mut counting);
    let mut end = 0u64;
    {
        let entries = archive
            .entries()
            .map_err(|e| read_error(source, "reading the rootfs tar", e))?;
        for item in entries {
            let mut e = item.map_err(|e| read_error(source, "reading a tar header", e))?;
            let Some((entry, data)) = entry_from_tar(&mut e, source)? else {
                end = e.raw_file_position() + padded(e.size());
                continue;
            };
            let stored = stored_size(&e, &data)
                .map_err(|err| read_error(source, "reading a tar header", err))?;
            end = e.raw_file_position() + padded(stored);
            let path = entry.path.clone();
            match data {
                Data::GnuSparse => {
                    // The tar crate expands it (and checks its map) as it is read.
                    check_sparse_size(entry.size, stored, source, &path)?;
                    layer.add(entry, Some(&mut e))?
                }
                Data::Plain if entry.kind == Kind::File => layer.add(entry, Some(&mut e))?,
                Data::Plain => layer.add(entry, None)?,
                Data::PaxMap(map) => {
                    check_sparse(&map, stored, source, &path)?;
                    layer.add(entry, Some(&mut SparseReader::new(&mut e, map)))?;
                }
                Data::PaxInlineMap { real_size } => {
                    let (chunks, used) = sparse::read_map_in_data(&mut e, stored)
                        .map_err(|err| sparse_error(source, &path, err))?;
                    let map = SparseMap { real_size, chunks };
                    check_sparse(&map, stored - used, source, &path)?;
                    layer.add(entry, Some(&mut SparseReader::new(&mut e, map)))?;
                }
            }
            // An old-GNU sparse entry has extension headers between its header and its data; once the data is read,
            // the reader is at its end.
            end = end.max(padded(count.get()));
        }
    }
    let counting = archive.into_inner();
    if count.get() < end + BLOCK {
        return Err(missing_trailer(source));
    }
    // Read the rest of the end-of-archive padding (tar writers pad to a 10 KiB record, some to more), so that a
    // streaming source sees its end and knows it was read whole. Bounded: whatever follows is not ours to read.
    let _ = std::io::copy(
        &mut counting.inner.take(TRAILING_PADDING_LIMIT),
        &mut std::io::sink(),
    );
    Ok(())
}

/// How much of what follows a tar stream's end-of-archive marker is read (and ignored).
const TRAILING_PADDING_LIMIT: u64 = 1 << 20;

/// One entry of a seekable tar: its normalized header and where its data is.
struct Record {
    entry: Entry,
    /// Where the stored data starts.
    offset: u64,
    /// The map, for a sparse file: the stored data is its chunks back to back.
    sparse: Option<SparseMap>,
}

/// Reads a file from an offset with positional reads, leaving the file's own offset alone.
struct ReadAt<'f> {
    file: &'f File,
    offset: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// Where a seekable entry's stored data is, its size, and its sparse map if it is sparse.
fn locate_data(
    file: &File,
    e: &tar::Entry<'_, &File>,
    data: Data,
    path: &[u8],
    source: &str,
) -> Result<(u64, u64, Option<SparseMap>), ImageError> {
    let stored =
        stored_size(e, &data).map_err(|err| read_error(source, "reading a tar header", err))?;
    let offset = e.raw_file_position();
    match data {
        Data::Plain => Ok((offset, stored, None)),
        Data::GnuSparse => {
            let header_pos = e.raw_header_position();
            let (map, extensions) = sparse::gnu_map(e.header(), |i| {
                let mut block = [0u8; BLOCK as usize];
                file.read_exact_at(&mut block, header_pos + BLOCK * (i + 1))?;
                Ok(block)
            })
            .map_err(|err| sparse_error(source, path, err))?;
            check_sparse(&map, stored, source, path)?;
            Ok((header_pos + BLOCK * (1 + extensions), stored, Some(map)))
        }
        Data::PaxMap(map) => {
            check_sparse(&map, stored, source, path)?;
            Ok((offset, stored, Some(map)))
        }
        Data::PaxInlineMap { real_size } => {
            let mut reader = ReadAt { file, offset };
            let (chunks, used) = sparse::read_map_in_data(&mut reader, stored)
                .map_err(|err| sparse_error(source, path, err))?;
            let map = SparseMap { real_size, chunks };
            check_sparse(&map, stored - used, source, path)?;
            Ok((offset + used, stored - used, Some(map)))
        }
    }
}

/// Read a seekable tar file: headers first, sorted into canonical order, then data by offset.
pub(crate) fn feed_tar_file(path: &Path, layer: &mut LayerBuilder) -> Result<(), ImageError> {
    let source = path.display().to_string();
    let open_err = |e| ImageError::Read {
        source_name: source.clone(),
        context: "opening the rootfs tar".to_owned(),
        source: e,
    };
    let mut file = File::open(path).map_err(open_err)?;
    let file_len = file.metadata().map_err(open_err)?.len();
    if file.metadata().map_err(open_err)?.is_dir() {
        return Err(ImageError::NotARootfs {
            path: source,
            reason: "it is a directory; use write_dir".to_owned(),
        });
    }
    let mut records = Vec::new();
    let mut end = 0u64;
    {
        let mut archive = tar::Archive::new(&file);
        let entries = archive
            .entries_with_seek()
            .map_err(|e| read_error(&source, "reading the rootfs tar", e))?;
        for item in entries {
            let mut e = item.map_err(|e| read_error(&source, "reading a tar header", e))?;
            let Some((entry, data)) = entry_from_tar(&mut e, &source)? else {
                end = e.raw_file_position() + padded(e.size());
                continue;
            };
            let (offset, stored, sparse) = locate_data(&file, &e, data, &entry.path, &source)?;
            // For a PAX 1.0 sparse file the map (whole blocks) is already skipped: the padding comes out the same.
            end = offset + padded(stored);
            if entry.kind == Kind::File && offset + stored > file_len {
                return Err(ImageError::Truncated {
                    source_name: source.clone(),
                    detail: format!(
                        "entry `{}` claims {} bytes of data but the file ends first",
                        show(&entry.path),
                        stored
                    ),
                });
            }
            records.push(Record {
                entry,
                offset,
                sparse,
            });
        }
    }
    // The tar crate stops at EOF or at a zero block; require the zero block.
    let mut trailer = [0u8; BLOCK as usize];
    file.seek(SeekFrom::Start(end))
        .and_then(|_| file.read_exact(&mut trailer))
        .map_err(|_| missing_trailer(&source))?;
    if trailer.iter().any(|&b| b != 0) {
        return Err(missing_trailer(&source));
    }
    records.sort_by(|a, b| cmp_paths(&a.entry.path, &b.entry.path));
    canonicalize_hardlinks(&mut records, &source)?;
    for record in records {
        if record.entry.kind == Kind::File {
            file.seek(SeekFrom::Start(record.offset))
                .map_err(|e| ImageError::Read {
                    source_name: source.clone(),
                    context: format!("seeking to the data of `{}`", show(&record.entry.path)),
                    source: e,
                })?;
            // Reads are large (up to 256 KiB, straight into the compression block): no buffering needed.
            let mut reader = &file;
            match record.sparse {
                Some(map) => {
                    layer.add(record.entry, Some(&mut SparseReader::new(&mut reader, map)))?
                }
                None => layer.add(record.entry, Some(&mut reader))?,
            }
        } else {
            layer.add(record.entry, None)?;
        }
    }
    Ok(())
}

/// After sorting, make each hardlink group canonical: the first path (in canonical order) carries the data and
/// metadata of the inode, and every other member is a hardlink to it — as a sorted directory walk emits them.
fn canonicalize_hardlinks(records: &mut [Record], source: &str) -> Result<(), ImageError> {
    let index: HashMap<Vec<u8>, usize> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (r.entry.path.clone(), i))
        .collect();
    // root (data-carrying record) → members (hardlink records)
    let mut groups: HashMap<usize, Vec<usize>> = HashMap::new();
    for i in 0..records.len() {
        if records[i].entry.kind != Kind::Hardlink {
            continue;
        }
        let mut current = i;
        let mut steps = 0;
        while records[current].entry.kind == Kind::Hardlink {
            let target = &records[current].entry.link;
            let Some(&next) = index.get(target) else {
                return Err(ImageError::Hardlink {
                    source_name: source.to_owned(),
                    entry: show(&records[i].entry.path),
                    target: show(&records[i].entry.link),
                    reason: "the target is not in the archive".to_owned(),
                });
            };
            steps += 1;
            if steps > records.len() || records[next].entry.kind == Kind::Dir {
                return Err(ImageError::Hardlink {
                    source_name: source.to_owned(),
                    entry: show(&records[i].entry.path),
                    target: show(&records[i].entry.link),
                    reason: "the target is a directory or a hardlink loop".to_owned(),
                });
            }
            current = next;
        }
        groups.entry(current).or_default().push(i);
    }
    for (root, members) in groups {
        let leader = members.iter().copied().chain([root]).min().unwrap_or(root);
        if leader != root {
            let mut moved = records[root].entry.clone();
            moved.path = records[leader].entry.path.clone();
            let offset = records[root].offset;
            let sparse = records[root].sparse.take();
            records[leader] = Record {
                entry: moved,
                offset,
                sparse,
            };
            let leader_path = records[leader].entry.path.clone();
            let root_path = records[root].entry.path.clone();
            records[root].entry = Entry {
                kind: Kind::Hardlink,
                link: leader_path,
                size: 0,
                ..Entry::new(root_path, Kind::Hardlink)
            };
        }
        let leader_path = records[leader].entry.path.clone();
        for m in members {
            if m != leader {
                records[m].entry.link = leader_path.clone();
            }
        }
    }
    Ok(())
}
