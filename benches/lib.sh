# Shared setup of the build benchmarks (build-compare.sh, peer-compare.sh): source it after `set -euo pipefail`.
#
# Sets root (the checkout, also the working directory), staves (the release binary, built here), out (a temporary
# directory) and volumes (an array: push the name of every volume the bench creates). On exit, removes $out, the
# images named in bench_images and every volume in volumes, whatever happened. Defines now (seconds since the
# epoch, with nanoseconds) and seconds_between START END.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash tests/fixtures/build-images.sh >/dev/null
cargo build -q --release -p staves-cli
staves="${CARGO_TARGET_DIR:-$root/target}/release/staves"
out=$(mktemp -d)
volumes=()
bench_images=()
bench_cleanup() {
  rm -rf "$out"
  for image in "${bench_images[@]+"${bench_images[@]}"}"; do docker rmi -f "$image" >/dev/null 2>&1 || true; done
  for v in "${volumes[@]+"${volumes[@]}"}"; do docker volume rm -f "$v" >/dev/null 2>&1 || true; done
}
trap bench_cleanup EXIT
now() { date +%s.%N; }
seconds_between() { python3 -c "print(f'{$2 - $1:.2f}')"; }
