//! Who owns a build's containers and volumes, and removing those of builds whose process is gone.
//!
//! Every container and volume a build creates carries [`BUILD_LABEL`] (the build's id) and four owner labels: the
//! host name, the PID, the process start time (clock ticks after boot, field 22 of `/proc/PID/stat`) and the boot
//! id. A build is *gone* when it ran on this host and its process no longer exists: the PID is free, or now
//! belongs to a process that started at another time, or the machine rebooted since. Resources of gone builds
//! are removed when the next build starts, and by [`prune`].
//!
//! An image write records in the journal of the local image store (see [`crate::journal`]) the temporary files it
//! makes and the untagged image it loads, with the same owner; [`prune`] also removes those of writes whose process
//! is gone (a build killed during its commit).

use super::docker::{BUILD_LABEL, ROLE_LABEL};
use crate::engine::{Engine, EngineError, block_on, is_not_found, is_removal_in_progress};
use bollard::Docker;
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveVolumeOptionsBuilder,
};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The label holding the host name of the process that created a resource.
pub(crate) const OWNER_HOST_LABEL: &str = "io.staves.owner.host";
/// The label holding the PID of the process that created a resource.
pub(crate) const OWNER_PID_LABEL: &str = "io.staves.owner.pid";
/// The label holding that process's start time (clock ticks after boot, from `/proc/PID/stat`).
pub(crate) const OWNER_STARTED_LABEL: &str = "io.staves.owner.started";
/// The label holding the boot id of the machine that process ran on (`/proc/sys/kernel/random/boot_id`).
pub(crate) const OWNER_BOOT_LABEL: &str = "io.staves.owner.boot";

/// The process that created a build's resources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BuildOwner {
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// Start time of the process in clock ticks after boot (0 when unknown).
    pub started: u64,
    /// Boot id of the machine (empty when unknown).
    pub boot_id: String,
}

/// Whether a build's process still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Ownership {
    /// Its process runs on this host.
    Alive,
    /// It ran on this host and its process is gone: its resources are left over.
    Gone,
    /// It runs or ran on another host (sharing this engine): nobody here can tell.
    OtherHost,
    /// Its resources carry no owner labels (an older Staves made them).
    Unknown,
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Field 22 of `/proc/PID/stat`: the process start time in clock ticks after boot.
fn process_start_time(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or parentheses: count after the last `)`.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

impl BuildOwner {
    /// This process.
    pub fn current() -> Self {
        static CURRENT: OnceLock<BuildOwner> = OnceLock::new();
        CURRENT
            .get_or_init(|| BuildOwner {
                host: read_trimmed("/proc/sys/kernel/hostname")
                    .or_else(|| std::env::var("HOSTNAME").ok())
                    .unwrap_or_else(|| "unknown".to_owned()),
                pid: std::process::id(),
                started: process_start_time("self").unwrap_or(0),
                boot_id: read_trimmed("/proc/sys/kernel/random/boot_id").unwrap_or_default(),
            })
            .clone()
    }

    /// The owner labels, to put on a container or volume.
    pub(crate) fn labels(&self) -> [(String, String); 4] {
        [
            (OWNER_HOST_LABEL.to_owned(), self.host.clone()),
            (OWNER_PID_LABEL.to_owned(), self.pid.to_string()),
            (OWNER_STARTED_LABEL.to_owned(), self.started.to_string()),
            (OWNER_BOOT_LABEL.to_owned(), self.boot_id.clone()),
        ]
    }

    /// Read the owner from a resource's labels; `None` when they are missing or malformed.
    pub fn from_labels(labels: &HashMap<String, String>) -> Option<Self> {
        Some(Self {
            host: labels.get(OWNER_HOST_LABEL)?.clone(),
            pid: labels.get(OWNER_PID_LABEL)?.parse().ok()?,
            started: labels.get(OWNER_STARTED_LABEL)?.parse().ok()?,
            boot_id: labels.get(OWNER_BOOT_LABEL).cloned().unwrap_or_default(),
        })
    }

    /// Whether this owner's process still runs, seen from this process.
    pub fn ownership(&self) -> Ownership {
        let me = Self::current();
        if self.host != me.host {
            return Ownership::OtherHost;
        }
        if !self.boot_id.is_empty() && !me.boot_id.is_empty() && self.boot_id != me.boot_id {
            return Ownership::Gone;
        }
        match process_start_time(&self.pid.to_string()) {
            None => Ownership::Gone,
            // A start time of 0 means the owner could not read its own: the PID alone has to do.
            Some(started) if self.started != 0 && started != self.started => Ownership::Gone,
            Some(_) => Ownership::Alive,
        }
    }
}

/// The containers and volumes of one build, found by their labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BuildResources {
    /// The build's id (the value of [`BUILD_LABEL`]).
    pub build_id: String,
    /// The process that made them, when they say.
    pub owner: Option<BuildOwner>,
    /// Whether that process still runs.
    pub ownership: Ownership,
    /// Container names, the builder first (it uses the snapshot's volume).
    pub containers: Vec<String>,
    /// Volume names.
    pub volumes: Vec<String>,
}

/// Containers, volumes, untagged images and temporary files that were removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Reaped {
    /// Removed container names.
    pub containers: Vec<String>,
    /// Removed volume names.
    pub volumes: Vec<String>,
    /// Removed untagged images (IDs) that image writes whose process is gone had loaded.
    pub images: Vec<String>,
    /// Removed temporary files and directories (`.staves-*`) of image writes whose process is gone.
    pub files: Vec<PathBuf>,
}

impl Reaped {
    /// Nothing was removed.
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty()
            && self.volumes.is_empty()
            && self.images.is_empty()
            && self.files.is_empty()
    }
}

/// What [`prune`] removes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PruneOptions {
    /// Also remove the resources of builds that may still run: live builds, builds of other hosts and
    /// resources without owner labels. A running builder is stopped (its emerge dies with it).
    pub all: bool,
    /// The local image store whose journal names what image writes left (see [`remove_leftovers`]); by default
    /// [`ImageStore::default_dir`](crate::store::ImageStore::default_dir). `None`: containers and volumes only.
    pub store_dir: Option<PathBuf>,
}

impl Default for PruneOptions {
    fn default() -> Self {
        Self {
            all: false,
            store_dir: crate::store::ImageStore::default_dir(),
        }
    }
}

impl PruneOptions {
    /// Only the resources of builds whose process is gone, and the leftovers of their image writes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also remove those of live builds.
    pub fn all(mut self, all: bool) -> Self {
        self.all = all;
        self
    }

    /// Read the journal of the local image store at `dir` (`None`: none).
    pub fn store_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.store_dir = dir;
        self
    }
}

/// What [`prune`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PruneReport {
    /// What was removed.
    pub removed: Reaped,
    /// Builds that were left alone because they may still run (without [`PruneOptions::all`]).
    pub kept: Vec<BuildResources>,
    /// Removals that failed, one message each.
    pub errors: Vec<String>,
}

impl PruneReport {
    /// Add what another removal did to this report.
    pub fn extend(&mut self, other: PruneReport) {
        self.removed.containers.extend(other.removed.containers);
        self.removed.volumes.extend(other.removed.volumes);
        self.removed.images.extend(other.removed.images);
        self.removed.files.extend(other.removed.files);
        self.kept.extend(other.kept);
        self.errors.extend(other.errors);
    }
}

/// Every build's containers and volumes on the engine, grouped by build, with whether its process still runs.
pub async fn list_builds_async(engine: &Engine) -> crate::Result<Vec<BuildResources>> {
    let docker = engine.connect().await?;
    Ok(find_builds(&docker).await?)
}

/// [`list_builds_async`] from sync code, on any thread.
pub fn list_builds(engine: &Engine) -> crate::Result<Vec<BuildResources>> {
    block_on(list_builds_async(engine))?
}

/// Remove exactly the resources listed in `builds` (e.g. what [`list_builds`] found and a user confirmed).
/// Already-removed resources are not an error.
pub async fn remove_builds_async(
    engine: &Engine,
    builds: &[BuildResources],
) -> crate::Result<PruneReport> {
    let docker = engine.connect().await?;
    let mut report = PruneReport::default();
    for build in builds {
        remove_build(&docker, build, &mut report.removed, &mut report.errors).await;
    }
    Ok(report)
}

/// [`remove_builds_async`] from sync code, on any thread.
pub fn remove_builds(engine: &Engine, builds: &[BuildResources]) -> crate::Result<PruneReport> {
    block_on(remove_builds_async(engine, builds))?
}

/// Remove the containers and volumes of builds whose process is gone (with [`PruneOptions::all`], of every
/// build), and the leftovers of image writes whose process is gone (see [`remove_leftovers`]).
pub async fn prune_async(engine: &Engine, options: &PruneOptions) -> crate::Result<PruneReport> {
    let docker = engine.connect().await?;
    let mut report = PruneReport::default();
    for build in find_builds(&docker).await? {
        if options.all || build.ownership == Ownership::Gone {
            remove_build(&docker, &build, &mut report.removed, &mut report.errors).await;
        } else {
            report.kept.push(build);
        }
    }
    if let Some(dir) = &options.store_dir {
        reap_writes(&docker, dir, &mut report.removed, &mut report.errors).await;
    }
    Ok(report)
}

/// Remove what image writes whose process is gone left behind, as the journal of the local image store at
/// `store_dir` names it: the untagged image a write loaded (unless it is tagged now, used by a container, or
/// loaded by a write that still runs) and its `.staves-*` temporary files. Writes whose process still runs, or
/// ran on another host, are left alone.
pub async fn remove_leftovers_async(
    engine: &Engine,
    store_dir: &Path,
) -> crate::Result<PruneReport> {
    let docker = engine.connect().await?;
    let mut report = PruneReport::default();
    reap_writes(&docker, store_dir, &mut report.removed, &mut report.errors).await;
    Ok(report)
}

/// [`remove_leftovers_async`] from sync code, on any thread.
pub fn remove_leftovers(engine: &Engine, store_dir: &Path) -> crate::Result<PruneReport> {
    block_on(remove_leftovers_async(engine, store_dir))?
}

/// The journal entries of writes whose process is gone: remove what each names, then the entry (kept when
/// something could not be removed, to be tried again).
async fn reap_writes(
    docker: &Docker,
    store_dir: &Path,
    removed: &mut Reaped,
    errors: &mut Vec<String>,
) {
    let (entries, unreadable) = crate::journal::Journal::in_store(store_dir).entries();
    for (path, reason) in unreadable {
        errors.push(format!(
            "cannot read the journal entry {}: {reason}",
            path.display()
        ));
    }
    let gone = |entry: &crate::journal::JournalEntry| {
        BuildOwner::from_labels(&entry.owner).map(|o| o.ownership()) == Some(Ownership::Gone)
    };
    // An image a live write loaded (or found already there) stays, whoever else loaded it before.
    let live_images: HashSet<&str> = entries
        .iter()
        .filter(|(_, e)| !gone(e))
        .filter_map(|(_, e)| e.image.as_ref().map(|i| i.id.as_str()))
        .collect();
    for (path, entry) in &entries {
        if !gone(entry) {
            continue;
        }
        let mut clean = true;
        if let Some(image) = entry
            .image
            .as_ref()
            .filter(|i| !i.existed_before && !live_images.contains(i.id.as_str()))
        {
            match remove_untagged_image(docker, &image.id).await {
                Ok(true) => removed.images.push(image.id.clone()),
                Ok(false) => {}
                Err(e) => {
                    errors.push(e.to_string());
                    clean = false;
                }
            }
        }
        let (files, failed) = crate::journal::remove_temp_files(entry);
        removed.files.extend(files);
        clean &= failed.is_empty();
        errors.extend(failed);
        if clean {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => errors.push(format!(
                    "removing the journal entry {}: {e}",
                    path.display()
                )),
                _ => {}
            }
        }
    }
}

/// Remove the image `id` if the engine has it untagged and nothing uses it; `Ok(false)` when it is gone, tagged
/// (a later build committed the same image) or in use.
async fn remove_untagged_image(docker: &Docker, id: &str) -> Result<bool, EngineError> {
    let inspect = match docker.inspect_image(id).await {
        Ok(inspect) => inspect,
        Err(e) if is_not_found(&e) => return Ok(false),
        Err(e) => return Err(EngineError::request(format!("inspecting image {id}"), e)),
    };
    let tagged = inspect
        .repo_tags
        .unwrap_or_default()
        .iter()
        .any(|t| t != "<none>:<none>");
    if tagged {
        return Ok(false);
    }
    let options = bollard::query_parameters::RemoveImageOptionsBuilder::new()
        .force(false)
        .noprune(false)
        .build();
    match docker.remove_image(id, Some(options), None).await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        // Used by a container, or a parent of another image: not a leftover.
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 409, ..
        }) => Ok(false),
        Err(e) => Err(EngineError::request(
            format!("removing the untagged image {id}"),
            e,
        )),
    }
}

/// [`prune_async`] from sync code, on any thread.
pub fn prune(engine: &Engine, options: &PruneOptions) -> crate::Result<PruneReport> {
    block_on(prune_async(engine, options))?
}

/// Remove what builds whose process is gone left behind; used when a build starts.
pub(crate) async fn reap_gone(docker: &Docker) -> Result<Reaped, EngineError> {
    let mut reaped = Reaped::default();
    let mut errors = Vec::new();
    for build in find_builds(docker).await? {
        if build.ownership == Ownership::Gone {
            remove_build(docker, &build, &mut reaped, &mut errors).await;
        }
    }
    Ok(reaped)
}

fn label_filter() -> HashMap<&'static str, Vec<&'static str>> {
    HashMap::from([("label", vec![BUILD_LABEL])])
}

/// Every container and volume with [`BUILD_LABEL`], grouped by build.
async fn find_builds(docker: &Docker) -> Result<Vec<BuildResources>, EngineError> {
    let containers = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&label_filter())
                .build(),
        ))
        .await
        .map_err(|e| EngineError::request("listing the containers of Staves builds", e))?;
    let volumes = docker
        .list_volumes(Some(
            ListVolumesOptionsBuilder::default()
                .filters(&label_filter())
                .build(),
        ))
        .await
        .map_err(|e| EngineError::request("listing the volumes of Staves builds", e))?;

    // Per build: owner (from the first resource that names one) and (role order, name) of each resource.
    type Found = (Option<BuildOwner>, Vec<(u8, String)>, Vec<String>);
    let mut builds: BTreeMap<String, Found> = BTreeMap::new();
    for container in containers {
        let labels = container.labels.unwrap_or_default();
        let Some(id) = labels.get(BUILD_LABEL).cloned() else {
            continue;
        };
        let name = container
            .names
            .and_then(|n| n.into_iter().next())
            .map(|n| n.trim_start_matches('/').to_owned())
            .or(container.id)
            .unwrap_or_default();
        let order = match labels.get(ROLE_LABEL).map(String::as_str) {
            Some("builder") => 0,
            _ => 1,
        };
        let entry = builds.entry(id).or_default();
        if entry.0.is_none() {
            entry.0 = BuildOwner::from_labels(&labels);
        }
        entry.1.push((order, name));
    }
    for volume in volumes.volumes.unwrap_or_default() {
        let Some(id) = volume.labels.get(BUILD_LABEL).cloned() else {
            continue;
        };
        let entry = builds.entry(id).or_default();
        if entry.0.is_none() {
            entry.0 = BuildOwner::from_labels(&volume.labels);
        }
        entry.2.push(volume.name);
    }
    Ok(builds
        .into_iter()
        .map(|(build_id, (owner, mut containers, mut volumes))| {
            containers.sort();
            volumes.sort();
            let ownership = owner
                .as_ref()
                .map_or(Ownership::Unknown, BuildOwner::ownership);
            BuildResources {
                build_id,
                owner,
                ownership,
                containers: containers.into_iter().map(|(_, name)| name).collect(),
                volumes,
            }
        })
        .collect())
}

/// Remove one build's containers (builder first) and then its volumes; record what went and what failed.
async fn remove_build(
    docker: &Docker,
    build: &BuildResources,
    removed: &mut Reaped,
    errors: &mut Vec<String>,
) {
    for name in &build.containers {
        match remove_container(docker, name).await {
            Ok(true) => removed.containers.push(name.clone()),
            Ok(false) => {}
            Err(e) => errors.push(e.to_string()),
        }
    }
    for name in &build.volumes {
        match remove_volume(docker, name).await {
            Ok(true) => removed.volumes.push(name.clone()),
            Ok(false) => {}
            Err(e) => errors.push(e.to_string()),
        }
    }
}

/// How long a removal waits for one already under way (started by a process that then died) or for a volume
/// still held by a container being removed.
const REMOVAL_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
const REMOVAL_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// Force-remove a container with its anonymous volumes; `Ok(false)` when it was already gone. A removal already
/// under way is waited for, and then counts as done.
pub(crate) async fn remove_container(docker: &Docker, name: &str) -> Result<bool, EngineError> {
    let options = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    match docker.remove_container(name, Some(options)).await {
        Ok(()) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) if is_removal_in_progress(&e) => {
            let deadline = std::time::Instant::now() + REMOVAL_WAIT;
            while std::time::Instant::now() < deadline {
                match docker.inspect_container(name, None).await {
                    Err(e) if is_not_found(&e) => return Ok(true),
                    _ => tokio::time::sleep(REMOVAL_POLL).await,
                }
            }
            Err(EngineError::request(
                format!("removing container {name}"),
                e,
            ))
        }
        Err(e) => Err(EngineError::request(
            format!("removing container {name}"),
            e,
        )),
    }
}

/// Remove a volume; `Ok(false)` when it was already gone. A volume still in use by a container that is being
/// removed is tried again for a while.
pub(crate) async fn remove_volume(docker: &Docker, name: &str) -> Result<bool, EngineError> {
    let options = RemoveVolumeOptionsBuilder::default().force(true).build();
    let deadline = std::time::Instant::now() + REMOVAL_WAIT;
    loop {
        match docker.remove_volume(name, Some(options.clone())).await {
            Ok(()) => return Ok(true),
            Err(e) if is_not_found(&e) => return Ok(false),
            Err(e) if is_volume_in_use(&e) && std::time::Instant::now() < deadline => {
                tokio::time::sleep(REMOVAL_POLL).await;
            }
            Err(e) => return Err(EngineError::request(format!("removing volume {name}"), e)),
        }
    }
}

fn is_volume_in_use(err: &bollard::errors::Error) -> bool {
    matches!(
        err,
        bollard::errors::Error::DockerResponseServerError { status_code: 409, message }
            if message.contains("in use")
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_free_pid_is_gone() {
        let me = BuildOwner::current();
        assert_eq!(me.pid, std::process::id());
        assert!(me.started > 0, "{me:?}");
        assert_eq!(me.ownership(), Ownership::Alive);
        let labels: HashMap<String, String> = me.labels().into_iter().collect();
        assert_eq!(BuildOwner::from_labels(&labels).as_ref(), Some(&me));

        // The same PID with another start time is a new process: the build is gone.
        let reused = BuildOwner {
            started: me.started + 1,
            ..me.clone()
        };
        assert_eq!(reused.ownership(), Ownership::Gone);
        // A PID that does not exist (above the kernel's pid_max limit of 2^22).
        let free = BuildOwner {
            pid: 4_194_304 + 17,
            ..me.clone()
        };
        assert_eq!(free.ownership(), Ownership::Gone);
        let rebooted = BuildOwner {
            boot_id: "another-boot".into(),
            ..me.clone()
        };
        assert_eq!(rebooted.ownership(), Ownership::Gone);
        let elsewhere = BuildOwner {
            host: format!("{}-elsewhere", me.host),
            pid: 4_194_304 + 17,
            ..me
        };
        assert_eq!(elsewhere.ownership(), Ownership::OtherHost);
    }

    #[test]
    fn start_time_parsing_copes_with_odd_command_names() {
        // Field 2 may hold spaces and parentheses.
        let stat = "123 (a b) c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 4242 20";
        let (_, rest) = stat.rsplit_once(')').unwrap();
        assert_eq!(rest.split_whitespace().nth(19), Some("4242"));
    }
}
