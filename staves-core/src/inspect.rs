//! What an image carries, read back after the build: its SBOM, from an OCI layout or archive (the referrer) or from
//! an image on the engine (its label and the copy in the local store). This asks the engine, so it sits above it;
//! reading the documents themselves is [`crate::sbom`].

use std::path::Path;

/// An SBOM found for an image, and where it was found.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FoundSbom {
    /// The document, read back.
    pub sbom: crate::sbom::Sbom,
    /// Where it came from: `referrer in oci:DIR`, `referrer in oci-archive:FILE`, or `local store (PATH)`.
    pub source: String,
}

/// Find the SBOM of `target`: `oci:DIR` or `oci-archive:FILE` (their OCI 1.1 referrer), or an image on the engine
/// (by the [`crate::sbom::SBOM_LABEL`] label and the copy in the local store at `store`, keyed by the image ID).
pub async fn find_sbom_async(
    target: &str,
    docker_host: Option<String>,
    store: Option<&Path>,
) -> crate::Result<FoundSbom> {
    let not_found = |reason: String| crate::sbom::SbomError::NotFound {
        image: target.to_owned(),
        reason,
    };
    let read = |text: String, source: String| -> crate::Result<FoundSbom> {
        Ok(FoundSbom {
            sbom: crate::sbom::Sbom::from_json(&text, &source)?,
            source,
        })
    };
    if let Some(dir) = target.strip_prefix("oci:") {
        let path = Path::new(dir);
        return match crate::sbom::from_oci_layout(path)? {
            Some(text) => read(text, format!("referrer in {target}")),
            None => Err(not_found(
                "the OCI layout has no SPDX referrer (application/spdx+json) for its image".into(),
            )
            .into()),
        };
    }
    if let Some(file) = target.strip_prefix("oci-archive:") {
        return match crate::sbom::from_oci_archive(Path::new(file))? {
            Some(text) => read(text, format!("referrer in {target}")),
            None => Err(not_found(
                "the OCI archive has no SPDX referrer (application/spdx+json) for its image".into(),
            )
            .into()),
        };
    }
    let docker = crate::Engine::new(docker_host).connect().await?;
    let inspect = match docker.inspect_image(target).await {
        Ok(i) => i,
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => {
            return Err(not_found(
                "no such image on the engine (for an OCI layout or archive, write oci:DIR or oci-archive:FILE)"
                    .into(),
            )
            .into());
        }
        Err(e) => {
            return Err(crate::engine::EngineError::request(
                format!("inspecting image {target}"),
                e,
            )
            .into());
        }
    };
    let id = inspect.id.unwrap_or_default();
    let label = inspect
        .config
        .and_then(|c| c.labels)
        .and_then(|l| l.get(crate::sbom::SBOM_LABEL).cloned());
    let Some(label) = label else {
        return Err(not_found(format!(
            "the image (ID {id}) has no {} label: it was not built by a Staves that records SBOMs",
            crate::sbom::SBOM_LABEL
        ))
        .into());
    };
    let Some(dir) = store else {
        return Err(not_found(
            "no local SBOM store (neither XDG_CACHE_HOME nor HOME is set)".into(),
        )
        .into());
    };
    match crate::sbom::load_stored(dir, &id)? {
        Some(text) => read(text, format!("local store ({})", dir.display())),
        None => Err(not_found(format!(
            "the image carries the SBOM digest {label} (label {}), but the local store {} has no SBOM for its \
             ID {id}: it was built on another machine or the store was cleared; rebuild it here, or inspect the \
             oci: output that carries the SBOM",
            crate::sbom::SBOM_LABEL,
            dir.display()
        ))
        .into()),
    }
}

/// [`find_sbom_async`] for synchronous callers; works from any thread.
pub fn find_sbom(
    target: &str,
    docker_host: Option<String>,
    store: Option<&Path>,
) -> crate::Result<FoundSbom> {
    crate::engine::block_on(find_sbom_async(target, docker_host, store))?
}
