//! Rootfs sources: a directory, a tar stream, a seekable tar file. Each feeds canonical entries to a
//! [`LayerBuilder`].

use super::ImageError;
use super::entry::{BLOCK, Entry, Kind, cmp_paths, normalize_path, show};
use super::layer::LayerBuilder;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

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

/// Counts the bytes read through it.
struct Counting<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK) * BLOCK
}

/// Turn a tar entry's header into a normalized [`Entry`]; `None` for the root directory itself.
fn entry_from_tar<R: Read>(
    e: &mut tar::Entry<'_, R>,
    source: &str,
) -> Result<Option<Entry>, ImageError> {
    let raw_path = e.path_bytes().into_owned();
    let header = e.header();
    let bad = |what: &str, err: io::Error| ImageError::Truncated {
        source_name: source.to_owned(),
        detail: format!(
            "entry `{}` has an invalid {what} field: {err}",
            show(&raw_path)
        ),
    };
    let kind = match header.entry_type() {
        tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File,
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
    entry.uid = header.uid().map_err(|err| bad("uid", err))?;
    entry.gid = header.gid().map_err(|err| bad("gid", err))?;
    entry.mtime =
        i64::try_from(header.mtime().map_err(|err| bad("mtime", err))?).unwrap_or(i64::MAX);
    if kind == Kind::File {
        entry.size = e.size();
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
                        detail: format!("entry `{}` has an invalid PAX {what}", show(&raw_path)),
                    })
            };
            if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                entry
                    .xattrs
                    .push((name.to_vec(), record.value_bytes().to_vec()));
            } else if key == b"uid" {
                entry.uid = parse("uid")?;
            } else if key == b"gid" {
                entry.gid = parse("gid")?;
            } else if key == b"mtime" {
                // Fractional seconds are dropped; mtimes are clamped anyway.
                let v = String::from_utf8_lossy(record.value_bytes()).into_owned();
                let secs = v.split('.').next().unwrap_or("0");
                entry.mtime = secs.parse::<i64>().unwrap_or(0);
            }
        }
    }
    entry.xattrs.sort();
    Ok(Some(entry))
}

fn read_error(source: &str, context: &str, e: io::Error) -> ImageError {
    if e.kind() == io::ErrorKind::UnexpectedEof || e.to_string().contains("entire block") {
        ImageError::Truncated {
            source_name: source.to_owned(),
            detail: format!("{context}: {e}"),
        }
    } else {
        ImageError::Read {
            source_name: source.to_owned(),
            context: context.to_owned(),
            source: e,
        }
    }
}

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
    let mut counting = Counting {
        inner: reader,
        count: 0,
    };
    let mut archive = tar::Archive::new(&mut counting);
    let mut end = 0u64;
    {
        let entries = archive
            .entries()
            .map_err(|e| read_error(source, "reading the rootfs tar", e))?;
        for item in entries {
            let mut e = item.map_err(|e| read_error(source, "reading a tar header", e))?;
            end = e.raw_file_position() + padded(e.size());
            let Some(entry) = entry_from_tar(&mut e, source)? else {
                continue;
            };
            if entry.kind == Kind::File {
                layer.add(entry, Some(&mut e))?;
            } else {
                layer.add(entry, None)?;
            }
        }
    }
    let counting = archive.into_inner();
    if counting.count < end + BLOCK {
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
    offset: u64,
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
            let offset = e.raw_file_position();
            end = offset + padded(e.size());
            if let Some(entry) = entry_from_tar(&mut e, &source)? {
                if entry.kind == Kind::File && offset + entry.size > file_len {
                    return Err(ImageError::Truncated {
                        source_name: source.clone(),
                        detail: format!(
                            "entry `{}` claims {} bytes of data but the file ends first",
                            show(&entry.path),
                            entry.size
                        ),
                    });
                }
                records.push(Record { entry, offset });
            }
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
            layer.add(record.entry, Some(&mut reader))?;
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
            records[leader] = Record {
                entry: moved,
                offset,
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
