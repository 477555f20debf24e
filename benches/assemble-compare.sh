#!/usr/bin/env bash
# Image writer benchmark (issue 4): `staves assemble` against tar|gzip, tar|pigz and `docker import`.
#
# Builds a deterministic 300 MiB, 20,000-file rootfs of mixed content (text, semi-structured binaries, already
# compressed data) in a temp dir, then measures in one run the wall time, output size and peak RSS
# (/usr/bin/time -v) of each tool. Prints a Markdown table.
#
# usage: benches/assemble-compare.sh [FILES] [TOTAL_BYTES]
#   env: STAVES=path/to/staves (default: target/release/staves, built if missing)
#        BENCH_DIR=dir (default: a new temp dir, removed at the end)
#        SKIP_DOCKER=1 to leave out `docker import`
#        REPEAT=n runs per tool (default 3; the fastest wall time is reported)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
files=${1:-20000}
total=${2:-$((300 * 1024 * 1024))}
staves=${STAVES:-$repo/target/release/staves}
if [[ ! -x $staves ]]; then
    (cd "$repo" && cargo build --release -p staves-cli)
fi
command -v pigz >/dev/null || { echo "pigz is missing (apt-get install pigz)" >&2; exit 1; }
[[ -x /usr/bin/time ]] || { echo "/usr/bin/time is missing (apt-get install time)" >&2; exit 1; }

work=${BENCH_DIR:-$(mktemp -d)}
cleanup() { [[ -n ${BENCH_DIR:-} ]] || rm -rf "$work"; docker rmi -f staves-bench/import:latest >/dev/null 2>&1 || true; }
trap cleanup EXIT
root=$work/rootfs
if [[ ! -d $root ]]; then
    python3 "$here/scripts/make_rootfs.py" "$root" "$files" "$total" >&2
fi
cat >"$work/staves.toml" <<'TOML'
name = "staves-bench/assemble"
version = "latest"
command = ["/bin/sh"]
TOML
# The same content as a tar (for docker import), and a warm page cache for everyone.
tar --sort=name -C "$root" -cf "$work/rootfs.tar" .
tar --sort=name -C "$root" -cf - . | cat >/dev/null

results=()
load0=$(cut -d" " -f1-3 /proc/loadavg)
repeat=${REPEAT:-3}
# measure NAME OUTPUT COMMAND...: run REPEAT times under /usr/bin/time -v; keep the fastest wall time (the machine
# is shared, so the minimum is the least disturbed run) and the largest peak RSS.
measure() {
    local name=$1 out=$2
    shift 2
    local best="" maxrss=0 wall rss size
    for _ in $(seq "$repeat"); do
        rm -rf "$out"
        if [[ -n ${BEFORE:-} ]]; then eval "$BEFORE"; fi
        /usr/bin/time -v -o "$work/time.txt" "$@" >/dev/null
        wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$work/time.txt" |
            awk -F: '{ if (NF == 3) print $1*3600 + $2*60 + $3; else print $1*60 + $2 }')
        rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
        if [[ -z $best ]] || awk -v a="$wall" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$wall; fi
        if ((rss > maxrss)); then maxrss=$rss; fi
    done
    if [[ -d $out ]]; then size=$(du -sb "$out" | cut -f1); elif [[ -f $out ]]; then size=$(stat -c %s "$out"); else size=0; fi
    results+=("${name//;/,};$best;$size;$maxrss")
    echo "$name: ${best}s (best of $repeat), $size bytes, ${maxrss} KiB peak RSS" >&2
}

measure "staves assemble (gzip, dir → oci-archive)" "$work/gzip.tar" \
    "$staves" assemble --rootfs "$root" --config "$work/staves.toml" --output "oci-archive:$work/gzip.tar"
measure "staves assemble (gzip, tar file → oci-archive)" "$work/gzip2.tar" \
    "$staves" assemble --rootfs "$work/rootfs.tar" --config "$work/staves.toml" --output "oci-archive:$work/gzip2.tar"
measure "staves assemble (zstd, dir → oci-archive)" "$work/zstd.tar" \
    "$staves" assemble --rootfs "$root" --config "$work/staves.toml" --compression zstd --output "oci-archive:$work/zstd.tar"
measure "tar -c | gzip -6" "$work/tar.gz" \
    sh -c "tar --sort=name -C '$root' -cf - . | gzip -6 >'$work/tar.gz'"
measure "tar -c | pigz" "$work/tar.pigz.gz" \
    sh -c "tar --sort=name -C '$root' -cf - . | pigz >'$work/tar.pigz.gz'"
if [[ ${SKIP_DOCKER:-} != 1 ]]; then
    BEFORE="docker rmi -f staves-bench/import:latest >/dev/null 2>&1 || true" \
        measure "docker import (of the tar file; stored uncompressed, client RSS only)" "$work/none" \
        docker import "$work/rootfs.tar" staves-bench/import:latest
    imported=$(docker image inspect --format '{{.Size}}' staves-bench/import:latest)
    results[-1]=$(echo "${results[-1]}" | awk -F';' -v s="$imported" 'BEGIN{OFS=";"} {$3=s; print}')
fi

gzip_wall=$(echo "${results[3]}" | cut -d';' -f2)
gzip_size=$(echo "${results[3]}" | cut -d';' -f3)
staves_gzip_wall=$(echo "${results[0]}" | cut -d';' -f2)
echo
echo "load average before the runs: $load0"
echo "rootfs: $(find "$root/" -type f | wc -l) files, $(du -sbL "$root" | cut -f1) bytes (apparent), tar $(stat -c %s "$work/rootfs.tar") bytes; $(nproc) cores"
echo
echo "| tool | wall (s) | × tar\|gzip -6 time | output (bytes) | × tar\|gzip -6 size | peak RSS (MiB) |"
echo "|---|---:|---:|---:|---:|---:|"
for r in "${results[@]}"; do
    IFS=';' read -r name wall size rss <<<"$r"
    N=$name awk -v w="$wall" -v s="$size" -v r="$rss" -v gw="$gzip_wall" -v gs="$gzip_size" \
        'BEGIN { n = ENVIRON["N"]; gsub(/\|/, "\\|", n); printf "| %s | %.2f | %.2f | %d | %.3f | %.1f |\n", n, w, w/gw, s, s/gs, r/1024 }'
done
zstd_wall=$(echo "${results[2]}" | cut -d';' -f2)
awk -v g="$staves_gzip_wall" -v z="$zstd_wall" 'BEGIN { printf "\nstaves zstd is %.2f× faster than staves gzip\n", g/z }'
