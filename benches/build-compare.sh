#!/usr/bin/env bash
# Cold and warm `staves build` of examples/hello with the fixture images, against the original Staves' command
# sequence replayed on the same images (benches/original-flow.sh), in one run. Also the orchestration overhead
# (wall time minus the time inside the emerge/emaint steps), from the build's own JSON report.
#
#   bash benches/build-compare.sh [RUNS]
#
# Each round runs, in this order: the original's flow cold, staves cold, the original's flow warm, staves warm.
# "Cold" is a fresh binpkg cache volume; "warm" reuses the volume of the cold build. Both tools end with an image
# loaded into the engine and tagged (the original: `docker build` FROM scratch; staves: `--output docker`).
# The last column is staves' wall time divided by the original flow's wall time in the same round and kind.
#
# The fixture images are STAVES_STAGE3_IMAGE / STAVES_PORTAGE_IMAGE (default staves-test/{stage3,portage}:latest),
# for both tools. The original's flow emerges the same atoms as examples/hello/staves.toml.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
runs=${1:-3}
builder_image=${STAVES_STAGE3_IMAGE:-staves-test/stage3:latest}
portage_image=${STAVES_PORTAGE_IMAGE:-staves-test/portage:latest}
# The packages of examples/hello/staves.toml (the original's flow adds virtual/libc itself, as Staves does).
atoms=(app-misc/hello-c app-misc/hello)

bash tests/fixtures/build-images.sh >/dev/null
cargo build -q --release -p staves-cli
staves="$root/target/release/staves"
out=$(mktemp -d)
volumes=()
cleanup() {
  rm -rf "$out"
  docker rmi -f staves-bench/original:latest staves-test/hello:bench >/dev/null 2>&1 || true
  for v in "${volumes[@]+"${volumes[@]}"}"; do docker volume rm -f "$v" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT

now() { date +%s.%N; }

summarize() {
  python3 - "$@" <<'PY'
import json, sys
wall, baseline = float(sys.argv[2]), float(sys.argv[3])
r = json.load(open(sys.argv[1]))["report"]
emerge = sum(s["duration"] for s in r["steps"] if s["kind"] in ("build-deps", "rootfs", "sync"))
steps = {s["kind"]: s["duration"] for s in r["steps"]}
# The locale is generated in the background, overlapping the rootfs step: it is not on the critical path.
foreground = sum(d for k, d in steps.items() if k != "locale-generate")
setup = r["total_duration"] - foreground - r["export_duration"]
print(f"{wall:7.2f} {emerge:7.2f} {wall - emerge:9.2f} {setup:6.2f} {r['export_duration']:6.2f}"
      f" {steps.get('locale-generate', 0):6.2f}"
      f" {len(r['built_from_source']):4d} {len(r['installed_from_binary']):4d}  {wall / baseline:5.2f}")
PY
}

printf '%-5s %-4s | %-68s | %-57s | %5s\n' "" "" "original flow" "staves build" "ratio"
printf '%-5s %-4s | %7s %7s %6s %6s %5s %5s %6s %8s | %7s %7s %9s %6s %6s %6s %4s %4s | %5s\n' run kind \
  wall emerge setup locale steps arch image overhead wall emerge overhead setup export locale src bin "s/o"
for i in $(seq 1 "$runs"); do
  original_cache="staves-bench-original-$$-$i"
  staves_cache="staves-bench-cache-$$-$i"
  volumes+=("$original_cache" "$staves_cache")
  for kind in cold warm; do
    read -r o_wall o_emerge o_setup o_locale o_steps o_archive o_image < <(
      bash benches/original-flow.sh "$original_cache" staves-bench/original:latest "${atoms[@]}"
    )
    # The original's overhead as the issue counts it: container setup, archive and image build (its locale-gen
    # generated nothing, and its other steps are not in the issue's breakdown).
    o_overhead=$(python3 -c "print(f'{$o_setup + $o_archive + $o_image:.2f}')")
    start=$(now)
    "$staves" build -q --config examples/hello/staves.toml --builder "$builder_image" \
      --portage "$portage_image" --build-cache "$staves_cache" --version bench --output docker \
      --format json >"$out/report.json"
    end=$(now)
    printf '%-5s %-4s | %7.2f %7.2f %6.2f %6.2f %5.2f %5.2f %6.2f %8.2f | ' "$i" "$kind" "$o_wall" "$o_emerge" \
      "$o_setup" "$o_locale" "$o_steps" "$o_archive" "$o_image" "$o_overhead"
    summarize "$out/report.json" "$(python3 -c "print($end - $start)")" "$o_wall"
    # Untag now, so that the next round's images do not leave these behind as dangling images.
    docker rmi -f staves-bench/original:latest staves-test/hello:bench >/dev/null 2>&1 || true
  done
  docker volume rm -f "$original_cache" "$staves_cache" >/dev/null
done
echo
echo "original flow: benches/original-flow.sh, the original Staves' commands replayed with the docker CLI; its"
echo "setup: containers + make.conf + removal; locale: portageq + locale-gen + copy; steps: libgcc + package db;"
echo "arch: docker cp of the rootfs; image: docker build; overhead: setup + arch + image, as the issue counts it;"
echo "wall: whole command; emerge: time inside the emerge/emaint steps; overhead: wall - emerge;"
echo "setup: image checks, container creation and removal, the Portage file upload; export: rootfs stream, image"
echo "writer and docker load; locale: locale-gen, in the background during the rootfs step;"
echo "src/bin: packages emerge built from source / installed from binary packages; s/o: staves wall / original wall"
