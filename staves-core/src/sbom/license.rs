//! Gentoo `LICENSE` expressions → SPDX license expressions.
//!
//! Gentoo writes `A B` for "both", `|| ( A B )` for "either", `( … )` for grouping and `flag? ( … )` /
//! `!flag? ( … )` for USE-conditional groups. The conversion keeps every alternative (`||` becomes `OR`), keeps
//! conjunctions as `AND`, and resolves USE-conditional groups with the flags the package was built with: a group
//! whose condition does not hold does not apply to the installed package. Gentoo license names that have an SPDX
//! identifier are mapped to it (`GPL-2` → `GPL-2.0-only`); the others become `LicenseRef-<name>`.

use std::collections::BTreeSet;

/// Gentoo license names whose SPDX identifier differs from the name (from Gentoo's `metadata/license-mapping.conf`
/// and the SPDX license list). Names that already are SPDX identifiers (`MIT`, `Apache-2.0`, …) need no entry.
const GENTOO_TO_SPDX: &[(&str, &str)] = &[
    ("AGPL-3", "AGPL-3.0-only"),
    ("AGPL-3+", "AGPL-3.0-or-later"),
    ("Apache-1.1", "Apache-1.1"),
    ("Artistic", "Artistic-1.0-Perl"),
    ("Artistic-2", "Artistic-2.0"),
    ("BSD", "BSD-3-Clause"),
    ("BSD-1", "BSD-1-Clause"),
    ("BSD-2", "BSD-2-Clause"),
    ("BSD-4", "BSD-4-Clause"),
    ("BSD-with-attribution", "BSD-3-Clause-Attribution"),
    ("Boost-1.0", "BSL-1.0"),
    ("CDDL", "CDDL-1.0"),
    ("CDDL-1.1", "CDDL-1.1"),
    ("CC-BY-SA-3.0", "CC-BY-SA-3.0"),
    ("FDL-1.1", "GFDL-1.1-only"),
    ("FDL-1.1+", "GFDL-1.1-or-later"),
    ("FDL-1.2", "GFDL-1.2-only"),
    ("FDL-1.2+", "GFDL-1.2-or-later"),
    ("FDL-1.3", "GFDL-1.3-only"),
    ("FDL-1.3+", "GFDL-1.3-or-later"),
    ("GPL-1", "GPL-1.0-only"),
    ("GPL-1+", "GPL-1.0-or-later"),
    ("GPL-2", "GPL-2.0-only"),
    ("GPL-2+", "GPL-2.0-or-later"),
    ("GPL-3", "GPL-3.0-only"),
    ("GPL-3+", "GPL-3.0-or-later"),
    ("LGPL-2", "LGPL-2.0-only"),
    ("LGPL-2+", "LGPL-2.0-or-later"),
    ("LGPL-2.1", "LGPL-2.1-only"),
    ("LGPL-2.1+", "LGPL-2.1-or-later"),
    ("LGPL-3", "LGPL-3.0-only"),
    ("LGPL-3+", "LGPL-3.0-or-later"),
    ("LPPL-1.3c", "LPPL-1.3c"),
    ("MIT-with-advertising", "MIT-advertising"),
    ("MPL-1.0", "MPL-1.0"),
    ("MPL-1.1", "MPL-1.1"),
    ("MPL-2.0", "MPL-2.0"),
    ("OFL-1.1", "OFL-1.1"),
    ("PSF-2", "PSF-2.0"),
    ("PHP-3", "PHP-3.0"),
    ("PHP-3.01", "PHP-3.01"),
    ("UoI-NCSA", "NCSA"),
    ("WTFPL-2", "WTFPL"),
    ("ZLIB", "Zlib"),
    ("ZPL", "ZPL-2.1"),
    ("bzip2", "bzip2-1.0.6"),
    ("libpng", "Libpng"),
    ("libpng2", "libpng-2.0"),
    ("libtiff", "libtiff"),
    ("openssl", "OpenSSL"),
    ("unicode", "Unicode-DFS-2016"),
    ("vim", "Vim"),
    ("curl", "curl"),
    ("Sleepycat", "Sleepycat"),
    ("sun-bcl", "LicenseRef-sun-bcl"),
];

/// The SPDX identifier for a Gentoo license name, or `LicenseRef-<name>` when SPDX has none.
pub fn spdx_license_id(gentoo: &str) -> String {
    if let Some((_, spdx)) = GENTOO_TO_SPDX.iter().find(|(g, _)| *g == gentoo) {
        return (*spdx).to_owned();
    }
    if let Some(id) = spdx::license_id(gentoo) {
        if !id.is_deprecated() && id.name == gentoo {
            return gentoo.to_owned();
        }
    }
    license_ref(gentoo)
}

/// `LicenseRef-` plus the name with every character SPDX does not allow there replaced by `-`.
pub fn license_ref(name: &str) -> String {
    let idstring: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("LicenseRef-{idstring}")
}

/// A parsed Gentoo license expression.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    License(String),
    All(Vec<Node>),
    Any(Vec<Node>),
    /// `flag? ( … )` or, with `negated`, `!flag? ( … )`.
    If {
        flag: String,
        negated: bool,
        body: Vec<Node>,
    },
}

/// A Gentoo `LICENSE` value that is not well-formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid LICENSE {text:?}: {reason}")]
pub struct LicenseError {
    /// The value.
    pub text: String,
    /// What is wrong.
    pub reason: String,
}

fn parse(text: &str) -> Result<Vec<Node>, LicenseError> {
    let err = |reason: &str| LicenseError {
        text: text.to_owned(),
        reason: reason.to_owned(),
    };
    let tokens: Vec<&str> = text.split_whitespace().collect();
    let mut pos = 0;
    let nodes = parse_seq(&tokens, &mut pos, &err)?;
    if pos != tokens.len() {
        return Err(err("unbalanced `)`"));
    }
    Ok(nodes)
}

fn parse_seq(
    tokens: &[&str],
    pos: &mut usize,
    err: &dyn Fn(&str) -> LicenseError,
) -> Result<Vec<Node>, LicenseError> {
    let mut nodes = Vec::new();
    while let Some(&token) = tokens.get(*pos) {
        if token == ")" {
            break;
        }
        *pos += 1;
        let node = if token == "||" {
            Node::Any(parse_group(tokens, pos, err)?)
        } else if token == "(" {
            *pos -= 1;
            Node::All(parse_group(tokens, pos, err)?)
        } else if let Some(flag) = token.strip_suffix('?') {
            let (flag, negated) = match flag.strip_prefix('!') {
                Some(f) => (f, true),
                None => (flag, false),
            };
            if flag.is_empty() {
                return Err(err("a `?` group has no USE flag"));
            }
            Node::If {
                flag: flag.to_owned(),
                negated,
                body: parse_group(tokens, pos, err)?,
            }
        } else if token == "(" || token.contains(['(', ')', '|', '?']) {
            return Err(err("unexpected token"));
        } else {
            Node::License(token.to_owned())
        };
        nodes.push(node);
    }
    Ok(nodes)
}

fn parse_group(
    tokens: &[&str],
    pos: &mut usize,
    err: &dyn Fn(&str) -> LicenseError,
) -> Result<Vec<Node>, LicenseError> {
    if tokens.get(*pos) != Some(&"(") {
        return Err(err("expected `(`"));
    }
    *pos += 1;
    let body = parse_seq(tokens, pos, err)?;
    if tokens.get(*pos) != Some(&")") {
        return Err(err("missing `)`"));
    }
    *pos += 1;
    Ok(body)
}

/// The result of converting a Gentoo license expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpdxLicense {
    /// The SPDX expression, or `NOASSERTION` when the package declares no license.
    pub expression: String,
    /// The `LicenseRef-…` identifiers used, with the Gentoo name each stands for.
    pub references: BTreeSet<(String, String)>,
}

/// Convert a Gentoo `LICENSE` value to an SPDX expression, resolving USE-conditional groups with `use_flags`.
pub fn to_spdx(gentoo: &str, use_flags: &[String]) -> Result<SpdxLicense, LicenseError> {
    let nodes = parse(gentoo)?;
    let mut references = BTreeSet::new();
    let resolved = resolve(Node::All(nodes), use_flags);
    let expression = match resolved {
        Some(node) => render(&node, &mut references, true),
        None => "NOASSERTION".to_owned(),
    };
    Ok(SpdxLicense {
        expression,
        references,
    })
}

/// Apply USE conditionals and flatten: `None` when nothing applies.
fn resolve(node: Node, use_flags: &[String]) -> Option<Node> {
    let resolve_all = |nodes: Vec<Node>| -> Vec<Node> {
        nodes
            .into_iter()
            .filter_map(|n| resolve(n, use_flags))
            .collect()
    };
    let simplify = |mut items: Vec<Node>, any: bool| match items.len() {
        0 => None,
        1 => items.pop(),
        _ if any => Some(Node::Any(items)),
        _ => Some(Node::All(items)),
    };
    match node {
        Node::License(name) => Some(Node::License(name)),
        Node::All(items) => {
            let mut flat = Vec::new();
            for item in resolve_all(items) {
                match item {
                    Node::All(inner) => flat.extend(inner),
                    other => flat.push(other),
                }
            }
            simplify(flat, false)
        }
        Node::Any(items) => {
            let mut flat = Vec::new();
            for item in resolve_all(items) {
                match item {
                    Node::Any(inner) => flat.extend(inner),
                    other => flat.push(other),
                }
            }
            simplify(flat, true)
        }
        Node::If {
            flag,
            negated,
            body,
        } => {
            let enabled = use_flags.contains(&flag);
            if enabled != negated {
                resolve(Node::All(body), use_flags)
            } else {
                None
            }
        }
    }
}

fn render(node: &Node, refs: &mut BTreeSet<(String, String)>, top: bool) -> String {
    match node {
        Node::License(name) => {
            let id = spdx_license_id(name);
            if id.starts_with("LicenseRef-") {
                refs.insert((id.clone(), name.clone()));
            }
            id
        }
        Node::All(items) | Node::Any(items) => {
            let joiner = if matches!(node, Node::All(_)) {
                " AND "
            } else {
                " OR "
            };
            let inner = items
                .iter()
                .map(|n| render(n, refs, false))
                .collect::<Vec<_>>()
                .join(joiner);
            if top { inner } else { format!("({inner})") }
        }
        Node::If { .. } => "NOASSERTION".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(text: &str, flags: &[&str]) -> String {
        let flags: Vec<String> = flags.iter().map(|f| (*f).to_owned()).collect();
        to_spdx(text, &flags)
            .unwrap_or_else(|e| panic!("{e}"))
            .expression
    }

    #[test]
    fn maps_gentoo_names() {
        assert_eq!(spdx_license_id("GPL-2"), "GPL-2.0-only");
        assert_eq!(spdx_license_id("GPL-2+"), "GPL-2.0-or-later");
        assert_eq!(spdx_license_id("LGPL-2.1+"), "LGPL-2.1-or-later");
        assert_eq!(spdx_license_id("MIT"), "MIT");
        assert_eq!(spdx_license_id("Apache-2.0"), "Apache-2.0");
        assert_eq!(spdx_license_id("BSD"), "BSD-3-Clause");
        assert_eq!(spdx_license_id("HPND"), "HPND");
        assert_eq!(spdx_license_id("public-domain"), "LicenseRef-public-domain");
        assert_eq!(
            spdx_license_id("Staves-Test-EULA"),
            "LicenseRef-Staves-Test-EULA"
        );
        assert_eq!(spdx_license_id("inner-net"), "LicenseRef-inner-net");
        assert_eq!(spdx_license_id("a_b+c"), "LicenseRef-a-b-c");
    }

    #[test]
    fn every_mapped_id_is_a_current_spdx_id() {
        for (gentoo, id) in GENTOO_TO_SPDX {
            if id.starts_with("LicenseRef-") {
                continue;
            }
            let known = spdx::license_id(id).unwrap_or_else(|| panic!("{gentoo} → {id} unknown"));
            assert!(!known.is_deprecated(), "{gentoo} → {id} is deprecated");
        }
    }

    #[test]
    fn keeps_alternatives_and_conjunctions() {
        assert_eq!(convert("GPL-2", &[]), "GPL-2.0-only");
        assert_eq!(convert("GPL-2 MIT", &[]), "GPL-2.0-only AND MIT");
        assert_eq!(convert("|| ( GPL-2 MIT )", &[]), "GPL-2.0-only OR MIT");
        assert_eq!(
            convert("LGPL-2.1+ || ( MIT BSD )", &[]),
            "LGPL-2.1-or-later AND (MIT OR BSD-3-Clause)"
        );
        assert_eq!(
            convert("|| ( ( GPL-2 MIT ) Apache-2.0 )", &[]),
            "(GPL-2.0-only AND MIT) OR Apache-2.0"
        );
        assert_eq!(convert("", &[]), "NOASSERTION");
    }

    #[test]
    fn resolves_use_conditionals() {
        assert_eq!(convert("MIT ssl? ( openssl )", &["ssl"]), "MIT AND OpenSSL");
        assert_eq!(convert("MIT ssl? ( openssl )", &[]), "MIT");
        assert_eq!(convert("MIT !ssl? ( GPL-2 )", &[]), "MIT AND GPL-2.0-only");
        assert_eq!(
            convert("|| ( MIT foo? ( GPL-2 ) )", &["foo"]),
            "MIT OR GPL-2.0-only"
        );
        assert_eq!(convert("foo? ( MIT )", &[]), "NOASSERTION");
    }

    #[test]
    fn produces_valid_spdx_expressions() {
        for text in [
            "GPL-2 MIT",
            "|| ( GPL-2 ( MIT BSD ) ) public-domain",
            "LGPL-2.1+ BSD HPND ISC inner-net rc PCRE",
        ] {
            let expr = convert(text, &[]);
            spdx::Expression::parse(&expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        }
    }

    #[test]
    fn refuses_malformed_values() {
        for bad in ["|| MIT", "( MIT", "MIT )", "? ( MIT )", "foo? MIT"] {
            assert!(to_spdx(bad, &[]).is_err(), "{bad}");
        }
    }
}
