#!/usr/bin/env python3
"""Deterministic rootfs generator for the image writer benchmark.

Writes FILES files totalling about TOTAL bytes under DIR, a mix of
  - text (compressible: words from a fixed vocabulary),
  - "binaries" (semi-structured: random opcodes mixed with repeated tables, compresses about 2:1),
  - already-compressed data (random bytes, incompressible),
in a tree of nested directories. The same arguments always give the same bytes.

usage: make_rootfs.py DIR [FILES] [TOTAL_BYTES]
"""
import os
import random
import sys

root = sys.argv[1]
files = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000
total = int(sys.argv[3]) if len(sys.argv) > 3 else 300 * 1024 * 1024

rng = random.Random(20240601)
words = [
    "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10))) for _ in range(5000)
]
# 4 MiB pools to slice from, so generation is fast.
text_pool = " ".join(rng.choice(words) + ("\n" if rng.random() < 0.08 else "") for _ in range(800_000)).encode()
text_pool = (text_pool * (1 + (4 << 20) // len(text_pool)))[: 4 << 20]
table = rng.randbytes(4096)
chunks = []
size = 0
while size < (4 << 20):
    if rng.random() < 0.5:
        c = rng.randbytes(rng.randint(16, 256))
    else:
        c = table[rng.randint(0, 3000):][: rng.randint(64, 1024)]
    chunks.append(c)
    size += len(c)
bin_pool = b"".join(chunks)[: 4 << 20]
random_pool = rng.randbytes(4 << 20)

# File sizes: log-uniform-ish, scaled to the total.
raw = [int(2 ** rng.uniform(6, 19)) for _ in range(files)]
scale = total / sum(raw)
sizes = [max(1, int(s * scale)) for s in raw]

dirs = ["usr/bin", "usr/lib", "usr/share/doc", "etc", "var/lib", "opt/app"]
for d in range(200):
    dirs.append(f"usr/share/pkg{d:03d}/{'sub' if d % 3 else 'data'}")
for d in dirs:
    os.makedirs(os.path.join(root, d), exist_ok=True)

for i, s in enumerate(sizes):
    kind = i % 20
    if kind < 9:
        pool, ext = text_pool, "txt"
    elif kind < 15:
        pool, ext = bin_pool, "so"
    else:
        pool, ext = random_pool, "gz"
    start = rng.randint(0, len(pool) - 1)
    data = (pool[start:] + pool)[:s] if s < len(pool) else (pool * (s // len(pool) + 1))[:s]
    path = os.path.join(root, dirs[i % len(dirs)], f"f{i:05d}.{ext}")
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o755 if ext == "so" else 0o644)
print(f"wrote {files} files, {sum(sizes)} bytes under {root}")
