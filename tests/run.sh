#!/usr/bin/env bash
# The test command: everything CI runs after the lint checks, from a fresh clone on a machine with Docker.
#
#   bash tests/run.sh
#
# 1. installs the host packages (tests/install-deps.sh);
# 2. builds the fixture images staves-test/stage3 and staves-test/portage (reused when unchanged);
# 3. puts real Portage (portage==3.0.83) in a virtualenv for the read-back tests, check-jsonschema in another
#    for the schema test, and the SBOM validators (spdx-tools, cyclonedx-python-lib) in a third;
# 4. runs the Rust tests with the engine and Portage required (they fail instead of skipping);
# 5. builds the Python module into a fresh virtualenv and runs pytest, then mypy --strict and stubtest.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

# Each step's header carries the time of day (UTC), so that a CI log shows where the time went.
step() { printf '\n==> %s [%s]\n' "$*" "$(date -u +%H:%M:%S)"; }

step "host packages"
bash tests/install-deps.sh

step "docker engine"
docker info --format 'engine {{.ServerVersion}} ({{.OperatingSystem}})'

step "fixture images"
bash tests/fixtures/build-images.sh

step "Portage for the read-back tests"
portage_venv="$root/target/portage-venv"
if ! "$portage_venv/bin/python" -c 'import portage, sys; sys.exit(portage.VERSION != "3.0.83")' 2>/dev/null; then
  rm -rf "$portage_venv"
  python3 -m venv "$portage_venv"
  "$portage_venv/bin/pip" install -q --disable-pip-version-check portage==3.0.83
fi
export STAVES_PORTAGE_PYTHON="$portage_venv/bin/python"

step "check-jsonschema for the staves.toml schema test"
schema_venv="$root/target/schema-venv"
if ! "$schema_venv/bin/check-jsonschema" --version 2>/dev/null | grep -qx 'check-jsonschema, version 0.39.0'; then
  rm -rf "$schema_venv"
  python3 -m venv "$schema_venv"
  "$schema_venv/bin/pip" install -q --disable-pip-version-check check-jsonschema==0.39.0
fi
export STAVES_CHECK_JSONSCHEMA="$schema_venv/bin/check-jsonschema"

step "SBOM validators (spdx-tools, cyclonedx-python-lib) for the SBOM tests"
sbom_venv="$root/target/sbom-venv"
if ! "$sbom_venv/bin/python" -c '
import sys
from importlib.metadata import version
sys.exit(version("spdx-tools") != "0.8.5" or version("cyclonedx-python-lib") != "11.12.0")
' 2>/dev/null; then
  rm -rf "$sbom_venv"
  python3 -m venv "$sbom_venv"
  "$sbom_venv/bin/pip" install -q --disable-pip-version-check spdx-tools==0.8.5 \
    'cyclonedx-python-lib[json-validation]==11.12.0'
fi
export STAVES_SBOM_VALIDATORS="$sbom_venv"

# Builds keep their images in the local image store ($XDG_CACHE_HOME/staves): the tests get a fresh one of their
# own, so they neither read nor fill the user's.
export XDG_CACHE_HOME="$root/target/test-xdg-cache"
rm -rf "$XDG_CACHE_HOME"
mkdir -p "$XDG_CACHE_HOME"

export STAVES_REQUIRE_DOCKER=1
export STAVES_REQUIRE_PORTAGE=1

# Test builds keep line tables (backtraces with file:line) but no full debug info: that halves what is compiled and
# linked for the ~40 test binaries. The Python module is built with the same profile, so it reuses the compiled
# dependencies. A clean checkout (CI) gains nothing from incremental compilation, which only adds work.
export CARGO_PROFILE_DEV_DEBUG=line-tables-only
if [ -n "${CI:-}" ]; then
  export CARGO_INCREMENTAL=0
fi

# Each test binary's start is stamped with the time of day, so that the log shows which ones take the time.
stamp() {
  while IFS= read -r line; do
    case "$line" in
      *" Running "* | *" Doc-tests "*) printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$line" ;;
      *) printf '%s\n' "$line" ;;
    esac
  done
}

step "Rust tests"
cargo test --workspace --exclude staves-py --all-targets 2>&1 | stamp
cargo test --workspace --exclude staves-py --doc 2>&1 | stamp

if [ -f staves-py/pyproject.toml ]; then
  step "Python module"
  py_venv="$root/target/py-venv"
  rm -rf "$py_venv"
  python3 -m venv "$py_venv"
  "$py_venv/bin/pip" install -q --disable-pip-version-check pytest mypy==2.4.1 'maturin>=1.9,<2'
  # The module in the tests' own profile, in the workspace's target directory: only pyo3 and the bindings are
  # compiled here, everything else was compiled for the Rust tests. (`pip install ./staves-py` builds a release
  # module from scratch: that is what users get, and what the README's install line does.)
  rm -rf target/py-wheels
  "$py_venv/bin/maturin" build --quiet --profile dev --manifest-path staves-py/Cargo.toml \
    --interpreter "$py_venv/bin/python" --out target/py-wheels
  "$py_venv/bin/pip" install -q --disable-pip-version-check target/py-wheels/staves-*.whl
  step "pytest"
  (cd staves-py && "$py_venv/bin/python" -m pytest -q tests)
  step "Python typing: mypy --strict on the examples, stubtest on the module"
  "$py_venv/bin/python" -m mypy --strict examples/python/*.py staves-py/tests/test_typing.py
  "$py_venv/bin/python" -m mypy.stubtest staves --allowlist staves-py/stubtest-allowlist.txt
fi

step "all tests passed"
