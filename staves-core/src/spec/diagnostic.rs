//! Diagnostics with positions, and their rustc-style rendering.

use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// How serious a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The spec cannot be built as written.
    Error,
    /// The spec builds, but probably not as meant.
    Warning,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One finding about a spec: what is wrong, where, and what to do.
///
/// `line` and `column` are 1-based (the column counts characters) and present when the spec came from text.
/// `key` is the logical key path, e.g. `packages[2]` or `'app-shells/bash'.use[0]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// What was wrong and what to do about it.
    pub message: String,
    /// The file the spec came from, if any.
    #[serde(serialize_with = "serialize_path")]
    pub path: Option<PathBuf>,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column in characters, when known.
    pub column: Option<usize>,
    /// Logical key path of the offending setting (empty for file-level problems).
    pub key: String,
}

fn serialize_path<S: serde::Serializer>(path: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
    match path {
        Some(p) => s.serialize_str(&p.to_string_lossy()),
        None => s.serialize_none(),
    }
}

impl Diagnostic {
    /// An error at `key` with no position.
    pub fn error(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, key, message)
    }

    /// A warning at `key` with no position.
    pub fn warning(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, key, message)
    }

    fn new(severity: Severity, key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity,
            message: shorten_message(message.into()),
            path: None,
            line: None,
            column: None,
            key: key.into(),
        }
    }

    /// True for [`Severity::Error`].
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Render rustc-style with `annotate-snippets` (the renderer rustc and cargo use): `error: msg`,
    /// ` --> path:line:col`, the source line and a caret under the column.
    ///
    /// `source` is the text the spec was parsed from; without it (or without a line) only the header and the
    /// location are printed. Control characters in the source are neutralised and long lines are trimmed around
    /// the column by the renderer.
    ///
    /// This finds the line by scanning `source`; to render many diagnostics of one text, use
    /// [`SpecError::render`](crate::SpecError::render) or [`ImageSpec::render_diagnostics`](crate::ImageSpec::render_diagnostics),
    /// which index the lines once.
    pub fn render(&self, source: Option<&str>) -> String {
        let line_text = match (self.line, source) {
            (Some(line), Some(source)) => source.split('\n').nth(line.saturating_sub(1)),
            _ => None,
        };
        self.render_line(line_text)
    }

    /// [`Diagnostic::render`] given the text of the diagnostic's line.
    fn render_line(&self, line_text: Option<&str>) -> String {
        let mut out = String::new();
        self.render_line_into(&mut out, line_text);
        out
    }

    /// [`Diagnostic::render_line`], appended to `out`.
    fn render_line_into(&self, out: &mut String, line_text: Option<&str>) {
        if !self.render_simple(out, line_text) {
            out.push_str(&self.render_snippet(line_text));
        }
    }

    /// The common case rendered directly, byte for byte as `annotate-snippets` does (checked by a test against
    /// it): a short line of printable ASCII, a caret within or just after it, a message and path without control
    /// characters. `annotate-snippets` takes most of the time of rendering thousands of diagnostics otherwise.
    /// Returns false (and writes nothing) for any other case.
    fn render_simple(&self, out: &mut String, line_text: Option<&str>) -> bool {
        use std::fmt::Write as _;
        let (Some(line), Some(column), Some(text)) = (self.line, self.column, line_text) else {
            return false;
        };
        let text = text.strip_suffix('\r').unwrap_or(text);
        let printable = |s: &str| !s.chars().any(char::is_control);
        let path = match &self.path {
            Some(p) => p.to_string_lossy(),
            None => "<input>".into(),
        };
        let simple = line >= 1
            && (1..=text.len() + 1).contains(&column)
            && text.len() <= SIMPLE_LINE_MAX
            && text.bytes().all(|b| (0x20..0x7f).contains(&b))
            && !text.trim().is_empty()
            && printable(&self.message)
            && printable(&path);
        if !simple {
            return false;
        }
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let pad = line.checked_ilog10().unwrap_or(0) as usize + 1;
        let caret = column - 1;
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "{level}: {message}\n{:pad$}--> {path}:{line}:{column}\n{:pad$} |\n{line} | {text}\n{:pad$} | {:caret$}^\n",
            "",
            "",
            "",
            "",
            message = self.message,
        );
        true
    }

    /// [`Diagnostic::render_line`] through `annotate-snippets`.
    fn render_snippet(&self, line_text: Option<&str>) -> String {
        use annotate_snippets::{AnnotationKind, Level, Origin, Renderer, Snippet};
        let level = match self.severity {
            Severity::Error => Level::ERROR,
            Severity::Warning => Level::WARNING,
        };
        let path = self
            .path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "<input>".to_owned());
        let title = level.primary_title(self.message.as_str());
        let group = match (self.line, self.column, line_text) {
            (Some(line), Some(column), Some(text)) => {
                let text = text.strip_suffix('\r').unwrap_or(text);
                let start = text
                    .char_indices()
                    .nth(column.saturating_sub(1))
                    .map_or(text.len(), |(i, _)| i);
                let end = text[start..]
                    .chars()
                    .next()
                    .map_or(start, |c| start + c.len_utf8());
                title.element(
                    Snippet::source(text)
                        .line_start(line)
                        .path(path)
                        .annotation(AnnotationKind::Primary.span(start..end)),
                )
            }
            (Some(line), Some(column), None) => {
                title.element(Origin::path(path).line(line).char_column(column))
            }
            _ if self.key.is_empty() => title.element(Origin::path(path)),
            _ => title
                .element(Origin::path(path))
                .element(Level::NOTE.message(format!("at `{}`", self.key))),
        };
        let mut out = Renderer::plain().render(&[group]);
        out.push('\n');
        out
    }
}

/// Longest message a diagnostic keeps, in characters. Messages quote what they are about; a hostile file can make
/// that megabytes long, and a message is for a person to read.
const MESSAGE_MAX: usize = 1024;

/// `message`, or for one longer than [`MESSAGE_MAX`] characters its start and its end (which says what to do) with
/// the middle cut out.
fn shorten_message(message: String) -> String {
    let count = message.chars().count();
    if count <= MESSAGE_MAX {
        return message;
    }
    let keep = MESSAGE_MAX / 2 - 20;
    let head: String = message.chars().take(keep).collect();
    let tail: String = message.chars().skip(count - keep).collect();
    format!("{head}… ({} characters cut) …{tail}", count - 2 * keep)
}

/// Longest line [`Diagnostic::render_simple`] renders (`annotate-snippets` trims longer ones around the column).
const SIMPLE_LINE_MAX: usize = 100;

/// Render every diagnostic, separated by blank lines, followed by a summary line.
///
/// Linear in the number of diagnostics and the size of `source`: the start of every line is found once.
pub(crate) fn render_all(diagnostics: &[Diagnostic], source: Option<&str>) -> String {
    let starts: Vec<usize> = match source {
        Some(text) => std::iter::once(0)
            .chain(memchr_newlines(text).map(|i| i + 1))
            .collect(),
        None => Vec::new(),
    };
    let line_text = |line: usize| -> Option<&str> {
        let text = source?;
        let start = *starts.get(line.checked_sub(1)?)?;
        let end = starts.get(line).map_or(text.len(), |&next| next - 1);
        text.get(start..end)
    };
    // About what a diagnostic takes rendered, so the text is not copied over and over as it grows.
    let mut out = String::with_capacity(diagnostics.len().saturating_mul(256).min(1 << 30));
    for d in diagnostics {
        d.render_line_into(&mut out, d.line.and_then(line_text));
        out.push('\n');
    }
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = diagnostics.len() - errors;
    out.push_str(&format!(
        "{} error{}, {} warning{}\n",
        errors,
        if errors == 1 { "" } else { "s" },
        warnings,
        if warnings == 1 { "" } else { "s" }
    ));
    out
}

/// Byte offsets of the `\n`s of `text`.
fn memchr_newlines(text: &str) -> impl Iterator<Item = usize> + '_ {
    text.bytes()
        .enumerate()
        .filter(|&(_, b)| b == b'\n')
        .map(|(i, _)| i)
}

/// Byte offset → (line, column) conversion, 1-based, column in characters.
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
    /// (line index, byte offset, characters from line start) of the last lookup, to keep lookups on very long
    /// lines linear overall.
    cursor: (usize, usize, usize),
    /// The text is ASCII: a column is a byte count, found in constant time wherever the lookup lands.
    ascii: bool,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        Self {
            text,
            starts,
            cursor: (0, 0, 0),
            ascii: text.is_ascii(),
        }
    }

    pub(crate) fn position(&mut self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self
            .starts
            .partition_point(|&s| s <= offset)
            .saturating_sub(1);
        let start = self.starts[line];
        if self.ascii {
            return (line + 1, offset - start + 1);
        }
        let (cl, co, cc) = self.cursor;
        let chars = if cl == line && co <= offset {
            cc + self.text[co..offset].chars().count()
        } else {
            self.text[start..offset].chars().count()
        };
        self.cursor = (line, offset, chars);
        (line + 1, chars + 1)
    }
}

/// Where one setting was written, as byte offsets into the source text.
#[derive(Debug, Clone, Default)]
pub(crate) struct Entry {
    /// Offset of the key (`key =`, or the key in a table header).
    pub(crate) key: Option<u32>,
    /// Offset of the value.
    pub(crate) value: Option<u32>,
    /// Offsets of the items, when the value is an array.
    pub(crate) items: Vec<u32>,
}

/// Where each setting of a parsed spec was written: logical key path → offsets. Line and column are computed
/// only for settings that get a diagnostic.
#[derive(Debug, Clone, Default)]
pub(crate) struct SourceMap {
    pub(crate) path: Option<PathBuf>,
    /// The text the spec was parsed from.
    pub(crate) text: Arc<str>,
    /// Key path → offsets. `base[i]` paths are looked up in `base`'s items.
    pub(crate) entries: HashMap<String, Entry, foldhash::fast::RandomState>,
    /// True when the spec was parsed from text: diagnostics then always get a position (1:1 for missing keys).
    pub(crate) from_text: bool,
    /// Key paths that could not be parsed (and were left out of the spec).
    pub(crate) failed: Vec<String>,
    /// The warnings found when the spec was loaded (errors make loading fail).
    pub(crate) warnings: Vec<Diagnostic>,
}

impl SourceMap {
    fn offset_of(&self, key: &str, at_key: bool) -> Option<u32> {
        if let Some(e) = self.entries.get(key) {
            let found = if at_key {
                e.key.or(e.value)
            } else {
                e.value.or(e.key)
            };
            if found.is_some() {
                return found;
            }
        }
        let base = key.strip_suffix(']')?;
        let open = base.rfind('[')?;
        let i: usize = base[open + 1..].parse().ok()?;
        self.entries.get(&base[..open])?.items.get(i).copied()
    }

    /// The offset of `key`, or of the closest enclosing setting that has one
    /// (`repositories[0].uri` → `repositories[0]` → `repositories`).
    pub(crate) fn offset(&self, key: &str, at_key: bool) -> Option<u32> {
        let mut key = key;
        loop {
            if let Some(o) = self.offset_of(key, at_key) {
                return Some(o);
            }
            match key.rfind(['.', '[']) {
                Some(i) if i > 0 => key = &key[..i],
                _ => return None,
            }
        }
    }

    /// Attach the best known position of the diagnostic's key and the path to `d`. `index` is built on first use.
    pub(crate) fn locate<'s>(
        &'s self,
        index: &mut Option<LineIndex<'s>>,
        mut d: Diagnostic,
        at_key: bool,
    ) -> Diagnostic {
        let pos = match self.offset(&d.key, at_key) {
            Some(o) => Some(
                index
                    .get_or_insert_with(|| LineIndex::new(&self.text))
                    .position(o as usize),
            ),
            None => self.from_text.then_some((1, 1)),
        };
        if let Some((line, column)) = pos {
            d.line = Some(line);
            d.column = Some(column);
        }
        if d.path.is_none() {
            d.path.clone_from(&self.path);
        }
        d
    }
}

/// Quote a key segment as TOML would need it (bare when possible, else single-quoted).
pub(crate) fn key_segment(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        s.to_owned()
    } else {
        crate::spec::write::quote(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let text = "a = 1\nbé = 'x'\n";
        let mut idx = LineIndex::new(text);
        assert_eq!(idx.position(0), (1, 1));
        assert_eq!(idx.position(6), (2, 1));
        let x = text.find("'x'").unwrap();
        assert_eq!(idx.position(x), (2, 6));
        // Going backwards still works.
        assert_eq!(idx.position(2), (1, 3));
    }

    #[test]
    fn the_simple_renderer_matches_annotate_snippets() {
        // Deterministic pseudo-random lines of printable ASCII, every column, line numbers of every width.
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut checked = 0;
        let mut texts: Vec<String> = (1..=SIMPLE_LINE_MAX)
            .step_by(7)
            .chain([SIMPLE_LINE_MAX])
            .map(|len| {
                (0..len)
                    .map(|_| char::from(0x20 + (next() % 95) as u8))
                    .collect()
            })
            .collect();
        texts.extend(
            [
                "x",
                "    use = ['bad flag']",
                "name = 'x'   ",
                "  a  b  ",
                "['cat/pkg']",
            ]
            .map(String::from),
        );
        for text in texts {
            let len = text.len();
            if text.trim().is_empty() {
                continue;
            }
            for line in [1, 9, 10, 99, 100, 12_345, 1_000_000] {
                for column in [1, 2, len / 2 + 1, len, len + 1] {
                    if !(1..=len + 1).contains(&column) {
                        continue;
                    }
                    for severity in [Severity::Error, Severity::Warning] {
                        let mut d = Diagnostic::new(
                            severity,
                            "k",
                            format!("`{text}` is wrong here: write `x = 'y'` instead (see {line})"),
                        );
                        d.line = Some(line);
                        d.column = Some(column);
                        d.path = (line % 2 == 0).then(|| PathBuf::from("dir/staves.toml"));
                        let mut simple = String::new();
                        assert!(d.render_simple(&mut simple, Some(&text)), "{d:?}");
                        assert_eq!(simple, d.render_snippet(Some(&text)), "{d:?}");
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 500, "{checked}");
        // A tab, a control character or a long line goes to annotate-snippets.
        let mut d = Diagnostic::error("k", "m");
        d.line = Some(1);
        d.column = Some(1);
        let long = "x".repeat(SIMPLE_LINE_MAX + 1);
        for text in ["a\tb", "a\u{1b}b", "é", &long, "", "   "] {
            let mut out = String::new();
            assert!(!d.render_simple(&mut out, Some(text)), "{text:?}");
            assert!(out.is_empty());
        }
        d.column = Some(5);
        assert!(!d.render_simple(&mut String::new(), Some("abc")));
    }

    #[test]
    fn render_points_a_caret_at_the_column() {
        let mut d = Diagnostic::error("name", "bad name");
        d.line = Some(2);
        d.column = Some(8);
        d.path = Some(PathBuf::from("staves.toml"));
        let out = d.render(Some("# c\nname = 'X'\n"));
        assert_eq!(
            out,
            "error: bad name\n --> staves.toml:2:8\n  |\n2 | name = 'X'\n  |        ^\n"
        );
    }
}
