#!/usr/bin/env bash
# The baseline for benches/build-compare.sh: the command sequence of the original Staves 0.9.1, replayed with the
# docker CLI against the same fixture images, so that `staves build` can be compared with it in one run on one
# machine. The original itself is not installable here (it is not on PyPI); this is a replay of what it ran, as the
# issues and ../shared/DESIGN.md describe it, not the original program:
#
#   1. create the portage snapshot container and start the builder (volumes-from the snapshot, the binpkg cache
#      volume, `sleep infinity`);
#   2. write make.conf (the container FEATURES and elog settings the original set);
#   3. emerge --verbose --onlydeps --usepkg --with-bdeps=y --emptytree ATOMS           (no --jobs: as the original)
#   4. emerge --verbose --root=/tmp/rootfs --root-deps=rdeps --oneshot --usepkg ATOMS virtual/libc
#   5. portageq envvar ELIBC; append the locale to /etc/locale.gen; locale-gen; copy the locale archive;
#   6. copy libgcc_s.so.1 into the rootfs;
#   7. download /tmp/rootfs as a tar (staves_root.tar) and `docker build` FROM scratch + ADD it, tagged;
#   8. remove the containers (the replay cleans up what the original leaked, after the clock stops).
#
# The locale line is written with its newline: the original forgot it, so its locale-gen generated nothing, and a
# replay of that bug would make the baseline skip work that Staves does.
#
# usage: benches/original-flow.sh CACHE_VOLUME TAG [ATOM...]      (default atom: app-misc/hello)
# Prints one line of seconds: "wall emerge setup locale steps archive image" (emerge: the two emerge calls; setup:
# creating, starting and removing the containers and writing make.conf; locale: step 5; steps: 6 and the package
# database removal; archive: the rootfs download; image: docker build).
set -euo pipefail
cache=$1
tag=$2
shift 2
atoms=("$@")
((${#atoms[@]})) || atoms=(app-misc/hello)
builder_image=${STAVES_STAGE3_IMAGE:-staves-test/stage3:latest}
portage_image=${STAVES_PORTAGE_IMAGE:-staves-test/portage:latest}
name=staves-original-$$
work=$(mktemp -d)
cleanup() {
  docker rm -f "$name-builder" >/dev/null 2>&1 || true
  docker rm -f -v "$name-portage" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$2"; }
x() { docker exec -e NOCOLOR=true "$name-builder" "$@" >>"$work/log" 2>&1 || {
  tail -n 30 "$work/log" >&2
  echo "original-flow.sh: step failed: $*" >&2
  exit 1
}; }

start=$(now)
docker create --name "$name-portage" "$portage_image" >/dev/null
docker run -d --name "$name-builder" --volumes-from "$name-portage:ro" \
  --mount "type=volume,source=$cache,target=/var/cache/binpkgs" \
  --entrypoint sleep "$builder_image" infinity >/dev/null
x sh -c 'cat >> /etc/portage/make.conf <<"EOF"
FEATURES="${FEATURES} -userpriv -usersandbox -ipc-sandbox -network-sandbox -pid-sandbox -sandbox buildpkg binpkg-multi-instance -binpkg-logs -news nodoc noinfo noman"
PORTAGE_ELOG_SYSTEM="echo:warn,error"
EOF'
emerge_start=$(now)
snapshot_volume=$(docker inspect --format '{{range .Mounts}}{{.Name}}{{end}}' "$name-portage")
x emerge --verbose --onlydeps --usepkg --with-bdeps=y --emptytree "${atoms[@]}"
x emerge --verbose --root=/tmp/rootfs --root-deps=rdeps --oneshot --usepkg "${atoms[@]}" virtual/libc
emerge_end=$(now)
x sh -c '[ "$(portageq envvar ELIBC)" = glibc ] && printf "C UTF-8\n" >> /etc/locale.gen && locale-gen &&
  mkdir -p /tmp/rootfs/usr/lib/locale && cp /usr/lib/locale/locale-archive /tmp/rootfs/usr/lib/locale/'
locale_end=$(now)
x sh -c 'mkdir -p /tmp/rootfs/usr/lib64 && cp -L "$(find /usr/lib/gcc -name libgcc_s.so.1 | head -n 1)" /tmp/rootfs/usr/lib64/'
x rm -rf /tmp/rootfs/var/db/pkg /tmp/rootfs/var/cache
archive_start=$(now)
docker cp "$name-builder:/tmp/rootfs/." - >"$work/staves_root.tar"
archive_end=$(now)
printf 'FROM scratch\nADD staves_root.tar /\nCMD ["/usr/bin/hello"]\n' >"$work/Dockerfile"
DOCKER_BUILDKIT=0 docker build -q -t "$tag" "$work" >>"$work/log" 2>&1 || { tail -n 30 "$work/log" >&2; exit 1; }
image_end=$(now)
# The original removed both containers (it left the snapshot's anonymous volume behind: removed below, untimed).
docker rm -f "$name-builder" >/dev/null
docker rm "$name-portage" >/dev/null
end=$(now)
docker volume rm "$snapshot_volume" >/dev/null
python3 - "$start" "$emerge_start" "$emerge_end" "$locale_end" "$archive_start" "$archive_end" "$image_end" "$end" <<'PY'
import sys
start, e0, e1, loc, a0, a1, img, end = map(float, sys.argv[1:])
# wall, emerge, setup (containers + make.conf + removal), locale, other steps, archive, image build
print(f"{end - start:.2f} {e1 - e0:.2f} {(e0 - start) + (end - img):.2f} {loc - e1:.2f} {a0 - loc:.2f}"
      f" {a1 - a0:.2f} {img - a1:.2f}")
PY
