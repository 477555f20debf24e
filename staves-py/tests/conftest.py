"""Shared helpers: the repository layout, the `staves` CLI to compare against, and the Docker engine gate."""

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
MALFORMED = REPO / "tests" / "data" / "spec" / "malformed"
HELLO = EXAMPLES / "hello" / "staves.toml"
FIXTURE_STAGE3 = os.environ.get("STAVES_TEST_BUILDER", "staves-test/stage3:latest")
FIXTURE_PORTAGE = os.environ.get("STAVES_TEST_PORTAGE", "staves-test/portage:latest")
BUILD_LABEL = "io.staves.build"


def staves_cli():
    """The command that runs the `staves` CLI: $STAVES_BIN, target/debug/staves, or `cargo run`."""
    explicit = os.environ.get("STAVES_BIN")
    if explicit:
        return [explicit]
    built = REPO / "target" / "debug" / "staves"
    if built.exists():
        return [str(built)]
    return ["cargo", "run", "-q", "--manifest-path", str(REPO / "Cargo.toml"), "-p", "staves-cli", "--"]


def run_cli(*args, check=True):
    """Run the CLI in the repository root; returns the completed process."""
    proc = subprocess.run(
        staves_cli() + [str(a) for a in args], cwd=REPO, capture_output=True, text=True
    )
    if check and proc.returncode not in (0, 1):
        raise AssertionError(f"staves {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def cli_json(*args):
    """Run the CLI with `--format json` and parse what it prints."""
    proc = run_cli(*args, "--format", "json")
    return json.loads(proc.stdout)


def docker_available():
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def images_present(*images):
    return all(
        subprocess.run(["docker", "image", "inspect", i], capture_output=True).returncode == 0 for i in images
    )


@pytest.fixture
def engine():
    """Skip without a Docker engine and the fixture images, or fail when STAVES_REQUIRE_DOCKER=1."""
    required = os.environ.get("STAVES_REQUIRE_DOCKER") == "1"
    problem = None
    if not docker_available():
        problem = "no Docker engine (docker info failed)"
    elif not images_present(FIXTURE_STAGE3, FIXTURE_PORTAGE):
        problem = f"fixture images {FIXTURE_STAGE3} / {FIXTURE_PORTAGE} missing (run tests/fixtures/build-images.sh)"
    if problem:
        if required:
            pytest.fail(f"STAVES_REQUIRE_DOCKER=1 but {problem}")
        pytest.skip(problem)


@pytest.fixture
def unique_images(engine):
    """Tag the fixture images with a unique name, so this test's containers can be told apart from others'.

    Other builds may run on the same engine at the same time; every container a build creates carries
    BUILD_LABEL, and its image name (as given at create time) is one of these unique tags.
    """
    suffix = "py-" + uuid.uuid4().hex[:12]
    builder = f"staves-test/stage3:{suffix}"
    portage = f"staves-test/portage:{suffix}"
    subprocess.run(["docker", "tag", FIXTURE_STAGE3, builder], check=True)
    subprocess.run(["docker", "tag", FIXTURE_PORTAGE, portage], check=True)
    yield builder, portage
    subprocess.run(["docker", "rmi", "--no-prune", builder, portage], capture_output=True)


@pytest.fixture
def cache_volume(engine):
    """A binary-package cache volume of this test's own (not the user's `staves-binpkgs`), removed afterwards."""
    name = "staves-test-py-cache-" + uuid.uuid4().hex[:12]
    yield name
    subprocess.run(["docker", "volume", "rm", "-f", name], capture_output=True)


def containers_from(*images):
    """IDs of the Staves build containers (running or not) created from any of `images`."""
    proc = subprocess.run(
        ["docker", "ps", "-a", "--no-trunc", "--filter", f"label={BUILD_LABEL}", "--format", "{{.ID}} {{.Image}}"],
        capture_output=True,
        text=True,
        check=True,
    )
    found = []
    for line in proc.stdout.splitlines():
        cid, _, image = line.partition(" ")
        if image in images:
            found.append(cid)
    return found
