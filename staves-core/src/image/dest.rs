//! Output destinations on disk: what an output path is (nothing yet, a regular file, a symlink, a FIFO or device,
//! a directory), where its bytes go, and whether two outputs would write the same place.
//!
//! The rules, checked before anything is built and again when the output is made:
//! - a file output that does not exist or is a regular file is written to a temporary file next to it and renamed
//!   into place;
//! - a symlink is followed, as `cp` does: its target is written (a temporary file next to the target), the link
//!   stays; a dangling one is refused;
//! - a FIFO or a character device (`/dev/stdout`, `/dev/null`), or a file reached through `/proc` (what
//!   `/dev/stdout` is when the output is redirected), is written through, never replaced;
//! - anything else (a directory, a block device, a socket) is refused;
//! - an `oci:` directory that does not exist is made; an empty directory or an OCI layout gets the image added
//!   (its other images and files are kept); any other directory, or a file, is refused;
//! - two outputs (or an output and the SBOM file) on the same path, or an output inside an `oci:` directory
//!   output, are a usage error.

use super::{ImageError, Output};
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

/// Where a file output's bytes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FileTarget {
    /// A regular file, or none yet (a symlink's target when the output is a symlink): written to a temporary file
    /// in the same directory and renamed into place.
    Replace(PathBuf),
    /// A FIFO or a character device (or an open file reached through `/proc`): the bytes are written into it at
    /// the commit.
    Stream(PathBuf),
}

impl FileTarget {
    /// The directory of its temporary file: next to the file it replaces (`None` for a stream).
    pub(crate) fn temp_dir(&self) -> Option<&Path> {
        match self {
            FileTarget::Replace(p) => Some(parent_dir(p)),
            FileTarget::Stream(_) => None,
        }
    }
}

/// Where an `oci:` output goes: a directory to make, or one to add the image to (an empty one, or an OCI layout).
/// A symlink to a directory is followed: this is its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DirTarget(pub PathBuf);

/// The directory an output path lives in (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn refuse(path: &Path, reason: impl Into<String>) -> ImageError {
    ImageError::Destination {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// A refusal for an OS error met while looking at `path`: kept as the error itself, so its errno reaches callers.
fn refuse_io(path: &Path, source: io::Error) -> ImageError {
    ImageError::Write {
        context: format!("cannot write the output {}", path.display()),
        source,
    }
}

fn kind_of(md: &fs::Metadata) -> &'static str {
    let t = md.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_symlink() {
        "a symlink"
    } else {
        "a special file"
    }
}

/// The parent of a new file or directory must be an existing directory. The refusal keeps the OS error (`ENOTDIR`,
/// `ENOENT`, …) that writing there would meet, so callers (Python's `OSError`) see its errno.
fn check_parent(shown: &Path, path: &Path) -> Result<(), ImageError> {
    let parent = parent_dir(path);
    let refuse_io = |what: String, source: io::Error| ImageError::Write {
        context: format!("cannot write the output {}: {what}", shown.display()),
        source,
    };
    match fs::metadata(parent) {
        Ok(md) if md.is_dir() => Ok(()),
        Ok(_) => Err(refuse_io(
            format!("{} is not a directory", parent.display()),
            io::Error::from_raw_os_error(libc_enotdir()),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(refuse_io(
            format!(
                "its directory {} does not exist (create it first)",
                parent.display()
            ),
            e,
        )),
        Err(e) => Err(refuse_io(parent.display().to_string(), e)),
    }
}

/// `ENOTDIR` on Linux (the only platform the engine's builders run on here), without a libc dependency.
const fn libc_enotdir() -> i32 {
    20
}

/// Whether following the symlink chain at `path` passes through `/proc` (`/dev/stdout` → `/proc/self/fd/1`): the
/// file at the end is an open file of some process, to be written through rather than replaced.
fn through_proc(path: &Path) -> bool {
    let mut current = path.to_path_buf();
    for _ in 0..40 {
        let here = fs::canonicalize(parent_dir(&current))
            .ok()
            .zip(current.file_name())
            .map(|(dir, name)| dir.join(name));
        if here.as_deref().is_some_and(|h| h.starts_with("/proc")) {
            return true;
        }
        match fs::read_link(&current) {
            Ok(target) if target.is_absolute() => current = target,
            Ok(target) => current = parent_dir(&current).join(target),
            Err(_) => return false,
        }
    }
    false
}

/// Where the bytes of the file output `path` go (see the module docs); refused with the reason.
pub(crate) fn resolve_file(path: &Path) -> Result<FileTarget, ImageError> {
    let md = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            check_parent(path, path)?;
            return Ok(FileTarget::Replace(path.to_owned()));
        }
        Err(e) => return Err(refuse_io(path, e)),
        Ok(md) => md,
    };
    if !md.file_type().is_symlink() {
        let t = md.file_type();
        return if t.is_file() {
            Ok(FileTarget::Replace(path.to_owned()))
        } else if t.is_fifo() || t.is_char_device() {
            Ok(FileTarget::Stream(path.to_owned()))
        } else if t.is_dir() {
            Err(refuse(
                path,
                "it is a directory\n  help: name a file, or use oci:DIR for an OCI layout directory",
            ))
        } else {
            Err(refuse(
                path,
                format!(
                    "it is {}: Staves writes regular files, FIFOs and character devices only",
                    kind_of(&md)
                ),
            ))
        };
    }
    // A symlink: follow it, as cp does.
    let link = fs::read_link(path)
        .map(|t| t.display().to_string())
        .unwrap_or_default();
    let target_md = match fs::metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(refuse(
                path,
                format!(
                    "it is a symlink to {link}, which does not exist\n  help: create the target, or remove the link"
                ),
            ));
        }
        Err(e) => return Err(refuse(path, format!("following the symlink: {e}"))),
    };
    let t = target_md.file_type();
    if t.is_fifo() || t.is_char_device() || (t.is_file() && through_proc(path)) {
        return Ok(FileTarget::Stream(path.to_owned()));
    }
    if !t.is_file() {
        return Err(refuse(
            path,
            format!(
                "it is a symlink to {link}, which is {}: Staves writes regular files, FIFOs and character \
                 devices only",
                kind_of(&target_md)
            ),
        ));
    }
    let target = fs::canonicalize(path).map_err(|e| refuse_io(path, e))?;
    Ok(FileTarget::Replace(target))
}

/// What is at an existing directory: nothing, an OCI layout, or something else.
pub(crate) enum DirState {
    Empty,
    Layout,
}

/// Whether `dir` (an existing directory) is empty or an OCI layout; anything else is refused, and so is a layout
/// whose `index.json` cannot be read.
pub(crate) fn dir_state(shown: &Path, dir: &Path) -> Result<DirState, ImageError> {
    let mut items = fs::read_dir(dir).map_err(|e| refuse_io(shown, e))?;
    if items.next().is_none() {
        return Ok(DirState::Empty);
    }
    if !dir.join("oci-layout").is_file() {
        return Err(ImageError::OutputExists {
            path: shown.display().to_string(),
        });
    }
    oci_spec::image::ImageIndex::from_file(dir.join("index.json")).map_err(|e| {
        refuse(
            shown,
            format!(
                "it is an OCI layout, but its index.json cannot be read ({e})\n  help: repair or remove it, or \
                 pick another destination"
            ),
        )
    })?;
    Ok(DirState::Layout)
}

/// Where the `oci:` output `path` goes (see the module docs); refused with the reason.
pub(crate) fn resolve_dir(path: &Path) -> Result<DirTarget, ImageError> {
    let md = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            check_parent(path, path)?;
            return Ok(DirTarget(path.to_owned()));
        }
        Err(e) => return Err(refuse_io(path, e)),
        Ok(md) => md,
    };
    let target = if md.file_type().is_symlink() {
        match fs::metadata(path) {
            Ok(m) if m.is_dir() => fs::canonicalize(path).map_err(|e| refuse_io(path, e))?,
            Ok(_) => {
                return Err(ImageError::OutputExists {
                    path: path.display().to_string(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let link = fs::read_link(path)
                    .map(|t| t.display().to_string())
                    .unwrap_or_default();
                return Err(refuse(
                    path,
                    format!(
                        "it is a symlink to {link}, which does not exist\n  help: create the directory, or remove \
                         the link"
                    ),
                ));
            }
            Err(e) => return Err(refuse(path, format!("following the symlink: {e}"))),
        }
    } else if md.is_dir() {
        path.to_owned()
    } else {
        return Err(ImageError::OutputExists {
            path: path.display().to_string(),
        });
    };
    dir_state(path, &target)?;
    Ok(DirTarget(target))
}

/// Where a path is, to compare two outputs: the file's identity when it exists (device and inode, which sees
/// through symlinks and `/dev/fd`), and its absolute path with symlinks resolved as far as it exists.
struct Place {
    label: String,
    inode: Option<(u64, u64)>,
    path: PathBuf,
    layout_dir: bool,
}

/// `path` made absolute, with its longest existing ancestor canonicalized and the rest normalized lexically.
fn normalized(path: &Path) -> PathBuf {
    if let Ok(p) = fs::canonicalize(path) {
        return p;
    }
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let components: Vec<Component<'_>> = absolute.components().collect();
    let (mut out, rest) = (1..=components.len())
        .rev()
        .find_map(|n| {
            let prefix: PathBuf = components[..n].iter().collect();
            fs::canonicalize(prefix).ok().map(|p| (p, &components[n..]))
        })
        .unwrap_or_else(|| (PathBuf::from("/"), &components[..]));
    for component in rest {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => out.push(name),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    out
}

impl Place {
    fn new(label: String, path: &Path, layout_dir: bool) -> Self {
        Self {
            label,
            inode: fs::metadata(path).ok().map(|m| (m.dev(), m.ino())),
            path: normalized(path),
            layout_dir,
        }
    }
}

/// Refuse two outputs on one path: the same file or directory (through symlinks too), or a path inside an `oci:`
/// directory output. `sbom` is the SBOM file written with the image, if any.
pub(crate) fn check_conflicts(outputs: &[Output], sbom: Option<&Path>) -> Result<(), ImageError> {
    let mut places: Vec<Place> = outputs
        .iter()
        .filter_map(|o| match o {
            Output::OciDir(p) => Some(Place::new(o.to_string(), p, true)),
            Output::OciArchive(p) | Output::DockerArchive(p) | Output::Rootfs(p) => {
                Some(Place::new(o.to_string(), p, false))
            }
            Output::Docker | Output::Registry(_) => None,
        })
        .collect();
    if let Some(path) = sbom {
        places.push(Place::new(
            format!("the SBOM file {}", path.display()),
            path,
            false,
        ));
    }
    for (i, a) in places.iter().enumerate() {
        for b in &places[i + 1..] {
            let same = a.path == b.path || (a.inode.is_some() && a.inode == b.inode);
            if same {
                return Err(ImageError::OutputConflict {
                    first: a.label.clone(),
                    second: b.label.clone(),
                    reason: format!(
                        "both write {}: the one written last would replace the other",
                        b.path.display()
                    ),
                });
            }
            for (dir, inner) in [(a, b), (b, a)] {
                if dir.layout_dir && inner.path.starts_with(&dir.path) {
                    return Err(ImageError::OutputConflict {
                        first: dir.label.clone(),
                        second: inner.label.clone(),
                        reason: format!(
                            "{} is inside the OCI layout directory {}",
                            inner.path.display(),
                            dir.path.display()
                        ),
                    });
                }
            }
        }
    }
    Ok(())
}

/// Check every output (and the SBOM file) before anything is built: no two on one path, and each one a
/// destination Staves can write (see the module docs).
pub(crate) fn check_outputs(outputs: &[Output], sbom: Option<&Path>) -> Result<(), ImageError> {
    check_conflicts(outputs, sbom)?;
    for output in outputs {
        match output {
            Output::OciDir(p) => {
                resolve_dir(p)?;
            }
            Output::OciArchive(p) | Output::DockerArchive(p) | Output::Rootfs(p) => {
                resolve_file(p)?;
            }
            Output::Docker | Output::Registry(_) => {}
        }
    }
    if let Some(path) = sbom {
        resolve_file(path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn file_targets_follow_symlinks_and_write_through_fifos_and_devices() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = fs::canonicalize(tmp.path()).unwrap();
        let new = dir.join("new.tar");
        assert_eq!(
            resolve_file(&new).unwrap(),
            FileTarget::Replace(new.clone())
        );
        fs::write(dir.join("real.tar"), b"old").unwrap();
        symlink("real.tar", dir.join("link.tar")).unwrap();
        assert_eq!(
            resolve_file(&dir.join("link.tar")).unwrap(),
            FileTarget::Replace(dir.join("real.tar"))
        );
        assert_eq!(
            resolve_file(Path::new("/dev/null")).unwrap(),
            FileTarget::Stream("/dev/null".into())
        );
        symlink("missing", dir.join("dangling")).unwrap();
        let err = resolve_file(&dir.join("dangling")).unwrap_err().to_string();
        assert!(err.contains("which does not exist"), "{err}");
        let err = resolve_file(&dir).unwrap_err().to_string();
        assert!(err.contains("it is a directory"), "{err}");
        let err = resolve_file(&dir.join("nope/x.tar"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn a_symlink_to_an_empty_directory_is_a_layout_destination() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = fs::canonicalize(tmp.path()).unwrap();
        fs::create_dir(dir.join("empty")).unwrap();
        symlink("empty", dir.join("link")).unwrap();
        assert_eq!(
            resolve_dir(&dir.join("link")).unwrap(),
            DirTarget(dir.join("empty"))
        );
        fs::create_dir(dir.join("full")).unwrap();
        fs::write(dir.join("full/mine"), b"x").unwrap();
        let err = resolve_dir(&dir.join("full")).unwrap_err().to_string();
        assert!(err.contains("is not an OCI layout"), "{err}");
    }

    #[test]
    fn two_outputs_on_one_path_conflict() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = fs::canonicalize(tmp.path()).unwrap();
        let x = dir.join("x");
        let ok = [
            Output::OciArchive(dir.join("a.tar")),
            Output::DockerArchive(dir.join("b.tar")),
            Output::Docker,
        ];
        check_conflicts(&ok, Some(&dir.join("sbom.json"))).unwrap();
        for (outputs, sbom) in [
            (
                vec![
                    Output::DockerArchive(x.clone()),
                    Output::OciArchive(x.clone()),
                ],
                None,
            ),
            (vec![Output::OciArchive(x.clone())], Some(x.clone())),
            (
                vec![Output::OciDir(x.clone()), Output::Rootfs(x.clone())],
                None,
            ),
            (
                vec![Output::OciDir(x.clone()), Output::Rootfs(x.join("r.tar"))],
                None,
            ),
            (
                vec![
                    Output::Rootfs(x.clone()),
                    Output::Rootfs(dir.join("sub/../x")),
                ],
                None,
            ),
        ] {
            let err = check_conflicts(&outputs, sbom.as_deref()).unwrap_err();
            assert!(matches!(err, ImageError::OutputConflict { .. }), "{err}");
        }
        // Through a symlink to the same file.
        fs::write(&x, b"x").unwrap();
        symlink("x", dir.join("y")).unwrap();
        let err = check_conflicts(
            &[Output::Rootfs(x.clone()), Output::OciArchive(dir.join("y"))],
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("rootfs:"), "{err}");
    }
}
