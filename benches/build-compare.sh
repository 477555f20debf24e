#!/usr/bin/env bash
# Cold and warm `staves build` of examples/hello with the fixture images, against the original Staves' command
# sequence replayed on the same images (benches/original-flow.sh), in one run. Also the orchestration overhead
# (wall time minus the time inside the emerge/emaint steps), from the build's own JSON report.
#
#   bash benches/build-compare.sh [RUNS]
#
# Each round runs, in this order: the original's flow cold, staves cold, the original's flow warm, staves warm,
# then staves no-op and staves config-only. "Cold" is a fresh binpkg cache volume and a fresh local image store;
# "warm" reuses the volume of the cold build and builds (`--rebuild`: the store would otherwise serve the unchanged
# spec); "noop" is the same spec again, served from the local image store; "config" changes only the image config
# (an annotation), so the stored layer gets a new config and manifest. Every row ends with an image loaded into the
# engine and tagged (the original: `docker build` FROM scratch; staves: `--output docker`).
# s/o is staves' wall time divided by the original flow's wall time in the same round and kind (for noop and
# config: the original's warm build, which is what the original does for an unchanged spec); s/w divides by staves'
# own warm build of the round.
#
# The fixture images are STAVES_STAGE3_IMAGE / STAVES_PORTAGE_IMAGE (default staves-test/{stage3,portage}:latest),
# for both tools. The original's flow emerges the same atoms as examples/hello/staves.toml.
set -euo pipefail
runs=${1:-3}
builder_image=${STAVES_STAGE3_IMAGE:-staves-test/stage3:latest}
portage_image=${STAVES_PORTAGE_IMAGE:-staves-test/portage:latest}
# The packages of examples/hello/staves.toml (the original's flow adds virtual/libc itself, as Staves does).
atoms=(app-misc/hello-c app-misc/hello)

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_images=(staves-bench/original:latest staves-test/hello:bench)

summarize() {
  python3 - "$@" <<'PY'
import json, sys
wall, baseline = float(sys.argv[2]), float(sys.argv[3])
r = json.load(open(sys.argv[1]))["report"]
emerge = sum(s["duration"] for s in r["steps"] if s["kind"] in ("build-deps", "direct-merge", "rootfs", "sync"))
steps = {s["kind"]: s["duration"] for s in r["steps"]}
# The locale is generated in the background, overlapping the rootfs step: it is not on the critical path.
foreground = sum(d for k, d in steps.items() if k != "locale-generate")
setup = r["total_duration"] - foreground - r["export_duration"]
print(f"{wall:7.2f} {emerge:7.2f} {wall - emerge:9.2f} {setup:6.2f} {r['export_duration']:6.2f}"
      f" {steps.get('locale-generate', 0):6.2f}"
      f" {len(r['built_from_source']):4d} {len(r['installed_from_binary']):4d}  {wall / baseline:5.2f}")
PY
}

printf '%-5s %-6s | %-68s | %-57s | %5s\n' "" "" "original flow" "staves build" "ratio"
printf '%-5s %-6s | %7s %7s %6s %6s %5s %5s %6s %8s | %7s %7s %9s %6s %6s %6s %4s %4s | %5s\n' run kind \
  wall emerge setup locale steps arch image overhead wall emerge overhead setup export locale src bin "s/o"
# The config-only change: the hello spec with one more annotation.
config_spec="$out/config-only.toml"
sed "/^\[annotations\]/a 'org.opencontainers.image.version' = 'config-only'" examples/hello/staves.toml >"$config_spec"
python3 - "$config_spec" <<'PY'
import sys, tomllib
spec = tomllib.load(open(sys.argv[1], "rb"))
assert spec["annotations"]["org.opencontainers.image.version"] == "config-only", spec
PY
for i in $(seq 1 "$runs"); do
  original_cache="staves-bench-original-$$-$i"
  staves_cache="staves-bench-cache-$$-$i"
  store="$out/store-$i"
  volumes+=("$original_cache" "$staves_cache")
  for kind in cold warm; do
    read -r o_wall o_emerge o_setup o_locale o_steps o_archive o_image < <(
      bash benches/original-flow.sh "$original_cache" staves-bench/original:latest "${atoms[@]}"
    )
    # The original's overhead as the issue counts it: container setup, archive and image build (its locale-gen
    # generated nothing, and its other steps are not in the issue's breakdown).
    o_overhead=$(python3 -c "print(f'{$o_setup + $o_archive + $o_image:.2f}')")
    rebuild=()
    [[ $kind == warm ]] && rebuild=(--rebuild)
    start=$(now)
    "$staves" build -q --config examples/hello/staves.toml --builder "$builder_image" \
      --portage "$portage_image" --build-cache "$staves_cache" --cache-dir "$store" --version bench \
      --output docker --format json "${rebuild[@]}" >"$out/report.json"
    end=$(now)
    printf '%-5s %-6s | %7.2f %7.2f %6.2f %6.2f %5.2f %5.2f %6.2f %8.2f | ' "$i" "$kind" "$o_wall" "$o_emerge" \
      "$o_setup" "$o_locale" "$o_steps" "$o_archive" "$o_image" "$o_overhead"
    summarize "$out/report.json" "$(python3 -c "print($end - $start)")" "$o_wall"
    if [[ $kind == warm ]]; then
      o_warm=$o_wall
      s_warm=$(python3 -c "print($end - $start)")
    fi
    # Untag now, so that the next round's images do not leave these behind as dangling images.
    docker rmi -f staves-bench/original:latest staves-test/hello:bench >/dev/null 2>&1 || true
  done
  # No-op and config-only: no container; the ratios are against the original's and staves' warm builds.
  for kind in noop config; do
    spec=examples/hello/staves.toml
    [[ $kind == config ]] && spec=$config_spec
    start=$(now)
    "$staves" build -q --config "$spec" --builder "$builder_image" --portage "$portage_image" \
      --build-cache "$staves_cache" --cache-dir "$store" --version bench --output docker --format json \
      >"$out/report.json"
    end=$(now)
    python3 - "$out/report.json" "$(python3 -c "print($end - $start)")" "$o_warm" "$s_warm" "$i" "$kind" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
wall, o_warm, s_warm = map(float, sys.argv[2:5])
assert "reused" in report, f"{sys.argv[6]}: the build was not served from the local image store"
print(f"{sys.argv[5]:<5} {sys.argv[6]:<6} | {'(no equivalent: the original rebuilds)':<68} | {wall:7.2f}"
      f" {'':>47} | {wall / o_warm:5.2f}  s/w {wall / s_warm:5.3f}")
PY
    docker rmi -f staves-test/hello:bench >/dev/null 2>&1 || true
  done
  docker volume rm -f "$original_cache" "$staves_cache" >/dev/null
done
echo
echo "original flow: benches/original-flow.sh, the original Staves' commands replayed with the docker CLI; its"
echo "setup: containers + make.conf + removal; locale: portageq + locale-gen + copy; steps: libgcc + package db;"
echo "arch: docker cp of the rootfs; image: docker build; overhead: setup + arch + image, as the issue counts it;"
echo "wall: whole command; emerge: time inside the emerge/emaint steps and the direct merge; overhead: wall - emerge;"
echo "setup: image checks, container creation and removal, the Portage file upload; export: rootfs stream, image"
echo "writer and docker load; locale: locale-gen, in the background during the rootfs step;"
echo "src/bin: packages emerge built from source / installed from binary packages; s/o: staves wall / original wall"
echo "(noop and config: against the original's warm build of the round); s/w: staves wall / staves warm wall"
