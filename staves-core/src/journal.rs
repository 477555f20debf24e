//! The write journal: what an image write is about to leave on disk and in the engine, recorded before it does,
//! so that `staves prune` finds what a process that died mid-write (SIGKILL, a second signal) left behind.
//!
//! Each image write has one entry, `<store>/journal/<id>.json` (the local image store's directory): the process
//! that writes (the same owner labels a build puts on its containers), the build id once known, the directories
//! where it makes temporary files — every one of them named `.staves-<id>-…` — and the untagged image it loads
//! into the engine. The entry is written before the first temporary file exists and before the load, rewritten
//! (atomically) when it grows, and removed once the write is committed or undone. An entry whose process is gone
//! therefore names exactly what that process may have left.
//!
//! The journal is best effort, like the store it lives in: a write whose entry cannot be recorded goes on.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The journal's directory under the local image store's.
pub(crate) const JOURNAL_DIR: &str = "journal";

/// An untagged image a write loads into the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JournalImage {
    /// The image ID (`sha256:…` of the config).
    pub id: String,
    /// The engine had this image before the load: the write never removes it, and neither does a prune.
    pub existed_before: bool,
}

/// One write's entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JournalEntry {
    /// The entry's id: its file name, and the middle of every temporary name it makes.
    pub id: String,
    /// The owner labels of the writing process (see `BuildOwner::labels`).
    pub owner: HashMap<String, String>,
    /// The build the write belongs to, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
    /// Absolute directories where the write makes temporary files, each named [`JournalEntry::temp_prefix`]`…`.
    #[serde(default)]
    pub dirs: Vec<PathBuf>,
    /// The image it loads (or loaded) into the engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<JournalImage>,
}

impl JournalEntry {
    /// The prefix of every temporary file and directory the write makes: `.staves-<id>-`.
    pub(crate) fn temp_prefix(&self) -> String {
        temp_prefix(&self.id)
    }
}

fn temp_prefix(id: &str) -> String {
    format!(".staves-{id}-")
}

/// A new id, unique enough that no file of anyone else starts with its prefix: 16 hex digits of a hash of this
/// process, the time and a counter.
fn new_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut hash = Sha256::new();
    hash.update(std::process::id().to_le_bytes());
    hash.update(nanos.to_le_bytes());
    hash.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    hash.update(format!("{:?}", std::thread::current().id()).as_bytes());
    hex::encode(&hash.finalize()[..8])
}

/// The entries of a journal with their files, and the files that could not be read (with the reason).
pub(crate) type JournalEntries = (Vec<(PathBuf, JournalEntry)>, Vec<(PathBuf, String)>);

/// The journal of the local image store at a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Journal {
    dir: PathBuf,
}

impl Journal {
    /// The journal of the store whose directory is `store_dir`.
    pub(crate) fn in_store(store_dir: &Path) -> Self {
        Self {
            dir: store_dir.join(JOURNAL_DIR),
        }
    }

    /// Start the entry of a write by the process with `owner` labels, making temporary files in `dirs`. The entry
    /// is on disk when this returns, unless the journal cannot be written (then the write goes on unrecorded).
    pub(crate) fn begin(
        &self,
        owner: HashMap<String, String>,
        dirs: Vec<PathBuf>,
    ) -> JournalRecord {
        let mut record = JournalRecord::unrecorded(owner);
        record.file = Some(self.dir.join(format!("{}.json", record.entry.id)));
        record.add_dirs(dirs);
        record
    }

    /// Every entry, with its file; unreadable entries are returned as errors (path, reason).
    pub(crate) fn entries(&self) -> JournalEntries {
        let (mut entries, mut errors) = (Vec::new(), Vec::new());
        let read_dir = match std::fs::read_dir(&self.dir) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (entries, errors),
            Err(e) => {
                errors.push((self.dir.clone(), e.to_string()));
                return (entries, errors);
            }
        };
        for item in read_dir.flatten() {
            let path = item.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<JournalEntry>(&b).map_err(|e| e.to_string()))
            {
                Ok(entry) => entries.push((path, entry)),
                Err(reason) => errors.push((path, reason)),
            }
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        (entries, errors)
    }
}

/// Remove the temporary files and directories of `entry` (never following a symlink); returns what was removed
/// and what could not be, one message each.
pub(crate) fn remove_temp_files(entry: &JournalEntry) -> (Vec<PathBuf>, Vec<String>) {
    let prefix = entry.temp_prefix();
    let (mut removed, mut errors) = (Vec::new(), Vec::new());
    for dir in &entry.dirs {
        let Ok(items) = std::fs::read_dir(dir) else {
            continue;
        };
        for item in items.flatten() {
            if !item.file_name().to_string_lossy().starts_with(&prefix) {
                continue;
            }
            let path = item.path();
            let result = match std::fs::symlink_metadata(&path) {
                Ok(md) if md.is_dir() => std::fs::remove_dir_all(&path),
                Ok(_) => std::fs::remove_file(&path),
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => removed.push(path),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => errors.push(format!("removing {}: {e}", path.display())),
            }
        }
    }
    (removed, errors)
}

/// The entry of one write, held by the write: updated as it goes, removed on drop unless [`JournalRecord::keep`]
/// says something was left behind.
#[derive(Debug)]
pub(crate) struct JournalRecord {
    entry: JournalEntry,
    /// Where the entry is; `None`: not recorded (no journal, or it could not be written).
    file: Option<PathBuf>,
    keep: bool,
}

impl JournalRecord {
    /// A record kept nowhere: the write still names its temporary files with a fresh id.
    pub(crate) fn unrecorded(owner: HashMap<String, String>) -> Self {
        Self {
            entry: JournalEntry {
                id: new_id(),
                owner,
                build_id: None,
                dirs: Vec::new(),
                image: None,
            },
            file: None,
            keep: false,
        }
    }

    /// The prefix of every temporary name the write makes.
    pub(crate) fn temp_prefix(&self) -> String {
        self.entry.temp_prefix()
    }

    /// The write also makes temporary files in `dirs` (made absolute; already known ones are skipped).
    pub(crate) fn add_dirs(&mut self, dirs: impl IntoIterator<Item = PathBuf>) {
        let mut changed = false;
        for dir in dirs {
            let dir = std::fs::canonicalize(&dir)
                .or_else(|_| std::path::absolute(&dir))
                .unwrap_or(dir);
            if !self.entry.dirs.contains(&dir) {
                self.entry.dirs.push(dir);
                changed = true;
            }
        }
        if changed || self.entry.dirs.is_empty() {
            self.save();
        }
    }

    /// The write is about to load the image `id` (which the engine had already when `existed_before`).
    pub(crate) fn set_image(&mut self, id: &str, existed_before: bool) {
        self.entry.image = Some(JournalImage {
            id: id.to_owned(),
            existed_before,
        });
        self.save();
    }

    /// The loaded image is tagged or removed: nothing in the engine is left to find.
    pub(crate) fn clear_image(&mut self) {
        if self.entry.image.take().is_some() {
            self.save();
        }
    }

    /// The write belongs to build `build_id`.
    pub(crate) fn set_build_id(&mut self, build_id: &str) {
        if !build_id.is_empty() && self.entry.build_id.as_deref() != Some(build_id) {
            self.entry.build_id = Some(build_id.to_owned());
            self.save();
        }
    }

    /// Something could not be removed: leave the entry for `staves prune`.
    pub(crate) fn keep(&mut self) {
        self.keep = true;
    }

    /// Write the entry atomically; on failure the write goes on unrecorded.
    fn save(&mut self) {
        let Some(file) = &self.file else { return };
        let result = (|| -> std::io::Result<()> {
            let dir = file.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir)?;
            let bytes = serde_json::to_vec_pretty(&self.entry).map_err(std::io::Error::other)?;
            let mut temp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
            std::io::Write::write_all(&mut temp, &bytes)?;
            temp.persist(file).map_err(|e| e.error)?;
            Ok(())
        })();
        if result.is_err() {
            self.file = None;
        }
    }
}

impl Drop for JournalRecord {
    fn drop(&mut self) {
        if let (Some(file), false) = (&self.file, self.keep) {
            let _ = std::fs::remove_file(file);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_entry_lives_as_long_as_its_record_unless_kept() {
        let store = tempfile::tempdir().unwrap();
        let journal = Journal::in_store(store.path());
        let out = tempfile::tempdir().unwrap();
        let owner = HashMap::from([("io.staves.owner.pid".to_owned(), "1".to_owned())]);
        let mut record = journal.begin(owner.clone(), vec![out.path().to_owned()]);
        let (entries, errors) = journal.entries();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(entries.len(), 1);
        let entry = &entries[0].1;
        assert_eq!(entry.owner, owner);
        assert_eq!(entry.dirs, vec![std::fs::canonicalize(out.path()).unwrap()]);
        assert!(entry.temp_prefix().starts_with(".staves-"));
        assert_eq!(entry.temp_prefix(), record.temp_prefix());

        record.set_image("sha256:abc", false);
        record.set_build_id("b1");
        let (entries, _) = journal.entries();
        assert_eq!(entries[0].1.image.as_ref().unwrap().id, "sha256:abc");
        assert_eq!(entries[0].1.build_id.as_deref(), Some("b1"));
        drop(record);
        assert!(journal.entries().0.is_empty());

        let mut kept = journal.begin(owner, vec![out.path().to_owned()]);
        kept.keep();
        drop(kept);
        assert_eq!(journal.entries().0.len(), 1);
    }

    #[test]
    fn only_the_entrys_own_temporary_files_are_removed() {
        let out = tempfile::tempdir().unwrap();
        let record = JournalRecord::unrecorded(HashMap::new());
        let prefix = record.temp_prefix();
        std::fs::write(out.path().join(format!("{prefix}file")), b"x").unwrap();
        std::fs::create_dir(out.path().join(format!("{prefix}dir"))).unwrap();
        std::fs::write(out.path().join(format!("{prefix}dir/blob")), b"x").unwrap();
        std::fs::write(out.path().join(".staves-other-file"), b"x").unwrap();
        std::fs::write(out.path().join("image.tar"), b"x").unwrap();
        let mut entry = record.entry.clone();
        entry.dirs = vec![out.path().to_owned()];
        let (mut removed, errors) = remove_temp_files(&entry);
        removed.sort();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            removed,
            vec![
                out.path().join(format!("{prefix}dir")),
                out.path().join(format!("{prefix}file"))
            ]
        );
        let mut left: Vec<String> = std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, vec![".staves-other-file", "image.tar"]);
    }
}
