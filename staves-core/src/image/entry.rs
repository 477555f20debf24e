//! Normalized rootfs entries and the deterministic tar encoding of them.

use super::ImageError;
use std::cmp::Ordering;
use std::io::{self, Read, Write};

/// The tar block size.
pub(crate) const BLOCK: u64 = 512;

/// What kind of file an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Char,
    Block,
    Fifo,
}

/// One normalized entry of a rootfs: everything that goes into its tar header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Relative path, no leading `./` or `/`, no trailing `/`, no `.`/`..`/empty components.
    pub path: Vec<u8>,
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky (`& 0o7777`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
    /// Data size (regular files only; 0 otherwise).
    pub size: u64,
    /// Symlink target (kept as written) or hardlink target (a normalized path).
    pub link: Vec<u8>,
    pub dev_major: u32,
    pub dev_minor: u32,
    /// Extended attributes, sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Entry {
    /// An entry with the given path and kind and every other field zero.
    pub(crate) fn new(path: Vec<u8>, kind: Kind) -> Self {
        Self {
            path,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: 0,
            size: 0,
            link: Vec::new(),
            dev_major: 0,
            dev_minor: 0,
            xattrs: Vec::new(),
        }
    }
}

/// Render a path from an untrusted rootfs for messages: printable text stays as it is; control characters, bidi
/// controls, backslashes and bytes that are not UTF-8 are escaped as Rust's `{:?}` would (`\n`, `\u{1b}`,
/// `\xff`), so a name can never write raw bytes to a terminal. A name longer than [`MAX_SHOWN_CHARS`] is cut short,
/// with its length in bytes.
pub(crate) fn show(path: &[u8]) -> String {
    let mut out = String::with_capacity(path.len().min(MAX_SHOWN_CHARS + 32));
    let mut shown = 0usize;
    let mut consumed = 0usize;
    'chunks: for chunk in path.utf8_chunks() {
        for c in chunk.valid().chars() {
            if shown == MAX_SHOWN_CHARS {
                break 'chunks;
            }
            push_escaped(&mut out, c);
            shown += 1;
            consumed += c.len_utf8();
        }
        for b in chunk.invalid() {
            if shown == MAX_SHOWN_CHARS {
                break 'chunks;
            }
            out.push_str(&format!("\\x{b:02x}"));
            shown += 1;
            consumed += 1;
        }
    }
    if consumed < path.len() {
        out.push_str(&format!("… ({} bytes in all)", path.len()));
    }
    out
}

/// How many characters of a name [`show`] prints.
const MAX_SHOWN_CHARS: usize = 256;

/// [`show`] for text that may quote untrusted bytes (e.g. an error message of the tar reader).
pub(crate) fn escape_text(text: &str) -> String {
    show(text.as_bytes())
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\0' => out.push_str("\\0"),
        // Bidi embedding/override/isolate marks reorder the text around them on a terminal.
        '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {
            out.push_str(&c.escape_unicode().to_string())
        }
        c if c.is_control() => out.push_str(&c.escape_unicode().to_string()),
        c => out.push(c),
    }
}

/// Longest path an image layer can carry: Linux's `PATH_MAX` (4096, with the terminating NUL) for the absolute path
/// the entry is extracted to.
pub(crate) const MAX_PATH_BYTES: usize = 4095;

/// Longest path component (Linux's `NAME_MAX`).
pub(crate) const MAX_NAME_BYTES: usize = 255;

/// Why a normalized path (or a symlink target) cannot be carried by a layer, if it cannot.
pub(crate) fn unrepresentable_path(path: &[u8], what: &str) -> Option<String> {
    if path.contains(&0) {
        return Some(format!(
            "its {what} contains a NUL byte, which no file system path can hold"
        ));
    }
    // `+ 1` for the leading `/` the path gets when the layer is extracted.
    if path.len() + 1 > MAX_PATH_BYTES {
        return Some(format!(
            "its {what} is {} bytes long, more than the {MAX_PATH_BYTES} bytes a Linux path may have (PATH_MAX)",
            path.len() + 1
        ));
    }
    if let Some(long) = path
        .split(|&b| b == b'/')
        .find(|c| c.len() > MAX_NAME_BYTES)
    {
        return Some(format!(
            "its {what} has a component of {} bytes, more than the {MAX_NAME_BYTES} a file name may have (NAME_MAX)",
            long.len()
        ));
    }
    None
}

/// Normalize a path from an untrusted rootfs.
///
/// Leading `/` and `./` are dropped (an absolute path is re-rooted at the rootfs, as GNU tar does), empty and `.`
/// components are dropped, and a `..` component is an error. Returns `None` for the root itself.
pub(crate) fn normalize_path(raw: &[u8]) -> Result<Option<Vec<u8>>, ImageError> {
    let mut out: Vec<u8> = Vec::with_capacity(raw.len());
    for component in raw.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => {
                return Err(ImageError::UnsafePath {
                    entry: show(raw),
                    reason: "it has a `..` component, which could point outside the rootfs"
                        .to_owned(),
                });
            }
            c => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    Ok(if out.is_empty() { None } else { Some(out) })
}

/// The canonical entry order: component-wise byte comparison (`a` < `a/x` < `a-b`).
///
/// This is the order of a depth-first walk that visits each directory's children sorted by name, which is what a
/// sorted directory walk, Docker's archive API and GNU `tar --sort=name` produce.
pub(crate) fn cmp_paths(a: &[u8], b: &[u8]) -> Ordering {
    a.split(|&c| c == b'/').cmp(b.split(|&c| c == b'/'))
}

fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    // "<len> <key>=<value>\n", where <len> counts itself.
    let rest = 1 + key.len() + 1 + value.len() + 1;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn padding(len: u64) -> usize {
    ((BLOCK - len % BLOCK) % BLOCK) as usize
}

fn ustar_header(name: &[u8], link: &[u8]) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    if let Some(ustar) = header.as_ustar_mut() {
        let n = name.len().min(ustar.name.len());
        ustar.name[..n].copy_from_slice(&name[..n]);
        let l = link.len().min(ustar.linkname.len());
        ustar.linkname[..l].copy_from_slice(&link[..l]);
    }
    header
}

/// Write the header (and PAX extended header when needed) of `entry`, with its mtime already normalized.
///
/// Deterministic: uname/gname are empty, the PAX header has a fixed name and records sorted by key, and numeric
/// fields use the tar crate's encoding (octal, or GNU base-256 when too large).
pub(crate) fn write_header(out: &mut dyn Write, entry: &Entry) -> io::Result<()> {
    let mut name = entry.path.clone();
    if entry.kind == Kind::Dir {
        name.push(b'/');
    }
    let link: &[u8] = match entry.kind {
        Kind::Symlink | Kind::Hardlink => &entry.link,
        _ => b"",
    };
    let mut pax = Vec::new();
    // Keys in byte order: SCHILY.xattr.* < linkpath < path.
    let mut xattrs = entry.xattrs.clone();
    xattrs.sort();
    for (key, value) in &xattrs {
        let mut k = b"SCHILY.xattr.".to_vec();
        k.extend_from_slice(key);
        pax_record(&mut pax, &k, value);
    }
    if link.len() > 100 {
        pax_record(&mut pax, b"linkpath", link);
    }
    if name.len() > 100 {
        pax_record(&mut pax, b"path", &name);
    }
    if !pax.is_empty() {
        let mut header = ustar_header(b"././@PaxHeader", b"");
        header.set_entry_type(tar::EntryType::XHeader);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(pax.len() as u64);
        header.set_cksum();
        out.write_all(header.as_bytes())?;
        out.write_all(&pax)?;
        out.write_all(&[0u8; BLOCK as usize][..padding(pax.len() as u64)])?;
    }
    let mut header = ustar_header(&name, link);
    header.set_entry_type(match entry.kind {
        Kind::File => tar::EntryType::Regular,
        Kind::Dir => tar::EntryType::Directory,
        Kind::Symlink => tar::EntryType::Symlink,
        Kind::Hardlink => tar::EntryType::Link,
        Kind::Char => tar::EntryType::Char,
        Kind::Block => tar::EntryType::Block,
        Kind::Fifo => tar::EntryType::Fifo,
    });
    header.set_mode(entry.mode & 0o7777);
    header.set_uid(entry.uid);
    header.set_gid(entry.gid);
    header.set_mtime(u64::try_from(entry.mtime).unwrap_or(0));
    header.set_size(if entry.kind == Kind::File {
        entry.size
    } else {
        0
    });
    if matches!(entry.kind, Kind::Char | Kind::Block) {
        header.set_device_major(entry.dev_major)?;
        header.set_device_minor(entry.dev_minor)?;
    }
    header.set_cksum();
    out.write_all(header.as_bytes())
}

/// Copy exactly `size` bytes of file data from `data` and pad to the block size.
///
/// Fails with [`io::ErrorKind::UnexpectedEof`] when `data` ends early and with [`io::ErrorKind::InvalidData`] when it
/// has more than `size` bytes (a file that grew while it was read).
pub(crate) fn write_data(out: &mut dyn Write, data: &mut dyn Read, size: u64) -> io::Result<()> {
    let copied = io::copy(&mut data.take(size), out)?;
    if copied != size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("expected {size} bytes of data, got only {copied}"),
        ));
    }
    out.write_all(&[0u8; BLOCK as usize][..padding(size)])
}

/// The end-of-archive marker: two zero blocks.
pub(crate) fn write_trailer(out: &mut dyn Write) -> io::Result<()> {
    out.write_all(&[0u8; 2 * BLOCK as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_strips_dot_and_slashes() {
        assert_eq!(normalize_path(b"./a/b/").unwrap(), Some(b"a/b".to_vec()));
        assert_eq!(
            normalize_path(b"/etc//passwd").unwrap(),
            Some(b"etc/passwd".to_vec())
        );
        assert_eq!(normalize_path(b"./").unwrap(), None);
        assert_eq!(normalize_path(b".").unwrap(), None);
    }

    #[test]
    fn normalize_rejects_dotdot() {
        let err = normalize_path(b"a/../../etc/passwd").unwrap_err();
        assert!(err.to_string().contains("a/../../etc/passwd"), "{err}");
    }

    #[test]
    fn show_escapes_and_cuts_long_names_short() {
        assert_eq!(show(b"usr/bin/ok"), "usr/bin/ok");
        assert_eq!(
            show(b"a\x1b[0m\n\\\xff\xe2\x80\xaeb"),
            "a\\u{1b}[0m\\n\\\\\\xff\\u{202e}b"
        );
        let long = show(&[b'x'; 5000]);
        assert!(long.starts_with(&"x".repeat(256)), "{long}");
        assert!(long.ends_with("x… (5000 bytes in all)"), "{long}");
        assert_eq!(show(&[b'y'; 256]), "y".repeat(256));
    }

    #[test]
    fn canonical_order_is_componentwise() {
        let mut v: Vec<&[u8]> = vec![b"a-b", b"a/x", b"a", b"b", b"a/x/y", b"a.c"];
        v.sort_by(|a, b| cmp_paths(a, b));
        assert_eq!(v, vec![&b"a"[..], b"a/x", b"a/x/y", b"a-b", b"a.c", b"b"]);
    }

    #[test]
    fn pax_record_length_counts_itself() {
        let mut out = Vec::new();
        pax_record(&mut out, b"path", &[b'x'; 95]);
        let text = String::from_utf8(out.clone()).unwrap();
        let (len, _) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), out.len());
    }

    #[test]
    fn long_names_and_xattrs_round_trip_through_the_tar_crate() {
        let mut e = Entry::new(vec![b'd'; 150], Kind::File);
        e.mode = 0o4755;
        e.uid = 3_000_000;
        e.size = 3;
        e.xattrs = vec![(b"user.k".to_vec(), b"v".to_vec())];
        let mut l = Entry::new(b"l".to_vec(), Kind::Symlink);
        l.link = vec![b't'; 120];
        let mut buf = Vec::new();
        write_header(&mut buf, &e).unwrap();
        write_data(&mut buf, &mut &b"abc"[..], 3).unwrap();
        write_header(&mut buf, &l).unwrap();
        write_trailer(&mut buf).unwrap();
        let mut archive = tar::Archive::new(&buf[..]);
        let mut entries = archive.entries().unwrap();
        let mut first = entries.next().unwrap().unwrap();
        assert_eq!(first.path_bytes().as_ref(), &vec![b'd'; 150][..]);
        assert_eq!(first.header().mode().unwrap(), 0o4755);
        assert_eq!(first.header().uid().unwrap(), 3_000_000);
        let pax: Vec<(String, Vec<u8>)> = first
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|r| {
                let r = r.unwrap();
                (r.key().unwrap().to_owned(), r.value_bytes().to_vec())
            })
            .collect();
        assert!(pax.contains(&("SCHILY.xattr.user.k".to_owned(), b"v".to_vec())));
        let mut data = String::new();
        first.read_to_string(&mut data).unwrap();
        assert_eq!(data, "abc");
        let second = entries.next().unwrap().unwrap();
        assert_eq!(
            second.link_name_bytes().unwrap().as_ref(),
            &vec![b't'; 120][..]
        );
        assert!(entries.next().is_none());
    }
}
