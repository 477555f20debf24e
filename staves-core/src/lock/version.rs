//! PMS version comparison (PMS 3.3), as much as checking a lock against spec atoms needs.

use std::cmp::Ordering;

/// The parts of a PMS version: numeric components, letter, suffixes, revision.
struct Parts<'a> {
    numbers: Vec<&'a str>,
    letter: Option<u8>,
    suffixes: Vec<(u8, &'a str)>,
    revision: &'a str,
}

/// Suffix order: `_alpha` < `_beta` < `_pre` < `_rc` < (none) < `_p`.
const SUFFIXES: [(&str, u8); 5] = [("alpha", 0), ("beta", 1), ("pre", 2), ("rc", 3), ("p", 5)];
const NO_SUFFIX: u8 = 4;

fn parts(v: &str) -> Parts<'_> {
    let (body, revision) = match v.rsplit_once("-r") {
        Some((body, rev)) if !rev.is_empty() && rev.bytes().all(|b| b.is_ascii_digit()) => {
            (body, rev)
        }
        _ => (v, "0"),
    };
    let (main, suffix_text) = match body.split_once('_') {
        Some((main, rest)) => (main, Some(rest)),
        None => (body, None),
    };
    let (main, letter) = match main.as_bytes().last() {
        Some(b) if b.is_ascii_lowercase() => (&main[..main.len() - 1], Some(*b)),
        _ => (main, None),
    };
    let mut suffixes = Vec::new();
    if let Some(text) = suffix_text {
        for suffix in text.split('_') {
            let (rank, number) = SUFFIXES
                .iter()
                .find_map(|(name, rank)| suffix.strip_prefix(name).map(|n| (*rank, n)))
                .unwrap_or((NO_SUFFIX, ""));
            suffixes.push((rank, number));
        }
    }
    Parts {
        numbers: main.split('.').collect(),
        letter,
        suffixes,
        revision,
    }
}

/// Compare decimal digit strings as integers of any size.
fn int_cmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Compare two PMS versions (PMS 3.3).
pub(crate) fn compare(a: &str, b: &str) -> Ordering {
    let (a, b) = (parts(a), parts(b));
    let first = int_cmp(
        a.numbers.first().copied().unwrap_or("0"),
        b.numbers.first().copied().unwrap_or("0"),
    );
    if first != Ordering::Equal {
        return first;
    }
    for (x, y) in a.numbers.iter().skip(1).zip(b.numbers.iter().skip(1)) {
        let order = if x.starts_with('0') || y.starts_with('0') {
            x.trim_end_matches('0').cmp(y.trim_end_matches('0'))
        } else {
            int_cmp(x, y)
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    let order = a
        .numbers
        .len()
        .cmp(&b.numbers.len())
        .then_with(|| a.letter.cmp(&b.letter));
    if order != Ordering::Equal {
        return order;
    }
    for (x, y) in a.suffixes.iter().zip(b.suffixes.iter()) {
        let order = x.0.cmp(&y.0).then_with(|| int_cmp(x.1, y.1));
        if order != Ordering::Equal {
            return order;
        }
    }
    let extra = |longer: &Parts<'_>, shorter: &Parts<'_>| {
        if longer.suffixes[shorter.suffixes.len()].0 == 5 {
            Ordering::Greater
        } else {
            Ordering::Less
        }
    };
    let order = match a.suffixes.len().cmp(&b.suffixes.len()) {
        Ordering::Greater => extra(&a, &b),
        Ordering::Less => extra(&b, &a).reverse(),
        Ordering::Equal => Ordering::Equal,
    };
    order.then_with(|| int_cmp(a.revision, b.revision))
}

/// The version without `-rN`.
pub(crate) fn without_revision(v: &str) -> &str {
    match v.rsplit_once("-r") {
        Some((body, rev)) if !rev.is_empty() && rev.bytes().all(|b| b.is_ascii_digit()) => body,
        _ => v,
    }
}

/// `=cat/pkg-PREFIX*` matching: `have` starts with `prefix` as a string (PMS 8.3.1).
pub(crate) fn has_prefix(have: &str, prefix: &str) -> bool {
    have.starts_with(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pms_order() {
        let ordered = [
            "0.9",
            "1",
            "1.0",
            "1.0.1",
            "1.01",
            "1.1_alpha",
            "1.1_beta2",
            "1.1_pre",
            "1.1_rc1",
            "1.1",
            "1.1-r1",
            "1.1_p1",
            "1.1a",
            "1.2",
            "1.10",
            "2",
        ];
        for w in ordered.windows(2) {
            assert_eq!(compare(w[0], w[1]), Ordering::Less, "{} < {}", w[0], w[1]);
            assert_eq!(
                compare(w[1], w[0]),
                Ordering::Greater,
                "{} > {}",
                w[1],
                w[0]
            );
        }
        assert_eq!(compare("1.0-r0", "1.0"), Ordering::Equal);
        assert_eq!(without_revision("2.0-r3"), "2.0");
        assert!(has_prefix("1.2.3", "1.2"));
    }
}
