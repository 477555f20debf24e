//! Quoting for the files Portage reads.

/// A value for a `make.conf` / `env/NAME` assignment, double-quoted for Portage's `getconfig` (a POSIX shlex).
///
/// Inside double quotes shlex removes a backslash only before `"` or `\`, so backslashes are doubled and `"` is
/// escaped: the shlex pass then gives back exactly `value`. `$` is left alone so that `${VAR}` references expand,
/// as the original Staves allowed. Newlines cannot be represented; spec validation rejects them.
pub(crate) fn make_conf_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '\\' || c == '"' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A value for `repos.conf`, which Portage reads with Python's `ConfigParser` (basic interpolation): `%` is doubled.
pub(crate) fn ini_value(value: &str) -> String {
    value.replace('%', "%%")
}

/// A word for a POSIX shell: unchanged when it holds only safe characters, otherwise single-quoted.
pub fn shell_quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(&b));
    if safe {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_conf_value_escapes_backslash_and_quote() {
        assert_eq!(make_conf_value("${CFLAGS} -O3"), "\"${CFLAGS} -O3\"");
        assert_eq!(make_conf_value(r"a\b"), r#""a\\b""#);
        assert_eq!(make_conf_value(r#"a"b"#), r#""a\"b""#);
    }

    #[test]
    fn ini_value_doubles_percent() {
        assert_eq!(ini_value("https://x/a%20b"), "https://x/a%%20b");
    }

    #[test]
    fn shell_quote_leaves_safe_words_and_quotes_the_rest() {
        assert_eq!(shell_quote("app-misc/hello"), "app-misc/hello");
        assert_eq!(shell_quote("=dev-libs/foo-1.2*"), "'=dev-libs/foo-1.2*'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }
}
