//! Package atoms as the Package Manager Specification (PMS, chapter 8) defines them.

use std::fmt;

/// Why a string is not an acceptable package atom. Messages say what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AtomError {
    /// The atom is empty.
    #[error("the package atom is empty: write `category/package`, e.g. `app-shells/bash`")]
    Empty,
    /// A blocker (`!`/`!!`) was given.
    #[error(
        "`{0}` is a blocker; blockers cannot be installed: list the package itself, without `!`"
    )]
    Blocker(String),
    /// A set (`@world`) was given.
    #[error("`{0}` is a package set; sets are not supported: list its packages one by one")]
    Set(String),
    /// No `category/` part.
    #[error("`{0}` has no category: write `category/package`, e.g. `app-shells/bash`")]
    MissingCategory(String),
    /// The category name is not valid.
    #[error(
        "`{atom}` has an invalid category `{category}`: a category uses letters, digits and `+_.-`, \
         and does not start with `-`, `+` or `.`"
    )]
    InvalidCategory {
        /// The whole atom.
        atom: String,
        /// The category part.
        category: String,
    },
    /// The package name is not valid.
    #[error(
        "`{atom}` has an invalid package name `{package}`: a package name uses letters, digits and `+_-`, \
         does not start with `-` or `+`, and does not end in `-` followed by a version"
    )]
    InvalidPackage {
        /// The whole atom.
        atom: String,
        /// The package part.
        package: String,
    },
    /// A version without an operator.
    #[error(
        "`{atom}` has a version but no operator: write `={atom}` (or `>=`, `<=`, `>`, `<`, `~`)"
    )]
    VersionWithoutOperator {
        /// The whole atom.
        atom: String,
    },
    /// An operator without a version.
    #[error(
        "`{atom}` uses the operator `{op}` but has no version: write e.g. `{op}{cp}-1.0`, or drop `{op}`"
    )]
    OperatorWithoutVersion {
        /// The whole atom.
        atom: String,
        /// The operator.
        op: String,
        /// `category/package`.
        cp: String,
    },
    /// The version is not a PMS version.
    #[error(
        "`{atom}` has an invalid version `{version}`: a version looks like `1.2.3`, `1.2b`, `1.0_rc2` or `2.0-r1`"
    )]
    InvalidVersion {
        /// The whole atom.
        atom: String,
        /// The version part.
        version: String,
    },
    /// `*` after a version without `=`.
    #[error("`{atom}`: a trailing `*` is only allowed with the `=` operator: write `={rest}`")]
    WildcardWithoutEquals {
        /// The whole atom.
        atom: String,
        /// The atom without its operator.
        rest: String,
    },
    /// The slot part is not valid.
    #[error(
        "`{atom}` has an invalid slot `:{slot}`: write `:SLOT`, `:SLOT/SUBSLOT`, `:*`, `:=` or `:SLOT=`"
    )]
    InvalidSlot {
        /// The whole atom.
        atom: String,
        /// The slot part, without `:`.
        slot: String,
    },
    /// The repository part is not valid.
    #[error(
        "`{atom}` has an invalid repository `::{repo}`: a repository name uses letters, digits, `_` and `-`, \
         and does not start with `-`"
    )]
    InvalidRepository {
        /// The whole atom.
        atom: String,
        /// The repository part, without `::`.
        repo: String,
    },
    /// The USE dependency part is not valid.
    #[error(
        "`{atom}` has an invalid USE dependency `{dep}`: write `[flag,-flag,flag=,!flag=,flag?,!flag?]`, \
         with an optional `(+)` or `(-)` after the flag"
    )]
    InvalidUseDep {
        /// The whole atom.
        atom: String,
        /// The offending part.
        dep: String,
    },
    /// Something follows the atom that is not part of the syntax.
    #[error(
        "`{atom}` has unexpected text `{rest}` after the package: check for stray characters or spaces"
    )]
    Trailing {
        /// The whole atom.
        atom: String,
        /// The unexpected text.
        rest: String,
    },
}

/// A version operator of an atom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `<`
    Less,
    /// `<=`
    LessOrEqual,
    /// `=`
    Equal,
    /// `~` (any revision)
    Approximate,
    /// `>=`
    GreaterOrEqual,
    /// `>`
    Greater,
}

impl Operator {
    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Less => "<",
            Operator::LessOrEqual => "<=",
            Operator::Equal => "=",
            Operator::Approximate => "~",
            Operator::GreaterOrEqual => ">=",
            Operator::Greater => ">",
        }
    }
}

/// A parsed package dependency specification, e.g. `>=dev-lang/python-3.11:3.11::gentoo[sqlite]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Atom {
    op: Option<Operator>,
    category: String,
    package: String,
    version: Option<String>,
    wildcard: bool,
    slot: Option<String>,
    repository: Option<String>,
    use_deps: Vec<String>,
}

impl Atom {
    /// Parse an atom in PMS syntax. Blockers and sets are rejected.
    pub fn parse(s: &str) -> Result<Atom, AtomError> {
        let atom = s;
        if s.is_empty() {
            return Err(AtomError::Empty);
        }
        if s.starts_with('!') {
            return Err(AtomError::Blocker(s.to_owned()));
        }
        if s.starts_with('@') {
            return Err(AtomError::Set(s.to_owned()));
        }
        let (op, rest) = if let Some(r) = s.strip_prefix(">=") {
            (Some(Operator::GreaterOrEqual), r)
        } else if let Some(r) = s.strip_prefix("<=") {
            (Some(Operator::LessOrEqual), r)
        } else if let Some(r) = s.strip_prefix('>') {
            (Some(Operator::Greater), r)
        } else if let Some(r) = s.strip_prefix('<') {
            (Some(Operator::Less), r)
        } else if let Some(r) = s.strip_prefix('=') {
            (Some(Operator::Equal), r)
        } else if let Some(r) = s.strip_prefix('~') {
            (Some(Operator::Approximate), r)
        } else {
            (None, s)
        };
        let without_op = rest;

        // Split off USE deps, repository, slot (in that order from the end).
        let (rest, use_part) = match rest.find('[') {
            Some(i) => (&rest[..i], Some(&rest[i..])),
            None => (rest, None),
        };
        let (rest, repo) = match rest.find("::") {
            Some(i) => (&rest[..i], Some(&rest[i + 2..])),
            None => (rest, None),
        };
        let (cpv, slot) = match rest.find(':') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };

        let Some((category, pv)) = cpv.split_once('/') else {
            return Err(AtomError::MissingCategory(atom.to_owned()));
        };
        if !is_category(category) {
            return Err(AtomError::InvalidCategory {
                atom: atom.to_owned(),
                category: category.to_owned(),
            });
        }
        let (pv, wildcard) = match pv.strip_suffix('*') {
            Some(p) => (p, true),
            None => (pv, false),
        };
        let (package, version) = match op {
            None => {
                if wildcard || !is_package(pv) {
                    if split_version(pv).is_some() {
                        return Err(AtomError::VersionWithoutOperator {
                            atom: atom.to_owned(),
                        });
                    }
                    return Err(AtomError::InvalidPackage {
                        atom: atom.to_owned(),
                        package: pv.to_owned(),
                    });
                }
                (pv, None)
            }
            Some(o) => match split_version(pv) {
                Some((p, v)) if is_package(p) => (p, Some(v)),
                Some((p, _)) => {
                    return Err(AtomError::InvalidPackage {
                        atom: atom.to_owned(),
                        package: p.to_owned(),
                    });
                }
                None => {
                    // Either no version at all, or one that does not parse.
                    if is_package(pv) {
                        return Err(AtomError::OperatorWithoutVersion {
                            atom: atom.to_owned(),
                            op: o.as_str().to_owned(),
                            cp: format!("{category}/{pv}"),
                        });
                    }
                    return match pv.rsplit_once('-') {
                        Some((p, v))
                            if is_package(p) && v.starts_with(|c: char| c.is_ascii_digit()) =>
                        {
                            Err(AtomError::InvalidVersion {
                                atom: atom.to_owned(),
                                version: v.to_owned(),
                            })
                        }
                        _ => Err(AtomError::InvalidPackage {
                            atom: atom.to_owned(),
                            package: pv.to_owned(),
                        }),
                    };
                }
            },
        };
        if wildcard && op != Some(Operator::Equal) {
            return Err(AtomError::WildcardWithoutEquals {
                atom: atom.to_owned(),
                rest: without_op.to_owned(),
            });
        }
        if let Some(sl) = slot {
            if !is_slot_dep(sl) {
                return Err(AtomError::InvalidSlot {
                    atom: atom.to_owned(),
                    slot: sl.to_owned(),
                });
            }
        }
        if let Some(r) = repo {
            if !is_repo_name(r) {
                return Err(AtomError::InvalidRepository {
                    atom: atom.to_owned(),
                    repo: r.to_owned(),
                });
            }
        }
        let mut use_deps = Vec::new();
        if let Some(u) = use_part {
            let Some(close) = u.find(']') else {
                return Err(AtomError::InvalidUseDep {
                    atom: atom.to_owned(),
                    dep: u.to_owned(),
                });
            };
            let after = &u[close + 1..];
            if !after.is_empty() {
                return Err(AtomError::Trailing {
                    atom: atom.to_owned(),
                    rest: after.to_owned(),
                });
            }
            for dep in u[1..close].split(',') {
                if !is_use_dep(dep) {
                    return Err(AtomError::InvalidUseDep {
                        atom: atom.to_owned(),
                        dep: dep.to_owned(),
                    });
                }
                use_deps.push(dep.to_owned());
            }
        }
        Ok(Atom {
            op,
            category: category.to_owned(),
            package: package.to_owned(),
            version: version.map(str::to_owned),
            wildcard,
            slot: slot.map(str::to_owned),
            repository: repo.map(str::to_owned),
            use_deps,
        })
    }

    /// The category, e.g. `app-shells`.
    pub fn category(&self) -> &str {
        &self.category
    }

    /// The package name, e.g. `bash`.
    pub fn package(&self) -> &str {
        &self.package
    }

    /// `category/package`, e.g. `app-shells/bash`.
    pub fn cp(&self) -> String {
        format!("{}/{}", self.category, self.package)
    }

    /// The version operator, if any.
    pub fn operator(&self) -> Option<Operator> {
        self.op
    }

    /// The version (without operator or `*`), if any.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// True for `=cat/pkg-1.2*`.
    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    /// The slot dependency without `:`, e.g. `0`, `0/1`, `*`, `=`.
    pub fn slot(&self) -> Option<&str> {
        self.slot.as_deref()
    }

    /// The repository without `::`.
    pub fn repository(&self) -> Option<&str> {
        self.repository.as_deref()
    }

    /// The USE dependencies, e.g. `["foo", "-bar"]`.
    pub fn use_deps(&self) -> &[String] {
        &self.use_deps
    }
}

impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(op) = self.op {
            f.write_str(op.as_str())?;
        }
        write!(f, "{}/{}", self.category, self.package)?;
        if let Some(v) = &self.version {
            write!(f, "-{v}")?;
        }
        if self.wildcard {
            f.write_str("*")?;
        }
        if let Some(s) = &self.slot {
            write!(f, ":{s}")?;
        }
        if let Some(r) = &self.repository {
            write!(f, "::{r}")?;
        }
        if !self.use_deps.is_empty() {
            write!(f, "[{}]", self.use_deps.join(","))?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Atom {
    type Err = AtomError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Atom::parse(s)
    }
}

fn name_chars(s: &str, extra: &[u8]) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || extra.contains(&b))
}

/// PMS 3.1.1: `[A-Za-z0-9_][A-Za-z0-9+_.-]*`.
pub(crate) fn is_category(s: &str) -> bool {
    s.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && name_chars(s, b"+_.-")
}

/// PMS 3.1.2: `[A-Za-z0-9_][A-Za-z0-9+_-]*`, not ending in `-` + a valid version.
pub(crate) fn is_package(s: &str) -> bool {
    s.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && name_chars(s, b"+_-")
        && split_version(s).is_none()
}

/// PMS 3.1.5 repository names: `[A-Za-z0-9_][A-Za-z0-9_-]*`, not ending in `-` + a valid version.
pub(crate) fn is_repo_name(s: &str) -> bool {
    s.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && name_chars(s, b"_-")
        && split_version(s).is_none()
}

/// PMS 3.1.3 slot names: `[A-Za-z0-9_][A-Za-z0-9+_.-]*`.
fn is_slot_name(s: &str) -> bool {
    is_category(s)
}

fn is_slot_dep(s: &str) -> bool {
    if s == "*" || s == "=" {
        return true;
    }
    let s = s.strip_suffix('=').unwrap_or(s);
    match s.split_once('/') {
        Some((slot, sub)) => is_slot_name(slot) && is_slot_name(sub),
        None => is_slot_name(s),
    }
}

/// PMS 3.1.4 USE flag names: `[A-Za-z0-9][A-Za-z0-9+_@-]*`.
pub(crate) fn is_use_flag_name(s: &str) -> bool {
    s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric()) && name_chars(s, b"+_@-")
}

fn is_use_dep(dep: &str) -> bool {
    let (body, conditional) = match dep.strip_suffix('?').or_else(|| dep.strip_suffix('=')) {
        Some(d) => (d, true),
        None => (dep, false),
    };
    let flag = if conditional {
        body.strip_prefix('!').unwrap_or(body)
    } else {
        body.strip_prefix('-').unwrap_or(body)
    };
    let flag = flag
        .strip_suffix("(+)")
        .or_else(|| flag.strip_suffix("(-)"))
        .unwrap_or(flag);
    is_use_flag_name(flag)
}

/// Split `name-VERSION` at the last `-` that starts a valid PMS version.
pub(crate) fn split_version(pv: &str) -> Option<(&str, &str)> {
    // The version may contain `-r1`, so try each `-` from the left and take the first valid split.
    let mut from = 0;
    while let Some(i) = pv[from..].find('-') {
        let i = from + i;
        let (p, v) = (&pv[..i], &pv[i + 1..]);
        if !p.is_empty() && is_version(v) {
            return Some((p, v));
        }
        from = i + 1;
    }
    None
}

/// PMS 3.2: `\d+(\.\d+)*[a-z]?((_alpha|_beta|_pre|_rc|_p)\d*)*(-r\d+)?`.
pub(crate) fn is_version(v: &str) -> bool {
    let b = v.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let s = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > s
    };
    if !digits(&mut i) {
        return false;
    }
    while i < b.len() && b[i] == b'.' {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if i < b.len() && b[i].is_ascii_lowercase() {
        i += 1;
    }
    'suffix: while i < b.len() && b[i] == b'_' {
        for suf in ["alpha", "beta", "pre", "rc", "p"] {
            if v[i + 1..].starts_with(suf) {
                i += 1 + suf.len();
                digits(&mut i);
                continue 'suffix;
            }
        }
        return false;
    }
    if v[i..].starts_with("-r") {
        i += 2;
        if !digits(&mut i) {
            return false;
        }
    }
    i == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_pms_atoms() {
        for ok in [
            "app-shells/bash",
            "=app-shells/bash-5.2_p15-r1",
            ">=dev-lang/python-3.11:3.11::gentoo[sqlite,-tk]",
            "<sys-libs/glibc-2.40",
            "<=a/b-1",
            ">a/b-1.0b",
            "~a/b-1.0",
            "=dev-utils/mylibrary-9999",
            "=a/b-1.2*",
            "a/b:0",
            "a/b:0/1",
            "a/b:*",
            "a/b:=",
            "a/b:0=",
            "a/b::my-repo",
            "a/b[foo,-bar,baz?,!qux=,x(+),y(-)=]",
            "dev-libs/libfoo-bar",
            "x11-libs/gtk+",
        ] {
            assert!(Atom::parse(ok).is_ok(), "{ok}: {:?}", Atom::parse(ok));
        }
    }

    #[test]
    fn accessors() {
        let a = Atom::parse(">=dev-lang/python-3.11-r2:3.11/x::gentoo[sqlite]").unwrap();
        assert_eq!(a.category(), "dev-lang");
        assert_eq!(a.package(), "python");
        assert_eq!(a.cp(), "dev-lang/python");
        assert_eq!(a.version(), Some("3.11-r2"));
        assert_eq!(a.slot(), Some("3.11/x"));
        assert_eq!(a.repository(), Some("gentoo"));
        assert_eq!(a.use_deps(), ["sqlite"]);
        assert_eq!(a.operator(), Some(Operator::GreaterOrEqual));
        assert_eq!(
            a.to_string(),
            ">=dev-lang/python-3.11-r2:3.11/x::gentoo[sqlite]"
        );
    }

    #[test]
    fn rejects_bad_atoms() {
        type Check = fn(&AtomError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("", |e| matches!(e, AtomError::Empty)),
            ("!a/b", |e| matches!(e, AtomError::Blocker(_))),
            ("!!a/b", |e| matches!(e, AtomError::Blocker(_))),
            ("@world", |e| matches!(e, AtomError::Set(_))),
            ("bash", |e| matches!(e, AtomError::MissingCategory(_))),
            ("../../etc/x", |e| {
                matches!(e, AtomError::InvalidCategory { .. })
            }),
            (">=a/b", |e| {
                matches!(e, AtomError::OperatorWithoutVersion { .. })
            }),
            ("a/b-1.0", |e| {
                matches!(e, AtomError::VersionWithoutOperator { .. })
            }),
            (">=a/b-1.0*", |e| {
                matches!(e, AtomError::WildcardWithoutEquals { .. })
            }),
            ("=a/b-1.x", |e| {
                matches!(e, AtomError::InvalidVersion { .. })
            }),
            ("a/b:", |e| matches!(e, AtomError::InvalidSlot { .. })),
            ("a/b::-x", |e| {
                matches!(e, AtomError::InvalidRepository { .. })
            }),
            ("a/b[]", |e| matches!(e, AtomError::InvalidUseDep { .. })),
            ("a/b[x]y", |e| matches!(e, AtomError::Trailing { .. })),
            ("a/b c", |e| matches!(e, AtomError::InvalidPackage { .. })),
            ("a/-b", |e| matches!(e, AtomError::InvalidPackage { .. })),
        ];
        for (s, check) in cases {
            let e = Atom::parse(s).unwrap_err();
            assert!(check(&e), "{s}: {e:?}");
        }
    }

    #[test]
    fn versions() {
        for ok in [
            "1", "1.2.3", "1.2b", "1_alpha", "1_rc2_p3", "2.0-r1", "9999",
        ] {
            assert!(is_version(ok), "{ok}");
        }
        for bad in ["", "a", "1.", "1..2", "1_x", "1-r", "1-rx", "1AB"] {
            assert!(!is_version(bad), "{bad}");
        }
    }
}
