//! [`ImageSpec`] → TOML text in the original's style.

use super::diagnostic::key_segment;
use super::model::ImageSpec;
use std::fmt::Write as _;

/// Quote a string as a TOML literal string (`'…'`) when possible, else as a basic string with escapes.
pub(crate) fn quote(s: &str) -> String {
    if !s.contains('\'') && !s.chars().any(|c| c.is_control() && c != '\t') {
        return format!("'{s}'");
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn array(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", inner.join(", "))
}

/// Write `spec` as TOML: top-level keys, `[annotations]`, `[env]`, `[env.NAME]`, `[[repositories]]`,
/// package tables, `[image]`, `[build]`.
pub(crate) fn to_toml(spec: &ImageSpec) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "name = {}", quote(&spec.name));
    let _ = writeln!(out, "version = {}", quote(&spec.version));
    let _ = writeln!(out, "packages = {}", array(&spec.packages));
    if !spec.command.is_empty() {
        let _ = writeln!(out, "command = {}", array(&spec.command));
    }
    if spec.locale != super::model::Locale::default() {
        let _ = writeln!(
            out,
            "locale = {{ name = {}, charset = {} }}",
            quote(&spec.locale.name),
            quote(&spec.locale.charset)
        );
    }
    if spec.stdlib {
        let _ = writeln!(out, "stdlib = true");
    }
    if !spec.annotations.is_empty() {
        let _ = writeln!(out, "\n[annotations]");
        for (k, v) in &spec.annotations {
            let _ = writeln!(out, "{} = {}", key_segment(k), quote(v));
        }
    }
    if !spec.env.is_empty() {
        let _ = writeln!(out, "\n[env]");
        for (k, v) in &spec.env {
            let _ = writeln!(out, "{} = {}", key_segment(k), quote(v));
        }
    }
    for (name, vars) in &spec.named_envs {
        let _ = writeln!(out, "\n[env.{}]", key_segment(name));
        for (k, v) in vars {
            let _ = writeln!(out, "{} = {}", key_segment(k), quote(v));
        }
    }
    for r in &spec.repositories {
        let _ = writeln!(out, "\n[[repositories]]");
        let _ = writeln!(out, "name = {}", quote(&r.name));
        let _ = writeln!(out, "type = {}", quote(&r.sync_type));
        let _ = writeln!(out, "uri = {}", quote(&r.uri));
    }
    for (atom, cfg) in &spec.package_configs {
        let _ = writeln!(out, "\n[{}]", quote(atom));
        for (key, items) in [
            ("use", &cfg.use_flags),
            ("keywords", &cfg.keywords),
            ("env", &cfg.env),
            ("license", &cfg.license),
        ] {
            if !items.is_empty() {
                let _ = writeln!(out, "{key} = {}", array(items));
            }
        }
    }
    let img = &spec.image;
    if *img != super::model::ImageConfig::default() {
        let _ = writeln!(out, "\n[image]");
        if !img.cmd.is_empty() {
            let _ = writeln!(out, "cmd = {}", array(&img.cmd));
        }
        if let Some(u) = &img.user {
            let _ = writeln!(out, "user = {}", quote(u));
        }
        if let Some(w) = &img.workdir {
            let _ = writeln!(out, "workdir = {}", quote(w));
        }
        if !img.exposed_ports.is_empty() {
            let _ = writeln!(out, "exposed_ports = {}", array(&img.exposed_ports));
        }
        if !img.volumes.is_empty() {
            let _ = writeln!(out, "volumes = {}", array(&img.volumes));
        }
        if let Some(s) = &img.stop_signal {
            let _ = writeln!(out, "stop_signal = {}", quote(s));
        }
        if !img.env.is_empty() {
            let _ = writeln!(out, "\n[image.env]");
            for (k, v) in &img.env {
                let _ = writeln!(out, "{} = {}", key_segment(k), quote(v));
            }
        }
    }
    if !spec.build.is_empty() {
        let _ = writeln!(out, "\n[build]");
        if !spec.build.binhost.is_empty() {
            let _ = writeln!(out, "binhost = {}", array(&spec.build.binhost));
        }
    }
    out
}
