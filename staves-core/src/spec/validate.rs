//! The semantic rules of a spec. Every rule yields diagnostics; none stops at the first.

use super::atom::{Atom, is_repo_name, is_use_flag_name};
use super::diagnostic::{Diagnostic, LineIndex, key_segment};
use super::error::SpecError;
use super::model::ImageSpec;
use foldhash::{HashMap, HashMapExt, HashSet};

/// Sync types Portage ships (`portage/sync/modules/*`).
pub(crate) const SYNC_TYPES: &[&str] = &[
    "git",
    "rsync",
    "svn",
    "cvs",
    "mercurial",
    "webrsync",
    "websync",
    "zipfile",
];

/// Collects diagnostics, attaching positions from the spec's source map.
struct Checker<'s> {
    spec: &'s ImageSpec,
    out: Vec<Diagnostic>,
    index: Option<LineIndex<'s>>,
}

impl Checker<'_> {
    fn error(&mut self, key: impl Into<String>, message: impl Into<String>) {
        let d = self
            .spec
            .source
            .0
            .locate(&mut self.index, Diagnostic::error(key, message), false);
        self.out.push(d);
    }

    fn error_at_key(&mut self, key: impl Into<String>, message: impl Into<String>) {
        let d = self
            .spec
            .source
            .0
            .locate(&mut self.index, Diagnostic::error(key, message), true);
        self.out.push(d);
    }

    fn warning(&mut self, key: impl Into<String>, message: impl Into<String>) {
        let d =
            self.spec
                .source
                .0
                .locate(&mut self.index, Diagnostic::warning(key, message), false);
        self.out.push(d);
    }

    fn warning_at_key(&mut self, key: impl Into<String>, message: impl Into<String>) {
        let d = self
            .spec
            .source
            .0
            .locate(&mut self.index, Diagnostic::warning(key, message), true);
        self.out.push(d);
    }

    fn position_text(&mut self, key: &str) -> String {
        let source = &self.spec.source.0;
        match source.offset(key, false) {
            Some(o) => {
                let (l, c) = self
                    .index
                    .get_or_insert_with(|| LineIndex::new(&source.text))
                    .position(o as usize);
                format!(" (first at {l}:{c})")
            }
            None => String::new(),
        }
    }
}

/// Run every rule over `spec`.
pub(crate) fn validate(spec: &ImageSpec) -> Vec<Diagnostic> {
    let mut c = Checker {
        spec,
        out: Vec::new(),
        index: None,
    };
    check_name(&mut c);
    check_packages(&mut c);
    check_locale(&mut c);
    check_env(&mut c);
    check_repositories(&mut c);
    check_package_configs(&mut c);
    check_image(&mut c);
    check_build(&mut c);
    let mut out = c.out;
    // Settings that failed to parse were left out; rules about them would only repeat the parse error.
    // Linear in the number of diagnostics: each key's own prefixes are looked up in a set.
    let failed: HashSet<&str> = spec
        .source
        .0
        .failed
        .iter()
        .map(String::as_str)
        .filter(|f| !f.is_empty())
        .collect();
    if !failed.is_empty() {
        out.retain(|d| {
            let key = d.key.as_str();
            let mut prefixes = key
                .match_indices(['.', '['])
                .map(|(i, _)| &key[..i])
                .chain(std::iter::once(key));
            !prefixes.any(|p| failed.contains(p))
        });
    }
    out.sort_by_key(|d| (d.line.unwrap_or(usize::MAX), d.column.unwrap_or(usize::MAX)));
    out
}

/// An OCI/Docker repository name: `[host[:port]/]component(/component)*`, lowercase components.
pub(crate) fn is_image_name(s: &str) -> bool {
    if s.is_empty() || s.len() > 255 {
        return false;
    }
    let mut parts: Vec<&str> = s.split('/').collect();
    if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
        let host = parts.remove(0);
        let (h, port) = match host.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host, None),
        };
        let host_ok = !h.is_empty()
            && h.split('.').all(|l| {
                !l.is_empty()
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        let port_ok = port
            .is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
        if !host_ok || !port_ok {
            return false;
        }
    }
    parts.iter().all(|p| is_path_component(p))
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn is_path_component(p: &str) -> bool {
    let b = p.as_bytes();
    if b.is_empty() || !is_lower_alnum(b[0]) || !is_lower_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_lower_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_lower_alnum(b[i]) {
            i += 1;
        }
        let sep = &p[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// An image tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub(crate) fn is_tag(s: &str) -> bool {
    s.len() <= 128
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

fn check_name(c: &mut Checker<'_>) {
    let name = &c.spec.name;
    if name.is_empty() {
        c.error(
            "name",
            "the image has no name: add `name = 'owner/image'` at the top of the file",
        );
    } else if !is_image_name(name) {
        c.error(
            "name",
            format!(
                "`{}` is not a valid image name: use lowercase letters, digits and `.`, `_`, `-`, with `/` \
                 between parts and no spaces, e.g. `staves/bash`",
                printable(name)
            ),
        );
    }
    let version = &c.spec.version;
    if !is_tag(version) {
        c.error("version", tag_message(version));
    }
}

fn tag_message(tag: &str) -> String {
    format!(
        "`{}` is not a valid image tag: use up to 128 letters, digits, `_`, `.` and `-`, \
         not starting with `.` or `-`, e.g. `1.0` or `latest`",
        printable(tag)
    )
}

/// Check an image tag given outside a spec (e.g. a `--version` override) by the rule a spec's `version` follows.
///
/// ```
/// assert!(staves_core::spec::check_tag("1.0").is_ok());
/// let err = staves_core::spec::check_tag("bad tag!").unwrap_err();
/// assert!(err.to_string().starts_with("`bad tag!` is not a valid image tag"));
/// ```
pub fn check_tag(tag: &str) -> Result<(), SpecError> {
    if is_tag(tag) {
        Ok(())
    } else {
        Err(SpecError::InvalidValue {
            what: "image tag".to_owned(),
            value: tag.to_owned(),
            message: tag_message(tag),
        })
    }
}

/// Check an image reference `NAME[:TAG][@DIGEST]` (e.g. a builder image given on a command line): the name as a
/// spec's `name`, the tag as its `version`, and a digest `ALGORITHM:HEX` (64 hex digits for `sha256`).
///
/// ```
/// use staves_core::spec::check_image_reference;
/// for ok in ["gentoo/stage3", "gentoo/stage3:latest", "localhost:5000/a/b:1.0"] {
///     assert!(check_image_reference(ok).is_ok(), "{ok}");
/// }
/// assert!(check_image_reference(&format!("a/b@sha256:{}", "0".repeat(64))).is_ok());
/// assert!(check_image_reference("Bad Ref!").is_err());
/// ```
pub fn check_image_reference(reference: &str) -> Result<(), SpecError> {
    let problem = image_reference_problem(reference);
    match problem {
        None => Ok(()),
        Some(why) => Err(SpecError::InvalidValue {
            what: "image reference".to_owned(),
            value: reference.to_owned(),
            message: format!(
                "`{}` is not a valid image reference: {why}; write NAME[:TAG][@DIGEST], e.g. `gentoo/stage3:latest`",
                printable(reference)
            ),
        }),
    }
}

fn image_reference_problem(reference: &str) -> Option<&'static str> {
    let (rest, digest) = match reference.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (reference, None),
    };
    if let Some(digest) = digest {
        let Some((algorithm, hex)) = digest.split_once(':') else {
            return Some("the digest after `@` needs the form ALGORITHM:HEX");
        };
        let algorithm_ok = !algorithm.is_empty()
            && algorithm
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b));
        let hex_ok = match algorithm {
            "sha256" => {
                hex.len() == 64
                    && hex
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            }
            "sha512" => {
                hex.len() == 128
                    && hex
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            }
            _ => {
                hex.len() >= 32
                    && hex
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b))
            }
        };
        if !algorithm_ok || !hex_ok {
            return Some(
                "the digest after `@` is not ALGORITHM:HEX (sha256 has 64 lowercase hex digits)",
            );
        }
    }
    // A `:` after the last `/` starts the tag (one before it is a registry port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if name.is_empty() {
        return Some("it has no image name");
    }
    if !is_image_name(name) {
        return Some(
            "the name must be lowercase letters, digits and `.`, `_`, `-`, with `/` between parts and no spaces",
        );
    }
    if tag.is_some_and(|t| !is_tag(t)) {
        return Some(
            "the tag after `:` must be up to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`",
        );
    }
    None
}

/// Show a value in a message with control characters escaped.
fn printable(s: &str) -> String {
    let cut: String = s.chars().take(80).collect();
    let mut out: String = cut.escape_debug().collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
    out
}

fn check_packages(c: &mut Checker<'_>) {
    let mut seen: HashMap<(String, Option<String>), usize> = HashMap::new();
    for (i, p) in c.spec.packages.iter().enumerate() {
        let key = format!("packages[{i}]");
        match Atom::parse(p) {
            Ok(atom) => {
                let id = (atom.cp(), atom.slot().map(str::to_owned));
                if let Some(&first) = seen.get(&id) {
                    let at = c.position_text(&format!("packages[{first}]"));
                    let what = match &id.1 {
                        Some(slot) => format!("{}:{slot}", id.0),
                        None => id.0.clone(),
                    };
                    c.warning(
                        key,
                        format!(
                            "package `{what}` is listed twice in `packages`{at}: remove one of the entries"
                        ),
                    );
                } else {
                    seen.insert(id, i);
                }
            }
            Err(e) => c.error(
                key,
                format!("invalid package atom: {}", atom_message(&e, p)),
            ),
        }
    }
}

fn atom_message(e: &super::atom::AtomError, _raw: &str) -> String {
    escape_controls(&e.to_string())
}

/// Replace control characters (newlines included) by their escapes, so a message stays on one line.
fn escape_controls(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().collect()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// No whitespace, control characters or `/`.
fn is_locale_part(s: &str) -> bool {
    !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/')
}

fn check_locale(c: &mut Checker<'_>) {
    let l = &c.spec.locale;
    if !is_locale_part(&l.name) {
        c.error(
            "locale.name",
            format!(
                "locale name `{}` must be non-empty with no whitespace, control characters or `/`, e.g. `en_US`",
                printable(&l.name)
            ),
        );
    }
    if !is_locale_part(&l.charset) {
        c.error(
            "locale.charset",
            format!(
                "locale charset `{}` must be non-empty with no whitespace, control characters or `/`, e.g. `UTF-8`",
                printable(&l.charset)
            ),
        );
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`
pub(crate) fn is_env_name(s: &str) -> bool {
    s.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Why an env value cannot be written into make.conf / a bash-sourced file, if it cannot.
pub(crate) fn env_value_problem(v: &str) -> Option<String> {
    if v.contains(['\n', '\r']) {
        return Some("contains a newline; put the value on one line".to_owned());
    }
    if v.contains('"') {
        return Some(
            "contains `\"`; remove the double quote (values are written inside double quotes)"
                .to_owned(),
        );
    }
    if v.contains('`') {
        return Some(
            "contains a backtick; command substitution is not allowed, write the value itself"
                .to_owned(),
        );
    }
    if v.contains("$(") {
        return Some(
            "contains `$(`; command substitution is not allowed, write the value itself".to_owned(),
        );
    }
    if v.ends_with('\\') {
        return Some("ends with a backslash, which would join the next line; remove it".to_owned());
    }
    if let Some(ch) = v.chars().find(|&ch| ch.is_control() && ch != '\t') {
        return Some(format!(
            "contains the control character {}; remove it",
            ch.escape_debug()
        ));
    }
    // `${VAR}` references must be well formed.
    let mut rest = v;
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        match after.find('}') {
            Some(end) if is_env_name(&after[..end]) => rest = &after[end + 1..],
            Some(end) => {
                return Some(format!(
                    "references `${{{}}}`, which is not a variable name; write `${{NAME}}` with letters, digits and `_`",
                    &after[..end]
                ));
            }
            None => return Some("has `${` without a closing `}`; write `${NAME}`".to_owned()),
        }
    }
    None
}

fn check_vars<'a>(
    c: &mut Checker<'_>,
    prefix: &str,
    vars: impl Iterator<Item = (&'a String, &'a String)>,
    what: &str,
) {
    for (name, value) in vars {
        let key = format!("{prefix}.{}", key_segment(name));
        if !is_env_name(name) {
            c.error_at_key(
                key.clone(),
                format!(
                    "`{}` is not a valid variable name in {what}: use letters, digits and `_`, not starting with a digit",
                    printable(name)
                ),
            );
        }
        if let Some(problem) = env_value_problem(value) {
            c.error(
                key,
                format!("the value of `{}` in {what} {problem}", printable(name)),
            );
        }
    }
}

/// Why `name` cannot name an environment (`[env.NAME]`), if it cannot. Portage reads `package.env` as
/// whitespace-separated words (Python's `str.split()`) and ends a line at the first word that starts with `#`, and
/// opens the word as a path under `/etc/portage/env`: a name must be one word that Portage reads back unchanged and
/// that names a file directly in that directory.
pub(crate) fn named_env_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("it is empty")
    } else if name.chars().any(char::is_whitespace) {
        Some("it contains whitespace, which Portage reads as a separator between two names")
    } else if name.chars().any(char::is_control) {
        Some("it contains a control character")
    } else if name.starts_with('#') {
        Some("it starts with `#`, which Portage reads as the start of a comment")
    } else if name.contains('/') {
        Some("it contains `/`")
    } else if name.starts_with('.') {
        Some("it starts with `.`")
    } else {
        None
    }
}

fn check_env(c: &mut Checker<'_>) {
    let spec = c.spec;
    check_vars(c, "env", spec.env.iter(), "`[env]`");
    for (name, vars) in &spec.named_envs {
        let key = format!("env.{}", key_segment(name));
        if let Some(problem) = named_env_problem(name) {
            c.error_at_key(
                key.clone(),
                format!(
                    "`{}` is not a valid environment name: {problem}; it is written to /etc/portage/package.env \
                     and becomes the file /etc/portage/env/NAME, so use e.g. `nocache` or `O3-native`",
                    printable(name)
                ),
            );
        }
        check_vars(
            c,
            &key,
            vars.iter(),
            &format!("`[env.{}]`", printable(name)),
        );
    }
}

fn check_repositories(c: &mut Checker<'_>) {
    let spec = c.spec;
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, r) in spec.repositories.iter().enumerate() {
        let base = format!("repositories[{i}]");
        if r.name.is_empty() {
            c.error(
                format!("{base}.name"),
                "the repository has no `name`: add `name = 'my-repo'` (as in its profiles/repo_name)",
            );
        } else if !is_repo_name(&r.name) {
            c.error(
                format!("{base}.name"),
                format!(
                    "`{}` is not a valid repository name: use letters, digits, `_` and `-`, not starting with `-` \
                     and not ending in `-` followed by a version",
                    printable(&r.name)
                ),
            );
        } else if let Some(&first) = seen.get(r.name.as_str()) {
            let at = c.position_text(&format!("repositories[{first}].name"));
            c.error(
                format!("{base}.name"),
                format!(
                    "repository `{}` is defined twice{at}: rename one or remove the duplicate",
                    r.name
                ),
            );
        } else {
            seen.insert(&r.name, i);
        }
        if r.sync_type.is_empty() {
            c.error(
                format!("{base}.type"),
                format!(
                    "the repository has no `type`: add e.g. `type = 'git'` (one of {})",
                    SYNC_TYPES.join(", ")
                ),
            );
        } else if !SYNC_TYPES.contains(&r.sync_type.as_str()) {
            let hint = match super::parse::suggest(&r.sync_type, SYNC_TYPES) {
                Some(s) => format!("did you mean `{s}`? "),
                None => String::new(),
            };
            c.error(
                format!("{base}.type"),
                format!(
                    "unknown sync type `{}`: {hint}use one of {}",
                    printable(&r.sync_type),
                    SYNC_TYPES.join(", ")
                ),
            );
        }
        if r.uri.is_empty() {
            c.error(
                format!("{base}.uri"),
                "the repository has no `uri` or an empty one: add e.g. `uri = 'https://example.com/overlay.git'`",
            );
        } else if let Some(ch) = r
            .uri
            .chars()
            .find(|&ch| ch.is_whitespace() || ch.is_control() || "\"`\\<>{}|^".contains(ch))
        {
            c.error(
                format!("{base}.uri"),
                format!(
                    "the repository uri `{}` contains {}: a uri has no whitespace, control characters or \
                     any of \" ` \\ < > {{ }} | ^; percent-encode them (e.g. `%20`)",
                    printable(&r.uri),
                    describe_char(ch)
                ),
            );
        }
    }
}

fn describe_char(ch: char) -> String {
    match ch {
        '\n' => "a newline".to_owned(),
        ' ' => "a space".to_owned(),
        '\t' => "a tab".to_owned(),
        c if c.is_control() || c.is_whitespace() => format!("the character {}", c.escape_unicode()),
        c => format!("`{c}`"),
    }
}

/// Why `url` cannot be a binhost URL, if it cannot: Portage fetches binary packages over `http`, `https`, `ftp` or
/// `file`, and the URL is written into `binrepos.conf`, so nothing in it may break out of that file.
pub fn binhost_url_problem(url: &str) -> Option<String> {
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("it contains whitespace or a control character".to_owned());
    }
    if url.contains(['"', '\'', '\\', '`', '$', '#', ';']) {
        return Some(
            "it contains a quote, backslash, `$`, `#` or `;`, which binrepos.conf cannot hold"
                .to_owned(),
        );
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Some("it has no scheme: write http://HOST[:PORT]/PATH".to_owned());
    };
    if !matches!(scheme, "http" | "https" | "ftp" | "file") {
        return Some(format!(
            "Portage fetches binary packages over http, https, ftp or file, not `{scheme}`"
        ));
    }
    if rest.is_empty() || (scheme != "file" && rest.starts_with('/')) {
        return Some("it names no host".to_owned());
    }
    None
}

/// `[+-]?` followed by a PMS USE flag name.
pub(crate) fn is_use_setting(s: &str) -> bool {
    let flag = s.strip_prefix(['+', '-']).unwrap_or(s);
    is_use_flag_name(flag)
}

/// `~arch`, `arch`, `**`, `*`, `-*`, `~*`.
pub(crate) fn is_keyword(s: &str) -> bool {
    if matches!(s, "**" | "*" | "-*" | "~*") {
        return true;
    }
    let arch = s.strip_prefix('~').unwrap_or(s);
    arch.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && arch
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A license name (PMS 3.1.6), a `@GROUP`, optionally negated, or `*` / `-*`.
pub(crate) fn is_license(s: &str) -> bool {
    if s == "*" || s == "-*" {
        return true;
    }
    let s = s.strip_prefix('-').unwrap_or(s);
    let s = s.strip_prefix('@').unwrap_or(s);
    s.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+_.-".contains(&b))
}

fn check_package_configs(c: &mut Checker<'_>) {
    let spec = c.spec;
    let installed: HashSet<String> = spec
        .packages
        .iter()
        .filter_map(|p| Atom::parse(p).ok())
        .map(|a| a.cp())
        .collect();
    // When `packages` did not parse, what it installs is unknown.
    let packages_known = !spec
        .source
        .0
        .failed
        .iter()
        .any(|f| f.starts_with("packages"));
    let known_envs: Vec<&str> = spec.named_envs.keys().map(String::as_str).collect();
    for (atom_text, cfg) in &spec.package_configs {
        let base = key_segment(atom_text);
        match Atom::parse(atom_text) {
            Ok(atom) => {
                if packages_known && !installed.contains(&atom.cp()) {
                    c.warning_at_key(
                        base.clone(),
                        format!(
                            "package table `{atom_text}` configures `{}`, which `packages` does not install: \
                             fine if it is a dependency, otherwise add it to `packages` or remove the table",
                            atom.cp()
                        ),
                    );
                }
            }
            Err(e) => {
                let msg = if atom_text.contains('/') {
                    format!("invalid package table key: {}", atom_message(&e, atom_text))
                } else {
                    let hint = match super::parse::suggest(atom_text, super::parse::TOP_LEVEL_KEYS)
                    {
                        Some(k) => format!("did you mean `{k}`?"),
                        None => {
                            format!(
                                "known keys are {}.",
                                super::parse::TOP_LEVEL_KEYS.join(", ")
                            )
                        }
                    };
                    format!(
                        "unknown key `{}`: {hint} A package table is keyed by a `category/package` atom, \
                         e.g. `['app-shells/bash']`",
                        printable(atom_text)
                    )
                };
                c.error_at_key(base.clone(), msg);
            }
        }
        for (i, flag) in cfg.use_flags.iter().enumerate() {
            if !is_use_setting(flag) {
                c.error(
                    format!("{base}.use[{i}]"),
                    format!(
                        "`{}` is not a valid USE flag: write `flag`, `+flag` or `-flag` with letters, digits and \
                         `+_@-`, starting with a letter or digit",
                        printable(flag)
                    ),
                );
            }
        }
        for (i, kw) in cfg.keywords.iter().enumerate() {
            if !is_keyword(kw) {
                c.error(
                    format!("{base}.keywords[{i}]"),
                    format!(
                        "`{}` is not a valid keyword: write `arch`, `~arch`, `**`, `*`, `-*` or `~*`, \
                         with no whitespace (one keyword per array item)",
                        printable(kw)
                    ),
                );
            }
        }
        for (i, env) in cfg.env.iter().enumerate() {
            if !spec.named_envs.contains_key(env) {
                let hint = match super::parse::suggest(env, &known_envs) {
                    Some(k) => format!("did you mean `{k}`?"),
                    None => format!("define it as a table `[env.{}]`", key_segment(env)),
                };
                c.error(
                    format!("{base}.env[{i}]"),
                    format!("environment `{}` is not defined: {hint}", printable(env)),
                );
            }
        }
        for (i, lic) in cfg.license.iter().enumerate() {
            if !is_license(lic) {
                c.error(
                    format!("{base}.license[{i}]"),
                    format!(
                        "`{}` is not a valid license name: write e.g. `GPL-3`, `@FREE` or `-*`, with letters, \
                         digits and `+_.-`",
                        printable(lic)
                    ),
                );
            }
        }
    }
}

fn check_build(c: &mut Checker<'_>) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, url) in c.spec.build.binhost.iter().enumerate() {
        let key = format!("build.binhost[{i}]");
        if let Some(reason) = binhost_url_problem(url) {
            c.error(
                key,
                format!(
                    "`{}` is not a usable binhost URL: {reason}; give the base URL of a directory that holds a \
                     Packages index, e.g. `http://binhost:8080/`",
                    printable(url)
                ),
            );
        } else if let Some(&first) = seen.get(url.trim_end_matches('/')) {
            let at = c.position_text(&format!("build.binhost[{first}]"));
            c.warning(
                key,
                format!(
                    "binhost `{}` is listed twice in `binhost`{at}: remove one of the entries",
                    printable(url)
                ),
            );
        } else {
            // Trailing slashes do not make another binhost (as `binhost::merge_binhost_urls` treats them).
            seen.insert(url.trim_end_matches('/'), i);
        }
    }
}

fn check_image(c: &mut Checker<'_>) {
    let img = &c.spec.image;
    if let Some(user) = &img.user {
        if user.is_empty() || user.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
            c.error(
                "image.user",
                format!(
                    "user `{}` must be non-empty with no whitespace, e.g. `nobody`, `1000` or `1000:1000`",
                    printable(user)
                ),
            );
        }
    }
    if let Some(wd) = &img.workdir {
        if !wd.starts_with('/') || wd.chars().any(char::is_control) {
            c.error(
                "image.workdir",
                format!(
                    "workdir `{}` must be an absolute path without control characters, e.g. `/data`",
                    printable(wd)
                ),
            );
        }
    }
    let env = &img.env;
    for (name, value) in env {
        let key = format!("image.env.{}", key_segment(name));
        if !is_env_name(name) {
            c.error_at_key(
                key.clone(),
                format!(
                    "`{}` is not a valid variable name in `[image.env]`: use letters, digits and `_`, not starting with a digit",
                    printable(name)
                ),
            );
        }
        if value.chars().any(|ch| ch.is_control() && ch != '\t') {
            c.error(
                key,
                format!(
                    "the value of `{}` in `[image.env]` contains a control character; remove it",
                    printable(name)
                ),
            );
        }
    }
    for (i, port) in img.exposed_ports.iter().enumerate() {
        let (num, proto) = port.split_once('/').unwrap_or((port, "tcp"));
        let ok = num.parse::<u16>().is_ok_and(|n| n > 0)
            && num.bytes().all(|b| b.is_ascii_digit())
            && matches!(proto, "tcp" | "udp" | "sctp");
        if !ok {
            c.error(
                format!("image.exposed_ports[{i}]"),
                format!(
                    "`{}` is not a valid port: write `PORT` or `PORT/tcp|udp|sctp` with PORT in 1–65535, e.g. `8080/tcp`",
                    printable(port)
                ),
            );
        }
    }
    for (i, vol) in img.volumes.iter().enumerate() {
        if !vol.starts_with('/') || vol.chars().any(char::is_control) {
            c.error(
                format!("image.volumes[{i}]"),
                format!(
                    "volume `{}` must be an absolute path without control characters, e.g. `/data`",
                    printable(vol)
                ),
            );
        }
    }
    if let Some(sig) = &img.stop_signal {
        let ok = sig.parse::<u8>().is_ok_and(|n| (1..=64).contains(&n))
            || sig.strip_prefix("SIG").is_some_and(|n| {
                !n.is_empty()
                    && n.bytes().all(|b| {
                        b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'+' || b == b'-'
                    })
            });
        if !ok {
            c.error(
                "image.stop_signal",
                format!(
                    "`{}` is not a signal: write a name like `SIGTERM` or `SIGRTMIN+3`, or a number 1–64",
                    printable(sig)
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_are_checked_part_by_part() {
        for ok in [
            "gentoo/stage3",
            "gentoo/stage3:latest",
            "staves-test/stage3:latest",
            "localhost:5000/a/b",
            "localhost:5000/a/b:1.0",
            "registry.example.com/x",
        ] {
            assert_eq!(image_reference_problem(ok), None, "{ok}");
        }
        let digest = format!("a/b@sha256:{}", "ab".repeat(32));
        assert_eq!(image_reference_problem(&digest), None);
        assert_eq!(
            image_reference_problem(&format!("a/b:1{}", &digest[3..])),
            None
        );
        for (bad, why) in [
            ("Bad Ref!", "name"),
            ("", "no image name"),
            (":tag", "no image name"),
            ("a/b:bad tag", "tag"),
            ("a/b:.x", "tag"),
            ("a/b@sha256:abc", "digest"),
            ("a/b@nodigest", "digest"),
            ("UPPER/case", "name"),
        ] {
            let problem = image_reference_problem(bad).unwrap_or_else(|| panic!("{bad} passed"));
            assert!(problem.contains(why), "{bad}: {problem}");
        }
        let err = check_image_reference("Bad Ref!").unwrap_err().to_string();
        assert!(
            err.starts_with("`Bad Ref!` is not a valid image reference: the name"),
            "{err}"
        );
    }

    #[test]
    fn image_names() {
        for ok in [
            "staves/bash",
            "bash",
            "a.b/c__d-e",
            "localhost:5000/x",
            "registry.example.com/a/b",
        ] {
            assert!(is_image_name(ok), "{ok}");
        }
        for bad in [
            "",
            "Staves/bash",
            "a b",
            "a//b",
            "-a",
            "a-",
            "a/",
            "a___b",
            "exa mple.com/x",
        ] {
            assert!(!is_image_name(bad), "{bad}");
        }
    }

    #[test]
    fn tags_keywords_licenses() {
        assert!(
            is_tag("latest")
                && is_tag("1.0-rc_1")
                && !is_tag(".x")
                && !is_tag("a b")
                && !is_tag("")
        );
        for ok in ["amd64", "~amd64", "**", "*", "-*", "~*", "x86-linux"] {
            assert!(is_keyword(ok), "{ok}");
        }
        for bad in ["~", "amd64 x86", "", "~~amd64", "-amd64"] {
            assert!(!is_keyword(bad), "{bad}");
        }
        assert!(
            is_license("GPL-3") && is_license("@FREE") && is_license("-*") && !is_license("GPL 3")
        );
    }

    #[test]
    fn env_values() {
        assert_eq!(env_value_problem("${CFLAGS} -O3"), None);
        for bad in [
            "a\nb", "a\"b", "a`id`", "$(id)", "a\\", "${1}", "${A", "a\u{7}",
        ] {
            assert!(env_value_problem(bad).is_some(), "{bad:?}");
        }
    }
}
