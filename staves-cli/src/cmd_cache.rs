//! `staves cache`: the binary package volume (`--build-cache`) and the local image store (`--cache-dir`).
//! `export` writes the volume as a binary package host (binhost).
//!
//! Without `--binpkgs` or `--store` a command works on both.

use staves_core::cache::{BinpkgCache, BinpkgPrune};
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
                human_bytes(p.size),
                p.build_time.map_or_else(|| "?".into(), format_time),
                p.last_used
                    .map_or_else(|| "never".into(), |t| format_time(t as u64)),
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
                .map(|l| format!("{} {}", l.compression, human_bytes(l.size)))
                .collect();
            println!(
                "  {}  {:<28} {} packages  layers: {}  built {}  used {}",
                &image.key[..image.key.len().min(19)],
                image.name,
                image.packages.len(),
                layers.join(", "),
                format_time(image.created),
                format_time(image.last_used),
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
            human_bytes(report.freed_bytes()),
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
            human_bytes(report.freed_bytes),
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
            human_bytes(report.freed_bytes)
        );
    }
    if let Some(report) = &store {
        println!(
            "local image store: {verb} {} images and {} blobs ({})",
            report.removed_builds.len(),
            report.removed_blobs.len(),
            human_bytes(report.freed_bytes)
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
            human_bytes(usage.bytes),
            common.build_cache,
            usage.packages,
            usage.files
        );
    }
    if let Some(usage) = &store {
        println!(
            "{}\tlocal image store {} ({} images, {} blobs)",
            human_bytes(usage.bytes),
            usage.path.display(),
            usage.builds,
            usage.blobs
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD HH:MM` (UTC) of a unix time.
fn format_time(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // civil_from_days, the inverse of days_from_civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60
    )
}

/// clap's parser for `--older-than`: a date (`YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SSZ`, UTC) or an age (`30d`, `12h`).
fn parse_date(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "'{text}' is not a date: give YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ (UTC) or an age such as 30d or 12h"
        )
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for (suffix, unit) in [("d", 86_400u64), ("h", 3_600), ("m", 60)] {
        if let Some(n) = text
            .strip_suffix(suffix)
            .and_then(|n| n.parse::<u64>().ok())
        {
            return Ok(now.saturating_sub(n.saturating_mul(unit)));
        }
    }
    let (date, time) = match text.split_once('T') {
        Some((date, time)) => (date, Some(time.strip_suffix('Z').ok_or_else(bad)?)),
        None => (text, None),
    };
    let num = |s: &str, len: usize| -> Result<i64, String> {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
            .ok_or_else(bad)
    };
    let parts: Vec<&str> = date.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return Err(bad());
    };
    let (y, m, d) = (num(y, 4)?, num(m, 2)?, num(d, 2)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let mut secs = days_from_civil(y, m, d) * 86_400;
    if let Some(time) = time {
        let parts: Vec<&str> = time.split(':').collect();
        let [h, mi, s] = parts.as_slice() else {
            return Err(bad());
        };
        let (h, mi, s) = (num(h, 2)?, num(mi, 2)?, num(s, 2)?);
        if h > 23 || mi > 59 || s > 60 {
            return Err(bad());
        }
        secs += h * 3600 + mi * 60 + s;
    }
    u64::try_from(secs).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_and_format() {
        assert_eq!(parse_date("1970-01-01"), Ok(0));
        assert_eq!(parse_date("2026-11-30"), Ok(1_795_996_800));
        assert_eq!(parse_date("2026-11-30T01:02:03Z"), Ok(1_795_996_800 + 3723));
        assert_eq!(format_time(1_795_996_800 + 3723), "2026-11-30 01:02");
        assert_eq!(format_time(0), "1970-01-01 00:00");
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
        assert_eq!(human_bytes(10), "10 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
