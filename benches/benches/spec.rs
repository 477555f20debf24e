//! Parse and validate a generated spec with 5,000 packages and 5,000 package tables.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use staves_core::ImageSpec;
use std::hint::black_box;

/// A valid spec: `n` packages, each with a package table holding USE flags, keywords and a named env.
fn generated_spec(n: usize) -> String {
    let mut s = String::from(
        "name = 'staves/bench'\nversion = '1.0'\ncommand = ['/bin/sh']\n\
         [env]\nCFLAGS = '${CFLAGS} -O2'\n[env.nocache]\nFEATURES = '-buildpkg'\n",
    );
    s.push_str("packages = [\n");
    for i in 0..n {
        s.push_str(&format!("  '>=cat-{}/pkg{i}-1.{i}:0',\n", i % 100));
    }
    s.push_str("]\n");
    // `packages` must come before the tables: move the [env] tables after it.
    let (head, rest) = s.split_at(s.find("[env]").unwrap());
    let (envs, pkgs) = rest.split_at(rest.find("packages = [").unwrap());
    let mut s = format!("{head}{pkgs}{envs}");
    for i in 0..n {
        s.push_str(&format!(
            "['>=cat-{}/pkg{i}-1.{i}:0']\nuse = ['-nls', 'ssl', '+readline']\nkeywords = ['~amd64']\nenv = ['nocache']\n",
            i % 100
        ));
    }
    s
}

/// A spec with `n` package tables that each break one rule (a USE flag with a space), all listed in `packages`.
fn erroneous_spec(n: usize) -> String {
    let mut s = String::from("name = 'staves/bench'\npackages = [\n");
    for i in 0..n {
        s.push_str(&format!("  'cat-{}/pkg{i}',\n", i % 100));
    }
    s.push_str("]\n");
    for i in 0..n {
        s.push_str(&format!("['cat-{}/pkg{i}']\nuse = ['bad flag']\n", i % 100));
    }
    s
}

fn bench_spec(c: &mut Criterion) {
    let text = generated_spec(5_000);
    let spec = ImageSpec::parse(&text, None).unwrap();
    assert_eq!(spec.packages.len(), 5_000);
    assert_eq!(spec.package_configs.len(), 5_000);
    assert!(spec.validate().is_empty(), "{:?}", &spec.validate()[..1]);
    c.bench_function("spec parse+validate 5000 packages + 5000 tables", |b| {
        b.iter(|| ImageSpec::parse(black_box(&text), None).unwrap())
    });
    c.bench_function("spec validate 5000 packages + 5000 tables", |b| {
        b.iter(|| black_box(&spec).validate())
    });
    c.bench_function("toml DeTable::parse alone (reference)", |b| {
        b.iter(|| toml::de::DeTable::parse(black_box(&text)).unwrap())
    });
    c.bench_function("spec to_toml_string 5000 packages + 5000 tables", |b| {
        b.iter(|| black_box(&spec).to_toml_string())
    });
    let mut group = c.benchmark_group("spec errors");
    group.sample_size(10);
    for n in [20_000, 100_000] {
        let text = erroneous_spec(n);
        let err = ImageSpec::parse(&text, None).unwrap_err();
        assert_eq!(err.diagnostics().len(), n);
        group.bench_function(format!("parse+render {n} erroneous tables (text)"), |b| {
            b.iter(|| {
                ImageSpec::parse(black_box(&text), None)
                    .unwrap_err()
                    .render()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_spec);
criterion_main!(benches);
