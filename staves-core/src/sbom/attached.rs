//! Finding the SBOM an image carries: the OCI 1.1 referrer in an `oci:` layout or `oci-archive:` file, or the copy
//! that `staves build` keeps in the local store for images loaded into the engine (keyed by image ID, the config
//! digest, since a label inside the config cannot name a document that names the config).

use super::{SPDX_MEDIA_TYPE, SbomError};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The largest document or manifest read from a layout or archive.
const MAX_DOCUMENT: u64 = 64 << 20;

fn unreadable(origin: &Path, reason: impl Into<String>) -> SbomError {
    SbomError::Unreadable {
        origin: origin.display().to_string(),
        reason: reason.into(),
    }
}

/// Reads a blob of a layout or archive by digest; `None` when it is not there.
type BlobReader<'a> = dyn FnMut(&str) -> Result<Option<Vec<u8>>, SbomError> + 'a;

/// The SBOM text of the referrer whose `artifactType` is SPDX JSON, given a way to read blobs by digest.
fn find_in_index(
    origin: &Path,
    index: &[u8],
    blob: &mut BlobReader<'_>,
) -> Result<Option<String>, SbomError> {
    let index: serde_json::Value = serde_json::from_slice(index)
        .map_err(|e| unreadable(origin, format!("index.json: {e}")))?;
    let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
    let images: Vec<&str> = manifests
        .iter()
        .filter(|m| m.get("artifactType").is_none())
        .filter_map(|m| m["digest"].as_str())
        .collect();
    for entry in &manifests {
        if entry["artifactType"].as_str() != Some(SPDX_MEDIA_TYPE) {
            continue;
        }
        let Some(digest) = entry["digest"].as_str() else {
            continue;
        };
        let Some(bytes) = blob(digest)? else {
            return Err(unreadable(
                origin,
                format!("the referrer manifest {digest} is missing"),
            ));
        };
        let manifest: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| unreadable(origin, format!("referrer manifest: {e}")))?;
        let subject = manifest["subject"]["digest"].as_str().unwrap_or_default();
        if !images.contains(&subject) {
            continue;
        }
        let Some(document) = manifest["layers"][0]["digest"].as_str() else {
            continue;
        };
        let Some(text) = blob(document)? else {
            return Err(unreadable(
                origin,
                format!("the SBOM blob {document} is missing"),
            ));
        };
        let text =
            String::from_utf8(text).map_err(|_| unreadable(origin, "the SBOM is not UTF-8"))?;
        return Ok(Some(text));
    }
    Ok(None)
}

fn blob_name(digest: &str) -> Option<String> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("blobs/sha256/{hex}"))
}

/// The SPDX SBOM attached to the image in the OCI layout at `dir`, if any.
pub fn from_oci_layout(dir: &Path) -> Result<Option<String>, SbomError> {
    let read = |path: PathBuf| -> Result<Option<Vec<u8>>, SbomError> {
        match std::fs::metadata(&path) {
            Ok(m) if m.len() > MAX_DOCUMENT => {
                Err(unreadable(dir, format!("{} is too large", path.display())))
            }
            Ok(_) => std::fs::read(&path)
                .map(Some)
                .map_err(|e| unreadable(dir, e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(unreadable(dir, e.to_string())),
        }
    };
    let Some(index) = read(dir.join("index.json"))? else {
        return Err(unreadable(dir, "it has no index.json: not an OCI layout"));
    };
    find_in_index(dir, &index, &mut |digest| match blob_name(digest) {
        Some(name) => read(dir.join(name)),
        None => Ok(None),
    })
}

/// The SPDX SBOM attached to the image in the OCI archive `file`, if any.
pub fn from_oci_archive(file: &Path) -> Result<Option<String>, SbomError> {
    let f = std::fs::File::open(file).map_err(|e| unreadable(file, e.to_string()))?;
    let mut archive = tar::Archive::new(f);
    let mut members: HashMap<String, Vec<u8>> = HashMap::new();
    let entries = archive
        .entries()
        .map_err(|e| unreadable(file, e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| unreadable(file, e.to_string()))?;
        let size = entry.header().size().unwrap_or(u64::MAX);
        let name = String::from_utf8_lossy(&entry.path_bytes())
            .trim_start_matches("./")
            .to_owned();
        if size > MAX_DOCUMENT || !(name == "index.json" || name.starts_with("blobs/sha256/")) {
            continue;
        }
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| unreadable(file, e.to_string()))?;
        members.insert(name, bytes);
    }
    let Some(index) = members.get("index.json").cloned() else {
        return Err(unreadable(file, "it has no index.json: not an OCI archive"));
    };
    find_in_index(file, &index, &mut |digest| {
        Ok(blob_name(digest).and_then(|name| members.get(&name).cloned()))
    })
}

/// Where Staves keeps SBOMs of images it loaded into the engine: `$XDG_CACHE_HOME/staves/sbom`, else
/// `~/.cache/staves/sbom`.
pub fn store_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("staves").join("sbom"))
}

fn store_path(dir: &Path, image_id: &str) -> Option<PathBuf> {
    let hex = image_id.strip_prefix("sha256:").unwrap_or(image_id);
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| dir.join(format!("{hex}.spdx.json")))
}

/// Keep `spdx` for the image whose ID (config digest) is `image_id` in the store at `dir` (written atomically).
pub fn save(dir: &Path, image_id: &str, spdx: &str) -> std::io::Result<PathBuf> {
    let path = store_path(dir, image_id)
        .ok_or_else(|| std::io::Error::other(format!("{image_id:?} is not an image ID")))?;
    std::fs::create_dir_all(dir)?;
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut temp, spdx.as_bytes())?;
    temp.persist(&path).map_err(|e| e.error)?;
    Ok(path)
}

/// The SBOM kept for the image `image_id` in the store at `dir`, if any.
pub fn load(dir: &Path, image_id: &str) -> Result<Option<String>, SbomError> {
    let Some(path) = store_path(dir, image_id) else {
        return Ok(None);
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(unreadable(&path, e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_round_trip_and_bad_ids() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let id = format!("sha256:{}", "a1".repeat(32));
        assert_eq!(
            load(dir.path(), &id).unwrap_or_else(|e| panic!("{e}")),
            None
        );
        save(dir.path(), &id, "{}").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            load(dir.path(), &id)
                .unwrap_or_else(|e| panic!("{e}"))
                .as_deref(),
            Some("{}")
        );
        assert!(save(dir.path(), "../../etc/passwd", "x").is_err());
        assert_eq!(
            load(dir.path(), "../x").unwrap_or_else(|e| panic!("{e}")),
            None
        );
    }

    #[test]
    fn hostile_digests_never_become_paths() {
        assert_eq!(blob_name("sha256:../../etc/passwd"), None);
        assert_eq!(
            blob_name(&format!("sha256:{}", "0".repeat(64))),
            Some(format!("blobs/sha256/{}", "0".repeat(64)))
        );
    }
}
