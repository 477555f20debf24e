#!/usr/bin/env bash
# Cold and warm builds of examples/hello: the original Staves itself (0.9.1, run unmodified through
# ../shared/peer/run-original.sh, see ../shared/peer/README.md for its one-time setup) against `staves build`,
# interleaved, in one run.
#
#   bash benches/peer-compare.sh [ROUNDS]
#
# Each round, on fresh cache volumes and a fresh local image store: original cold, staves cold, original warm,
# staves warm (`--rebuild`: the store would otherwise serve the unchanged spec), and staves warm with
# `--portage-merge` (every package through emerge's own merge, to show what the direct merge saves). Both tools
# build the hello spec without its [annotations] and [image] tables (the original crashes on tables that are not
# packages), with the fixture images; every row ends with the image tagged in the engine. Prints wall seconds and
# staves / original.
set -euo pipefail
rounds=${1:-2}
# The original's setup is checked first, before lib.sh builds anything.
runner=${PEER_RUNNER:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/../shared/peer/run-original.sh}
[[ -f $runner ]] || { echo "peer-compare: no $runner (see ../shared/peer/README.md)" >&2; exit 2; }
docker image inspect peer/stage3:latest >/dev/null 2>&1 || {
  echo "peer-compare: peer/stage3:latest is missing: docker build -t peer/stage3:latest -f ../shared/peer/Dockerfile.stage3 ../shared/peer" >&2
  exit 2
}
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_images=(staves-test/hello:peer staves-test/hello:bench)
spec="$out/staves.toml"
python3 - "$root/examples/hello/staves.toml" "$spec" <<'PY'
import sys, tomllib
src = tomllib.load(open(sys.argv[1], "rb"))
with open(sys.argv[2], "w") as f:
    f.write(f"name = '{src['name']}'\n")
    f.write("packages = [" + ", ".join(f"'{p}'" for p in src["packages"]) + "]\n")
    f.write("command = [" + ", ".join(f"'{c}'" for c in src["command"]) + "]\n")
PY

original() {
  local line
  line=$(bash "$runner" "$spec" "$1" --version peer 2>&1 | grep -o 'wall: [0-9.]*' | tail -n 1)
  [[ -n $line ]] || { echo "peer-compare: the original printed no wall time" >&2; exit 1; }
  awk '{print $2}' <<<"$line"
}
ours() {
  local start end
  start=$(now)
  "$staves" build -q --config "$spec" --builder staves-test/stage3:latest --portage staves-test/portage:latest \
    --build-cache "$1" --cache-dir "$2" --version bench --output docker --format json "${@:3}" >"$out/report.json"
  end=$(now)
  seconds_between "$start" "$end"
}

printf '%-5s %-6s %9s %9s %9s %7s %7s\n' round kind original staves portage s/o p/o
for i in $(seq 1 "$rounds"); do
  ovol="staves-peer-cache-$$-$i"
  svol="staves-bench-cache-$$-$i"
  store="$out/store-$i"
  volumes+=("$ovol" "$svol")
  o_cold=$(original "$ovol")
  s_cold=$(ours "$svol" "$store")
  o_warm=$(original "$ovol")
  s_warm=$(ours "$svol" "$store" --rebuild)
  direct=$(python3 -c "import json; print(len(json.load(open('$out/report.json'))['report']['merged_directly']))")
  p_warm=$(ours "$svol" "$store" --rebuild --portage-merge)
  python3 - "$i" "$o_cold" "$s_cold" "$o_warm" "$s_warm" "$p_warm" "$direct" <<'PY'
import sys
i, oc, sc, ow, sw, pw, direct = sys.argv[1], *map(float, sys.argv[2:7]), sys.argv[7]
print(f"{i:<5} {'cold':<6} {oc:9.2f} {sc:9.2f} {'':>9} {sc / oc:7.2f}")
print(f"{i:<5} {'warm':<6} {ow:9.2f} {sw:9.2f} {pw:9.2f} {sw / ow:7.2f} {pw / ow:7.2f}   ({direct} packages merged directly)")
PY
  docker volume rm -f "$ovol" "$svol" >/dev/null
done
echo
echo "original: the original Staves, unmodified (../shared/peer/run-original.sh); staves: staves build (warm:"
echo "--rebuild, with the direct merge); portage: staves build --rebuild --portage-merge; s/o and p/o: divided by"
echo "the original's wall time of the same round and kind"
