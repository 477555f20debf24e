#!/usr/bin/env bash
# Cold and warm `staves build` of examples/hello with the fixture images, and the orchestration overhead
# (total wall time minus the time inside the emerge/emaint steps), from the build's own JSON report.
#
#   bash benches/build-compare.sh [RUNS]
#
# Each run uses a fresh binpkg cache volume for the cold build and the same volume for the warm build.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
runs=${1:-3}

bash tests/fixtures/build-images.sh >/dev/null
cargo build -q --release -p staves-cli
staves="$root/target/release/staves"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

summarize() {
  python3 - "$@" <<'PY'
import json, sys
wall = float(sys.argv[2])
r = json.load(open(sys.argv[1]))["report"]
emerge = sum(s["duration"] for s in r["steps"] if s["kind"] in ("build-deps", "rootfs", "sync"))
steps = {s["kind"]: s["duration"] for s in r["steps"]}
# The locale is generated in the background, overlapping the rootfs step: it is not on the critical path.
foreground = sum(d for k, d in steps.items() if k != "locale-generate")
setup = r["total_duration"] - foreground - r["export_duration"]
print(f"{wall:7.2f} {r['total_duration']:7.2f} {emerge:7.2f} {wall - emerge:9.2f} {setup:6.2f} {r['export_duration']:6.2f}"
      f" {steps.get('locale-generate', 0):6.2f}"
      f" {len(r['built_from_source']):4d} {len(r['installed_from_binary']):4d}")
PY
}

printf '%-5s %-4s %7s %7s %7s %9s %6s %6s %6s %4s %4s\n' run kind wall total emerge overhead setup export locale src bin
for i in $(seq 1 "$runs"); do
  cache="staves-bench-cache-$$-$i"
  for kind in cold warm; do
    start=$(date +%s.%N)
    "$staves" build -q --config examples/hello/staves.toml --builder staves-test/stage3:latest \
      --portage staves-test/portage:latest --build-cache "$cache" --output "oci-archive:$out/hello.tar" \
      --format json > "$out/report.json"
    end=$(date +%s.%N)
    printf '%-5s %-4s ' "$i" "$kind"
    summarize "$out/report.json" "$(echo "$end - $start" | bc -l 2>/dev/null || python3 -c "print($end - $start)")"
  done
  docker volume rm -f "$cache" >/dev/null
done
echo
echo "wall: whole command; total: the build as the library timed it; emerge: time inside emerge/emaint steps;"
echo "overhead: wall - emerge; setup: image checks, container creation and removal, the Portage file upload;"
echo "export: rootfs stream + image writer; locale: locale-gen, in the background during the rootfs step;"
echo "src/bin: packages emerge built from source / installed from binary packages"
