//! `staves cache`: the binary package volume (`--build-cache`) and the local image store (`--cache-dir`).
//! `export` writes the volume as a binary package host (binhost).
//!
//! Without `--binpkgs` or `--store` a command works on both.

use staves_core::BinpkgCache;
use staves_core::cache::BinpkgPrune;
use staves_core::store::{ImageStore, StorePrune};
use std::path::PathBuf;
use std::process::ExitCode;

/// Flags of `staves cache`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: CacheCommand,
}

#[derive(Debug, clap::Subcommand)]
enum CacheCommand {
    /// Every binary package (cpv, USE, build environment fingerprint, size, build time) and stored image.
    List(Common),
    /// Remove what recent builds did not use.
    Prune(PruneArgs),
    /// Remove everything.
    Clear(ClearArgs),
    /// How much space each takes.
    Du(Common),
    /// Write the volume's binary packages and a Packages index into DIR: a binhost any static web server can
    /// serve (then build elsewhere with --binhost URL).
    Export(ExportArgs),
}

/// Flags of `staves cache export`.
#[derive(Debug, clap::Args)]
struct ExportArgs {
    /// The directory to write (new, empty, or an earlier export, which is replaced).
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// The build cache volume to export.
    #[arg(long, default_value = staves_core::DEFAULT_BUILD_CACHE)]
    build_cache: String,
    /// The image whose Portage writes the Packages index (the builder image of the builds).
    #[arg(long, default_value = staves_core::DEFAULT_BUILDER_IMAGE)]
    builder: String,
    /// The Docker engine address (default: DOCKER_HOST, else the local socket).
    #[arg(long, env = "DOCKER_HOST")]
    docker_host: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = crate::Format::Text)]
    format: crate::Format,
}

/// What every `staves cache` command works on.
#[derive(Debug, clap::Args)]
struct Common {
    /// The binary package volume.
    #[arg(long, default_value = staves_core::DEFAULT_BUILD_CACHE)]
    build_cache: String,
    /// The image whose containers read the volume (it has Portage; it is not pulled).
    #[arg(long, default_value = staves_core::DEFAULT_BUILDER_IMAGE)]
    builder: String,
    /// The local image store (default: $XDG_CACHE_HOME/staves, else ~/.cache/staves).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Only the binary package volume.
    #[arg(long)]
    binpkgs: bool,
    /// Only the local image store.
    #[arg(long)]
    store: bool,
    /// The Docker engine address (default: DOCKER_HOST, else the local socket).
    #[arg(long, env = "DOCKER_HOST")]
    docker_host: Option<String>,
    /// Output format.
    #[arg(long, default_value = "text")]
    format: crate::Format,
}

impl Common {
    fn binpkgs(&self) -> Option<BinpkgCache> {
        (self.binpkgs || !self.store).then(|| {
            BinpkgCache::new(&self.build_cache, &self.builder).docker_host(self.docker_host.clone())
        })
    }

    fn store(&self) -> anyhow::Result<Option<ImageStore>> {
        if self.binpkgs && !self.store {
            return Ok(None);
        }
        Ok(Some(
            ImageStore::open(self.cache_dir.as_deref()).map_err(staves_core::Error::from)?,
        ))
    }
}

#[derive(Debug, clap::Args)]
struct PruneArgs {
    #[command(flatten)]
    common: Common,
    /// Keep what the last N builds used (binary packages) / the N most recently used images (store).
    #[arg(
        long,
        value_name = "N",
        required_unless_present = "older_than",
        conflicts_with = "older_than"
    )]
    keep_last: Option<usize>,
    /// Remove what was not built or used since DATE (YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ, or an age such as 30d, 12h).
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    older_than: Option<u64>,
    /// Only say what would be removed.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, clap::Args)]
struct ClearArgs {
    #[command(flatten)]
    common: Common,
    /// Only say what would be removed.
    #[arg(long)]
    dry_run: bool,
}

/// Run `staves cache`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        CacheCommand::List(common) => list(&common),
        CacheCommand::Prune(prune_args) => prune(&prune_args),
        CacheCommand::Clear(clear_args) => clear(&clear_args),
        CacheCommand::Du(common) => du(&common),
        CacheCommand::Export(export_args) => export(&export_args),
    }
}

fn export(args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let export = staves_core::export_binhost(
        &args.build_cache,
        &args.dir,
        &args.builder,
        args.docker_host.as_deref(),
    )?;
    match args.format {
        crate::Format::Json => println!("{}", serde_json::to_string_pretty(&export)?),
        crate::Format::Text => println!(
            "exported {} binary packages ({} files, {} bytes) from volume {} into {}",
            export.packages.len(),
            export.files,
            export.bytes,
            args.build_cache,
            export.dir.display()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_json(value: &serde_json::Value) -> anyhow::Result<ExitCode> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(ExitCode::SUCCESS)
}

fn list(common: &Common) -> anyhow::Result<ExitCode> {
    let binpkgs = common.binpkgs().map(|c| c.list()).transpose()?;
    let store = common.store()?;
    let images = store
        .as_ref()
        .map(ImageStore::list)
        .transpose()
        .map_err(staves_core::Error::from)?;
    if common.format == crate::Format::Json {
        return print_json(&serde_json::json!({
            "binpkgs": binpkgs,
            "store": store.as_ref().map(|s| serde_json::json!({"path": s.path(), "images": images})),
        }));
    }
    if let Some(listing) = &binpkgs {
        println!(
            "build cache volume {} ({} binary packages; {} builds recorded what they used):",
            listing.volume,
            listing.packages.len(),
            listing.builds
        );
        for p in &listing.packages {
            let name = match p.build_id {
                Some(id) => format!("{}-{id}", p.cpv),
                None => p.cpv.clone(),
            };
            println!(
                "  {name:<40} env {:<16} {:>10}  built {}  used {}  USE=\"{}\"",
                p.fingerprint.as_deref().unwrap_or("(none)"),
                staves_core::sbom::human_size(p.size),
                p.build_time
                    .map_or_else(|| "?".into(), staves_core::cache::format_minutes),
                p.last_used.map_or_else(
                    || "never".into(),
                    |t| staves_core::cache::format_minutes(t as u64)
                ),
                p.use_flags.join(" "),
            );
        }
    }
    if let (Some(store), Some(images)) = (&store, &images) {
        println!(
            "local image store {} ({} images):",
            store.path().display(),
            images.len()
        );
        for image in images {
            let layers: Vec<String> = image
                .layers
                .iter()
                .map(|l| {
                    format!(
                        "{} {}",
                        l.compression,
                        staves_core::sbom::human_size(l.size)
                    )
                })
                .collect();
            println!(
                "  {}  {:<28} {} packages  layers: {}  built {}  used {}",
                &image.key[..image.key.len().min(19)],
                image.name,
                image.packages.len(),
                layers.join(", "),
                staves_core::cache::format_minutes(image.created),
                staves_core::cache::format_minutes(image.last_used),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn prune(args: &PruneArgs) -> anyhow::Result<ExitCode> {
    let common = &args.common;
    let (binpkg_rule, store_rule) = match (args.keep_last, args.older_than) {
        (Some(n), _) => (BinpkgPrune::KeepLast(n), StorePrune::KeepLast(n)),
        (None, Some(t)) => (BinpkgPrune::OlderThan(t), StorePrune::UsedSince(t)),
        (None, None) => anyhow::bail!("give --keep-last N or --older-than DATE"),
    };
    let binpkgs = common
        .binpkgs()
        .map(|c| c.prune(binpkg_rule, args.dry_run))
        .transpose()?;
    let store = common
        .store()?
        .map(|s| s.prune(store_rule, args.dry_run))
        .transpose()
        .map_err(staves_core::Error::from)?;
    if common.format == crate::Format::Json {
        return print_json(&serde_json::json!({"binpkgs": binpkgs, "store": store}));
    }
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    if let Some(report) = &binpkgs {
        println!(
            "build cache volume {}: {verb} {} binary packages ({}), kept {}",
            common.build_cache,
            report.removed.len(),
            staves_core::sbom::human_size(report.freed_bytes()),
            report.kept
        );
        for p in &report.removed {
            println!(
                "  {}{}",
                p.cpv,
                p.build_id.map(|id| format!("-{id}")).unwrap_or_default()
            );
        }
    }
    if let Some(report) = &store {
        println!(
            "local image store: {verb} {} images and {} blobs ({}), kept {} images",
            report.removed_builds.len(),
            report.removed_blobs.len(),
            staves_core::sbom::human_size(report.freed_bytes),
            report.kept_builds
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn clear(args: &ClearArgs) -> anyhow::Result<ExitCode> {
    let common = &args.common;
    let binpkgs = common
        .binpkgs()
        .map(|c| c.clear(args.dry_run))
        .transpose()?;
    let store = common
        .store()?
        .map(|s| s.clear(args.dry_run))
        .transpose()
        .map_err(staves_core::Error::from)?;
    if common.format == crate::Format::Json {
        return print_json(&serde_json::json!({"binpkgs": binpkgs, "store": store}));
    }
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    if let Some(report) = &binpkgs {
        println!(
            "build cache volume {}: {verb} {} files, {} of them binary packages ({})",
            common.build_cache,
            report.files,
            report.packages,
            staves_core::sbom::human_size(report.freed_bytes)
        );
    }
    if let Some(report) = &store {
        println!(
            "local image store: {verb} {} images and {} blobs ({})",
            report.removed_builds.len(),
            report.removed_blobs.len(),
            staves_core::sbom::human_size(report.freed_bytes)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn du(common: &Common) -> anyhow::Result<ExitCode> {
    let binpkgs = common.binpkgs().map(|c| c.disk_usage()).transpose()?;
    let store = common
        .store()?
        .map(|s| s.disk_usage())
        .transpose()
        .map_err(staves_core::Error::from)?;
    if common.format == crate::Format::Json {
        return print_json(&serde_json::json!({"binpkgs": binpkgs, "store": store}));
    }
    if let Some(usage) = &binpkgs {
        println!(
            "{}\tbuild cache volume {} ({} binary packages, {} files)",
            staves_core::sbom::human_size(usage.bytes),
            common.build_cache,
            usage.packages,
            usage.files
        );
    }
    if let Some(usage) = &store {
        println!(
            "{}\tlocal image store {} ({} images, {} blobs)",
            staves_core::sbom::human_size(usage.bytes),
            usage.path.display(),
            usage.builds,
            usage.blobs
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// clap's parser for `--older-than`: a date (`YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SSZ`, UTC) or an age (`30d`, `12h`).
fn parse_date(text: &str) -> Result<u64, staves_core::cache::DateError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    staves_core::cache::parse_cutoff(text, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_and_format() {
        assert_eq!(parse_date("1970-01-01"), Ok(0));
        assert_eq!(parse_date("2026-11-30"), Ok(1_795_996_800));
        assert_eq!(parse_date("2026-11-30T01:02:03Z"), Ok(1_795_996_800 + 3723));
        assert_eq!(
            staves_core::cache::format_minutes(1_795_996_800 + 3723),
            "2026-11-30 01:02"
        );
        assert_eq!(staves_core::cache::format_minutes(0), "1970-01-01 00:00");
        for bad in [
            "yesterday",
            "2026-13-01",
            "2026-1-1",
            "2026-11-30T01:02",
            "-5d",
        ] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
        let now = parse_date("0d").unwrap();
        assert_eq!(parse_date("1d").unwrap(), now - 86_400);
        assert_eq!(staves_core::sbom::human_size(10), "10 B");
        assert_eq!(staves_core::sbom::human_size(1536), "1.5 KiB");
    }
}
