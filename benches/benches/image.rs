//! Criterion bench of the image writer: a generated ~24 MiB rootfs tar becomes an OCI archive (gzip and zstd).
//!
//! The comparison against tar|gzip, pigz and `docker import` on a 300 MiB rootfs is `benches/assemble-compare.sh`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use staves_core::{Compression, ImageSpec, ImageWriter, Output};

/// A deterministic rootfs tar: 400 files, a mix of text, semi-random and random data.
fn rootfs_tar() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let text: Vec<u8> = b"the quick brown fox jumps over the lazy dog\n".repeat(2000);
    for i in 0..400u32 {
        let data: Vec<u8> = match i % 3 {
            0 => text[..(next() % 80_000) as usize].to_vec(),
            1 => (0..(next() % 80_000))
                .map(|j| {
                    if j % 4 == 0 {
                        next() as u8
                    } else {
                        (j % 7) as u8
                    }
                })
                .collect(),
            _ => (0..(next() % 60_000)).map(|_| next() as u8).collect(),
        };
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(
                &mut header,
                format!("usr/share/d{:02}/f{i:04}", i % 20),
                &data[..],
            )
            .unwrap();
    }
    builder.into_inner().unwrap()
}

fn bench_image(c: &mut Criterion) {
    let tar = rootfs_tar();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("rootfs.tar");
    std::fs::write(&input, &tar).unwrap();
    let spec = ImageSpec::new("staves-bench/criterion");
    let mut group = c.benchmark_group("image_writer");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(tar.len() as u64));
    for compression in [Compression::Gzip, Compression::Zstd] {
        let writer = ImageWriter::new(&spec).compression(compression);
        let output = [Output::OciArchive(dir.path().join("out.tar"))];
        group.bench_function(format!("tar_file_to_oci_archive_{compression}"), |b| {
            b.iter(|| writer.write_tar_file(&input, &output).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench_image);
criterion_main!(benches);
