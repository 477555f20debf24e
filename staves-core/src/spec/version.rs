//! Package versions as the Package Manager Specification defines them (PMS 3.2 syntax, 3.3 comparison).

use std::cmp::Ordering;
use std::fmt;

/// A version suffix kind, in PMS order: `_alpha` < `_beta` < `_pre` < `_rc` < (none) < `_p`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum SuffixKind {
    Alpha,
    Beta,
    Pre,
    Rc,
    P,
}

impl SuffixKind {
    fn parse(s: &str) -> Option<(SuffixKind, &str)> {
        for (name, kind) in [
            ("alpha", SuffixKind::Alpha),
            ("beta", SuffixKind::Beta),
            ("pre", SuffixKind::Pre),
            ("rc", SuffixKind::Rc),
            ("p", SuffixKind::P),
        ] {
            if let Some(rest) = s.strip_prefix(name) {
                return Some((kind, rest));
            }
        }
        None
    }
}

/// A parsed PMS version, e.g. `1.2.3b_rc1_p2-r3`. Ordered by the PMS comparison algorithm.
///
/// ```
/// use staves_core::spec::Version;
/// let v = |s: &str| s.parse::<Version>().unwrap();
/// assert!(v("1.0_rc1") < v("1.0"));
/// assert!(v("1.0") < v("1.0_p1"));
/// assert!(v("1.01") < v("1.1"));
/// assert!(v("1.0-r1") > v("1.0"));
/// assert_eq!(v("1.0-r0"), v("1.0"));
/// ```
#[derive(Debug, Clone)]
pub struct Version {
    text: String,
    numbers: Vec<String>,
    letter: Option<u8>,
    suffixes: Vec<(SuffixKind, String)>,
    revision: String,
}

/// A string that is not a PMS version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a valid version: a version looks like `1.2.3`, `1.2b`, `1.0_rc2` or `2.0-r1`"
)]
pub struct VersionError(pub String);

impl Version {
    /// Parse a version (with an optional `-rN` revision).
    pub fn parse(s: &str) -> Result<Version, VersionError> {
        let err = || VersionError(s.to_owned());
        let (main, revision) = match s.rsplit_once("-r") {
            Some((main, rev)) if !rev.is_empty() && rev.bytes().all(|b| b.is_ascii_digit()) => {
                (main, rev)
            }
            _ => (s, ""),
        };
        let (main, suffix_text) = match main.find('_') {
            Some(i) => (&main[..i], &main[i..]),
            None => (main, ""),
        };
        let (numbers_text, letter) = match main.as_bytes().last() {
            Some(b) if b.is_ascii_lowercase() => (&main[..main.len() - 1], Some(*b)),
            _ => (main, None),
        };
        let numbers: Vec<String> = numbers_text.split('.').map(str::to_owned).collect();
        if numbers
            .iter()
            .any(|n| n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(err());
        }
        let mut suffixes = Vec::new();
        if !suffix_text.is_empty() {
            for part in suffix_text[1..].split('_') {
                let (kind, number) = SuffixKind::parse(part).ok_or_else(err)?;
                if !number.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err());
                }
                suffixes.push((kind, number.to_owned()));
            }
        }
        Ok(Version {
            text: s.to_owned(),
            numbers,
            letter,
            suffixes,
            revision: revision.to_owned(),
        })
    }

    /// The version as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The version without its revision (`1.0-r2` → `1.0`).
    pub fn without_revision(&self) -> &str {
        match self.text.rsplit_once("-r") {
            Some((main, _)) if !self.revision.is_empty() => main,
            _ => &self.text,
        }
    }

    /// Compare only the revisions (`-r0` when absent).
    pub fn cmp_revision(&self, other: &Version) -> Ordering {
        cmp_integers(&self.revision, &other.revision)
    }

    /// True when both versions are equal apart from their revisions.
    pub fn same_base(&self, other: &Version) -> bool {
        let mut a = self.clone();
        let mut b = other.clone();
        a.revision.clear();
        b.revision.clear();
        a == b
    }

    /// PMS `=V*` matching: true when this version's text starts with `prefix` at a component boundary
    /// the way Portage matches it (the prefix is compared as a string).
    pub fn matches_wildcard(&self, prefix: &str) -> bool {
        self.text.starts_with(prefix)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Version {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Version::parse(s)
    }
}

/// Compare two unsigned decimal integers of any length ("" counts as 0).
fn cmp_integers(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

impl Ord for Version {
    /// PMS algorithm 3.1 (and 3.2–3.7 that it calls).
    fn cmp(&self, other: &Self) -> Ordering {
        // 3.2: the first numeric component as integers.
        let ord = cmp_integers(&self.numbers[0], &other.numbers[0]);
        if ord != Ordering::Equal {
            return ord;
        }
        // 3.3: the other numeric components.
        for (a, b) in self.numbers[1..].iter().zip(&other.numbers[1..]) {
            let ord = if a.starts_with('0') || b.starts_with('0') {
                a.trim_end_matches('0').cmp(b.trim_end_matches('0'))
            } else {
                cmp_integers(a, b)
            };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        let ord = self.numbers.len().cmp(&other.numbers.len());
        if ord != Ordering::Equal {
            return ord;
        }
        // 3.4: the letter; none is less than any.
        let ord = self.letter.cmp(&other.letter);
        if ord != Ordering::Equal {
            return ord;
        }
        // 3.5/3.6: suffixes, pairwise.
        for ((ka, na), (kb, nb)) in self.suffixes.iter().zip(&other.suffixes) {
            let ord = ka.cmp(kb).then_with(|| cmp_integers(na, nb));
            if ord != Ordering::Equal {
                return ord;
            }
        }
        match self.suffixes.len().cmp(&other.suffixes.len()) {
            Ordering::Greater => {
                return if self.suffixes[other.suffixes.len()].0 == SuffixKind::P {
                    Ordering::Greater
                } else {
                    Ordering::Less
                };
            }
            Ordering::Less => {
                return if other.suffixes[self.suffixes.len()].0 == SuffixKind::P {
                    Ordering::Less
                } else {
                    Ordering::Greater
                };
            }
            Ordering::Equal => {}
        }
        // 3.7: the revision.
        cmp_integers(&self.revision, &other.revision)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

/// Split `category/package-version` into `category/package` and the version.
pub fn split_cpv(cpv: &str) -> Option<(&str, Version)> {
    let (category, pv) = cpv.split_once('/')?;
    let (package, version) = super::atom::split_version(pv)?;
    let cp_len = category.len() + 1 + package.len();
    Some((&cpv[..cp_len], Version::parse(version).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn pms_ordering() {
        let ordered = [
            "0.9",
            "1",
            "1.0",
            "1.0a",
            "1.0b_alpha1",
            "1.0b_beta",
            "1.0b_pre1",
            "1.0b_rc1",
            "1.0b_rc1_p1",
            "1.0b",
            "1.0b_p1",
            "1.0b_p1-r1",
            "1.0b_p2",
            "1.0.0",
            "1.01",
            "1.1",
            "1.1.1_alpha",
            "1.1.1",
            "1.10",
            "2_pre",
            "2_pre1",
            "2_rc",
            "2",
            "2-r1",
            "2-r10",
            "2_p0",
            "100000000000000000000000",
        ];
        for pair in ordered.windows(2) {
            assert!(v(pair[0]) < v(pair[1]), "{} < {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn equal_forms() {
        assert_eq!(v("1.0-r0"), v("1.0"));
        assert_eq!(v("01"), v("1"));
        assert_eq!(v("1_p"), v("1_p0"));
        assert_eq!(v("1.010"), v("1.01"));
        assert_eq!(v("1.0"), v("1.00"));
    }

    #[test]
    fn revision_helpers() {
        assert_eq!(v("1.2-r3").without_revision(), "1.2");
        assert_eq!(v("1.2").without_revision(), "1.2");
        assert!(v("1.2-r3").same_base(&v("1.2-r1")));
        assert!(!v("1.2-r3").same_base(&v("1.3-r3")));
        assert_eq!(v("1.2-r3").cmp_revision(&v("1.2")), Ordering::Greater);
    }

    #[test]
    fn rejects_non_versions() {
        for bad in [
            "", "a", "1.", ".1", "1..2", "1_foo", "1.0-r", "1.0_rc1x", "1.0ab", "1-2",
        ] {
            assert!(Version::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn splits_cpv() {
        let (cp, ver) = split_cpv("dev-libs/libfoo-1.2-r1").unwrap_or_else(|| panic!("split"));
        assert_eq!(cp, "dev-libs/libfoo");
        assert_eq!(ver.as_str(), "1.2-r1");
        assert!(split_cpv("dev-libs/libfoo").is_none());
    }
}
