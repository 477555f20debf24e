//! TOML text → [`ImageSpec`]: structure, types and positions (no semantic rules; see `validate`).

use super::diagnostic::{Diagnostic, LineIndex, SourceMap, key_segment};
use super::model::{
    BuildSettings, ImageConfig, ImageSpec, Locale, PackageConfig, Repository, SourceHandle,
};
use indexmap::IndexMap;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Largest spec accepted, in bytes.
pub(crate) const MAX_SPEC_BYTES: usize = 32 * 1024 * 1024;

/// Top-level keys that are not package tables.
pub(crate) const TOP_LEVEL_KEYS: &[&str] = &[
    "name",
    "version",
    "packages",
    "command",
    "annotations",
    "locale",
    "stdlib",
    "env",
    "repositories",
    "image",
    "build",
];
const PACKAGE_KEYS: &[&str] = &["use", "keywords", "env", "license"];
const REPOSITORY_KEYS: &[&str] = &["name", "type", "uri"];
const LOCALE_KEYS: &[&str] = &["name", "charset"];
const IMAGE_KEYS: &[&str] = &[
    "cmd",
    "user",
    "workdir",
    "env",
    "exposed_ports",
    "volumes",
    "stop_signal",
];

const BUILD_KEYS: &[&str] = &["binhost"];

type Value<'i> = Spanned<DeValue<'i>>;

/// Bytes → text: the size limit and UTF-8 check, each as one diagnostic.
pub(crate) fn decode<'b>(bytes: &'b [u8], path: Option<&Path>) -> Result<&'b str, Box<Diagnostic>> {
    if bytes.len() > MAX_SPEC_BYTES {
        let mut d = Diagnostic::error(
            "",
            format!(
                "the text is {} bytes, more than the {} MiB a staves.toml may have: is this the right file?",
                bytes.len(),
                MAX_SPEC_BYTES / 1024 / 1024
            ),
        );
        d.path = path.map(Path::to_path_buf);
        return Err(Box::new(d));
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s),
        Err(e) => {
            let good = e.valid_up_to();
            // The valid prefix is UTF-8, so positions within it are well defined.
            let prefix = std::str::from_utf8(&bytes[..good]).unwrap_or_default();
            let (line, column) = LineIndex::new(prefix).position(good);
            let mut d = Diagnostic::error(
                "",
                format!(
                    "the file is not valid UTF-8 (byte 0x{:02X}): save it as UTF-8",
                    bytes[good]
                ),
            );
            d.path = path.map(Path::to_path_buf);
            d.line = Some(line);
            d.column = Some(column);
            Err(Box::new(d))
        }
    }
}

/// Parse as much as possible: the spec with unusable settings left out, plus a diagnostic for each of them.
/// `Err` only when the text is not TOML at all (one diagnostic).
pub(crate) fn parse_lenient(
    text: &str,
    path: Option<&Path>,
) -> Result<(ImageSpec, Vec<Diagnostic>), Vec<Diagnostic>> {
    let path_buf = path.map(Path::to_path_buf);
    if text.len() > MAX_SPEC_BYTES {
        return match decode(text.as_bytes(), path) {
            Err(d) => Err(vec![*d]),
            Ok(_) => Err(Vec::new()),
        };
    }
    let mut p = Parser {
        idx: LineIndex::new(text),
        map: SourceMap {
            path: path_buf,
            text: Arc::from(text),
            from_text: true,
            ..SourceMap::default()
        },
        diags: Vec::new(),
    };
    if let Some(offset) = too_deep(text, MAX_NESTING) {
        p.error(
            "",
            offset..offset,
            format!(
                "arrays and tables are nested more than {MAX_NESTING} levels deep here: \
                 a staves.toml needs at most two levels; remove the extra brackets"
            ),
        );
        return Err(p.diags);
    }
    let root = match DeTable::parse(text) {
        Ok(root) => root,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let message = toml_message(e.message());
            p.error("", span, message);
            return Err(p.diags);
        }
    };
    let spec = p.spec(root.get_ref());
    Ok((spec, p.diags))
}

/// Deepest nesting of arrays and inline tables accepted (the toml parser recurses once per level).
const MAX_NESTING: usize = 32;

/// Byte offset of the first `[`/`{` that opens level `max + 1`, skipping strings and comments.
fn too_deep(text: &str, max: usize) -> Option<usize> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Normal,
        Comment,
        Basic,
        Literal,
        MultiBasic,
        MultiLiteral,
    }
    let b = text.as_bytes();
    let mut state = State::Normal;
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match state {
            State::Normal => match c {
                b'#' => state = State::Comment,
                b'"' if b[i..].starts_with(b"\"\"\"") => {
                    state = State::MultiBasic;
                    i += 2;
                }
                b'"' => state = State::Basic,
                b'\'' if b[i..].starts_with(b"'''") => {
                    state = State::MultiLiteral;
                    i += 2;
                }
                b'\'' => state = State::Literal,
                b'[' | b'{' => {
                    depth += 1;
                    if depth > max {
                        return Some(i);
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            },
            State::Comment if c == b'\n' => state = State::Normal,
            State::Basic | State::Literal if c == b'\n' => state = State::Normal,
            State::Basic | State::MultiBasic if c == b'\\' => i += 1,
            State::Basic if c == b'"' => state = State::Normal,
            State::Literal if c == b'\'' => state = State::Normal,
            State::MultiBasic if b[i..].starts_with(b"\"\"\"") => {
                state = State::Normal;
                i += 2;
            }
            State::MultiLiteral if b[i..].starts_with(b"'''") => {
                state = State::Normal;
                i += 2;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Turn the toml crate's message into one that says what to do.
fn toml_message(raw: &str) -> String {
    let raw = raw.trim();
    let first = raw.lines().next().unwrap_or(raw).trim();
    let hint = if first.contains("duplicate key") {
        "each key may appear only once per table: remove or rename one of them"
    } else if first.contains("recurs") {
        "arrays and tables are nested too deeply: a staves.toml needs at most two levels"
    } else if first.contains("invalid table header") && first.contains("duplicate") {
        "each table may be defined only once: merge the two tables"
    } else {
        "fix the TOML syntax here (strings need quotes, arrays `[...]`, tables `[name]`)"
    };
    format!("invalid TOML: {first}; {hint}")
}

/// A span's start as a compact offset (specs are at most 32 MiB).
fn offset(span: &Range<usize>) -> u32 {
    u32::try_from(span.start).unwrap_or(u32::MAX)
}

struct Parser<'t> {
    idx: LineIndex<'t>,
    map: SourceMap,
    diags: Vec<Diagnostic>,
}

fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// Most candidates [`suggest`] compares a word with: it runs once per unknown name, so a spec with many unknown
/// names and many candidates would otherwise take quadratic time.
const MAX_SUGGESTION_CANDIDATES: usize = 256;

/// The closest of `known` to `word`, if it is close enough to be a typo.
pub(crate) fn suggest<'k>(word: &str, known: &[&'k str]) -> Option<&'k str> {
    if word.is_empty() || word.len() > 64 || known.len() > MAX_SUGGESTION_CANDIDATES {
        return None;
    }
    known
        .iter()
        .map(|k| {
            (
                strsim::osa_distance(word, k),
                strsim::jaro_winkler(word, k),
                *k,
            )
        })
        .filter(|(dist, score, k)| *score >= 0.85 || (*dist <= 1 + k.len() / 5 && *dist < k.len()))
        .min_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)))
        .map(|(_, _, k)| k)
}

fn did_you_mean(word: &str, known: &[&str]) -> String {
    match suggest(word, known) {
        Some(k) => format!("did you mean `{k}`?"),
        None => format!("known keys are: {}", known.join(", ")),
    }
}

impl Parser<'_> {
    fn pos(&mut self, span: Range<usize>) -> (usize, usize) {
        self.idx.position(span.start)
    }

    fn error(&mut self, key: &str, span: Range<usize>, message: impl Into<String>) {
        self.map.failed.push(key.to_owned());
        let (line, column) = self.pos(span);
        let mut d = Diagnostic::error(key, message);
        d.line = Some(line);
        d.column = Some(column);
        d.path.clone_from(&self.map.path);
        self.diags.push(d);
    }

    fn record_value(&mut self, key: &str, span: Range<usize>) {
        self.map.entries.entry(key.to_owned()).or_default().value = Some(offset(&span));
    }

    fn record_key(&mut self, key: &str, span: Range<usize>) {
        self.map.entries.entry(key.to_owned()).or_default().key = Some(offset(&span));
    }

    fn wrong_type(&mut self, key: &str, v: &Value<'_>, expected: &str, example: &str) {
        let found = type_name(v.get_ref());
        self.error(
            key,
            v.span(),
            format!("`{key}` must be {expected}, but it is {found}: write e.g. `{example}`"),
        );
    }

    fn string(&mut self, key: &str, v: &Value<'_>, example: &str) -> Option<String> {
        self.record_value(key, v.span());
        match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            _ => {
                self.wrong_type(key, v, "a string", example);
                None
            }
        }
    }

    fn string_array(&mut self, key: &str, v: &Value<'_>, example: &str) -> Option<Vec<String>> {
        self.record_value(key, v.span());
        let DeValue::Array(items) = v.get_ref() else {
            self.wrong_type(key, v, "an array of strings", example);
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        let offsets = items.iter().map(|item| offset(&item.span())).collect();
        self.map.entries.entry(key.to_owned()).or_default().items = offsets;
        for (i, item) in items.iter().enumerate() {
            match item.get_ref() {
                DeValue::String(s) => out.push(s.to_string()),
                other => {
                    ok = false;
                    let k = format!("{key}[{i}]");
                    let found = type_name(other);
                    self.error(
                        &k,
                        item.span(),
                        format!(
                            "`{key}` must be an array of strings, but item {} is {found}: quote it, e.g. `{example}`",
                            i + 1
                        ),
                    );
                }
            }
        }
        ok.then_some(out)
    }

    fn string_table(
        &mut self,
        key: &str,
        v: &Value<'_>,
        example: &str,
    ) -> Option<IndexMap<String, String>> {
        self.record_value(key, v.span());
        let DeValue::Table(t) = v.get_ref() else {
            self.wrong_type(key, v, "a table of strings", example);
            return None;
        };
        let mut out = IndexMap::with_capacity(t.len());
        for (k, val) in t.iter() {
            let kp = format!("{key}.{}", key_segment(k.get_ref()));
            self.record_key(&kp, k.span());
            if let Some(s) = self.string(&kp, val, example) {
                out.insert(k.get_ref().to_string(), s);
            }
        }
        Some(out)
    }

    fn table<'v, 'i>(
        &mut self,
        key: &str,
        v: &'v Value<'i>,
        example: &str,
    ) -> Option<&'v DeTable<'i>> {
        self.record_value(key, v.span());
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.wrong_type(key, v, "a table", example);
                None
            }
        }
    }

    fn unknown(
        &mut self,
        key: &str,
        span: Range<usize>,
        name: &str,
        known: &[&str],
        context: &str,
    ) {
        let hint = did_you_mean(name, known);
        self.error(key, span, format!("unknown key `{name}` {context}: {hint}"));
    }

    fn spec(&mut self, root: &DeTable<'_>) -> ImageSpec {
        let mut spec = ImageSpec::new("");
        for (k, v) in root.iter() {
            let name: &str = k.get_ref();
            let key = key_segment(name);
            self.record_key(&key, k.span());
            match name {
                "name" => {
                    if let Some(s) = self.string("name", v, "name = 'staves/bash'") {
                        spec.name = s;
                    }
                }
                "version" => {
                    if let Some(s) = self.string("version", v, "version = '1.0'") {
                        spec.version = s;
                    }
                }
                "packages" => {
                    if let Some(a) =
                        self.string_array("packages", v, "packages = ['app-shells/bash']")
                    {
                        spec.packages = a;
                    }
                }
                "command" => {
                    if let Some(a) =
                        self.string_array("command", v, "command = ['/bin/bash', '-c']")
                    {
                        spec.command = a;
                    }
                }
                "annotations" => {
                    if let Some(t) = self.string_table(
                        "annotations",
                        v,
                        "[annotations] 'org.opencontainers.image.title' = 'bash'",
                    ) {
                        spec.annotations = t.into_iter().collect();
                    }
                }
                "locale" => {
                    if let Some(l) = self.locale(v) {
                        spec.locale = l;
                    }
                }
                "stdlib" => {
                    self.record_value("stdlib", v.span());
                    match v.get_ref() {
                        DeValue::Boolean(b) => spec.stdlib = *b,
                        _ => self.wrong_type("stdlib", v, "a boolean", "stdlib = true"),
                    }
                }
                "env" => self.env(v, &mut spec),
                "repositories" => self.repositories(v, &mut spec),
                "image" => {
                    if let Some(i) = self.image(v) {
                        spec.image = i;
                    }
                }
                "build" => {
                    if let Some(b) = self.build(v) {
                        spec.build = b;
                    }
                }
                other => {
                    let looks_like_typo =
                        !other.contains('/') && suggest(other, TOP_LEVEL_KEYS).is_some();
                    match v.get_ref() {
                        DeValue::Table(t) if !looks_like_typo => {
                            if let Some(cfg) = self.package_table(&key, t) {
                                spec.package_configs.insert(other.to_owned(), cfg);
                            }
                        }
                        DeValue::Table(_) => {
                            self.unknown(&key, k.span(), other, TOP_LEVEL_KEYS, "at the top level")
                        }
                        _ => {
                            let hint = did_you_mean(other, TOP_LEVEL_KEYS);
                            self.error(
                                &key,
                                k.span(),
                                format!(
                                    "unknown key `{other}` at the top level: {hint} \
                                     (package settings go in a table like `['app-shells/bash']`)"
                                ),
                            );
                        }
                    }
                }
            }
        }
        spec.source = SourceHandle(Arc::new(std::mem::take(&mut self.map)));
        spec
    }

    fn locale(&mut self, v: &Value<'_>) -> Option<Locale> {
        let t = self.table(
            "locale",
            v,
            "locale = { name = 'en_US', charset = 'UTF-8' }",
        )?;
        let mut locale = Locale::default();
        for (k, val) in t.iter() {
            let kp = format!("locale.{}", key_segment(k.get_ref()));
            self.record_key(&kp, k.span());
            match k.get_ref().as_ref() {
                "name" => {
                    if let Some(s) = self.string(&kp, val, "name = 'en_US'") {
                        locale.name = s;
                    }
                }
                "charset" => {
                    if let Some(s) = self.string(&kp, val, "charset = 'UTF-8'") {
                        locale.charset = s;
                    }
                }
                other => self.unknown(&kp, k.span(), other, LOCALE_KEYS, "in `locale`"),
            }
        }
        Some(locale)
    }

    fn env(&mut self, v: &Value<'_>, spec: &mut ImageSpec) {
        let Some(t) = self.table("env", v, "[env] CFLAGS = '-O2'") else {
            return;
        };
        for (k, val) in t.iter() {
            let name = k.get_ref().to_string();
            let kp = format!("env.{}", key_segment(&name));
            self.record_key(&kp, k.span());
            match val.get_ref() {
                DeValue::String(s) => {
                    self.record_value(&kp, val.span());
                    spec.env.insert(name, s.to_string());
                }
                DeValue::Table(_) => {
                    if let Some(vars) =
                        self.string_table(&kp, val, "[env.nocache] FEATURES = '-buildpkg'")
                    {
                        spec.named_envs.insert(name, vars);
                    }
                }
                _ => self.wrong_type(
                    &kp,
                    val,
                    "a string (a make.conf variable) or a table (a named environment)",
                    "CFLAGS = '-O2'",
                ),
            }
        }
    }

    fn repositories(&mut self, v: &Value<'_>, spec: &mut ImageSpec) {
        self.record_value("repositories", v.span());
        let DeValue::Array(items) = v.get_ref() else {
            self.wrong_type(
                "repositories",
                v,
                "an array of tables",
                "[[repositories]] name = 'my-repo' type = 'git' uri = 'https://…'",
            );
            return;
        };
        for (i, item) in items.iter().enumerate() {
            let base = format!("repositories[{i}]");
            self.record_value(&base, item.span());
            let DeValue::Table(t) = item.get_ref() else {
                self.wrong_type(
                    &base,
                    item,
                    "a table",
                    "{ name = 'my-repo', type = 'git', uri = 'https://…' }",
                );
                continue;
            };
            let mut repo = Repository {
                name: String::new(),
                sync_type: String::new(),
                uri: String::new(),
            };
            for (k, val) in t.iter() {
                let kp = format!("{base}.{}", key_segment(k.get_ref()));
                self.record_key(&kp, k.span());
                let slot = match k.get_ref().as_ref() {
                    "name" => &mut repo.name,
                    "type" => &mut repo.sync_type,
                    "uri" => &mut repo.uri,
                    other => {
                        self.unknown(
                            &kp,
                            k.span(),
                            other,
                            REPOSITORY_KEYS,
                            "in `[[repositories]]`",
                        );
                        continue;
                    }
                };
                if let Some(s) = self.string(&kp, val, "type = 'git'") {
                    *slot = s;
                }
            }
            spec.repositories.push(repo);
        }
    }

    fn package_table(&mut self, key: &str, t: &DeTable<'_>) -> Option<PackageConfig> {
        let mut cfg = PackageConfig::default();
        let mut ok = true;
        for (k, val) in t.iter() {
            let kp = format!("{key}.{}", key_segment(k.get_ref()));
            self.record_key(&kp, k.span());
            let (slot, example) = match k.get_ref().as_ref() {
                "use" => (&mut cfg.use_flags, "use = ['-nls']"),
                "keywords" => (&mut cfg.keywords, "keywords = ['~amd64']"),
                "env" => (&mut cfg.env, "env = ['nocache']"),
                "license" => (&mut cfg.license, "license = ['GPL-3']"),
                other => {
                    ok = false;
                    self.unknown(
                        &kp,
                        k.span(),
                        other,
                        PACKAGE_KEYS,
                        &format!("in package table {key}"),
                    );
                    continue;
                }
            };
            match self.string_array(&kp, val, example) {
                Some(a) => *slot = a,
                None => ok = false,
            }
        }
        ok.then_some(cfg)
    }

    fn build(&mut self, v: &Value<'_>) -> Option<BuildSettings> {
        let t = self.table("build", v, "[build] binhost = ['http://binhost:8080/']")?;
        let mut build = BuildSettings::default();
        for (k, val) in t.iter() {
            let kp = format!("build.{}", key_segment(k.get_ref()));
            self.record_key(&kp, k.span());
            match k.get_ref().as_ref() {
                "binhost" => {
                    if let Some(a) =
                        self.string_array(&kp, val, "binhost = ['http://binhost:8080/']")
                    {
                        build.binhost = a;
                    }
                }
                other => self.unknown(&kp, k.span(), other, BUILD_KEYS, "in `[build]`"),
            }
        }
        Some(build)
    }

    fn image(&mut self, v: &Value<'_>) -> Option<ImageConfig> {
        let t = self.table("image", v, "[image] cmd = ['--help']")?;
        let mut image = ImageConfig::default();
        for (k, val) in t.iter() {
            let kp = format!("image.{}", key_segment(k.get_ref()));
            self.record_key(&kp, k.span());
            match k.get_ref().as_ref() {
                "cmd" => {
                    if let Some(a) = self.string_array(&kp, val, "cmd = ['--help']") {
                        image.cmd = a;
                    }
                }
                "user" => image.user = self.string(&kp, val, "user = '1000:1000'"),
                "workdir" => image.workdir = self.string(&kp, val, "workdir = '/data'"),
                "env" => {
                    if let Some(t) = self.string_table(&kp, val, "[image.env] PATH = '/bin'") {
                        image.env = t;
                    }
                }
                "exposed_ports" => {
                    if let Some(a) = self.string_array(&kp, val, "exposed_ports = ['8080/tcp']") {
                        image.exposed_ports = a;
                    }
                }
                "volumes" => {
                    if let Some(a) = self.string_array(&kp, val, "volumes = ['/data']") {
                        image.volumes = a;
                    }
                }
                "stop_signal" => {
                    image.stop_signal = self.string(&kp, val, "stop_signal = 'SIGTERM'")
                }
                other => self.unknown(&kp, k.span(), other, IMAGE_KEYS, "in `[image]`"),
            }
        }
        Some(image)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_scan_skips_strings_and_comments() {
        let deep = format!("a = {}1{}", "[".repeat(40), "]".repeat(40));
        assert_eq!(too_deep(&deep, 32), Some(4 + 32));
        let fine = format!(
            "a = '{}'\n# {}\nb = \"\\\"{{{{\"\nc = \"\"\"\n[[[[\"\"\"\n[[x]]\n[y]",
            "[".repeat(40),
            "{".repeat(40)
        );
        assert_eq!(too_deep(&fine, 2), None);
        assert_eq!(too_deep("a = [[[]]]", 2), Some(6));
    }
}
