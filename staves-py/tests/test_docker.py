"""Real builds on the Docker engine with the fixture images: streaming logs, reports, failures, and cancelling a build
by Ctrl-C, by a CancelToken from another thread, and by cancelling an asyncio task.

These need the engine and the fixture images (tests/fixtures/build-images.sh); with STAVES_REQUIRE_DOCKER=1 they
fail instead of skipping when either is missing.
"""

import asyncio
import gzip
import io
import json
import re
import signal
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
import warnings

import pytest

import staves
from conftest import HELLO, REPO, containers_from


def layer_names(archive_path):
    """The paths in the (single) layer of an oci-archive."""
    with tarfile.open(archive_path) as archive:
        index = json.load(archive.extractfile("index.json"))
        manifest_digest = index["manifests"][0]["digest"].split(":", 1)[1]
        manifest = json.load(archive.extractfile(f"blobs/sha256/{manifest_digest}"))
        layer_digest = manifest["layers"][0]["digest"].split(":", 1)[1]
        blob = archive.extractfile(f"blobs/sha256/{layer_digest}").read()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as layer:
        return {name.lstrip("./") for name in layer.getnames()}


def test_hello_build_streams_log_lines_while_it_runs(tmp_path, unique_images, cache_volume):
    builder_image, portage_image = unique_images
    out = tmp_path / "hello.tar"
    seen = []
    during_build = []

    def on_log(line):
        if not seen:
            # The first line: the build's containers must still exist and the image must not be written yet,
            # which is only true if lines arrive as they are printed, not after the build.
            during_build.append((containers_from(builder_image, portage_image), out.exists()))
        seen.append(line)

    events = []
    builder = staves.DockerBuilder(builder_image, portage_image=portage_image, build_cache=cache_volume)
    report = staves.build(
        staves.ImageSpec.from_file(HELLO), builder, [f"oci-archive:{out}"], on_log=on_log, on_event=events.append
    )

    assert during_build, "on_log was never called"
    running, written = during_build[0]
    assert running, "no build container existed when the first log line arrived"
    assert not written
    assert containers_from(builder_image, portage_image) == [], "the build left containers behind"

    assert report.image_digest.startswith("sha256:")
    assert report.outputs == [staves.WrittenOutput(output=f"oci-archive:{out}", size=out.stat().st_size)]
    cpvs = [p.cpv for p in report.packages]
    assert any(c.startswith("app-misc/hello-") for c in cpvs), cpvs
    assert seen == report.log
    assert [e.kind for e in events].count("step-started") == len(report.steps)
    assert "usr/bin/hello" in layer_names(out)
    assert "var/db/pkg" not in layer_names(out)

    # The binary packages the build left in its volume, as `staves cache list` sees them.
    listing = staves.cache("list", build_cache=cache_volume, builder=builder_image, store=False)
    assert listing["store"] is None
    packages = listing["binpkgs"]["packages"]
    assert any(p["cpv"].startswith("app-misc/hello-") and p["fingerprint"] for p in packages), packages
    usage = staves.cache("du", build_cache=cache_volume, builder=builder_image, store=False)["binpkgs"]
    assert usage["packages"] == len(packages) and usage["bytes"] > 0
    assert containers_from(builder_image, portage_image) == [], "staves.cache left a container behind"


def test_a_missing_package_is_a_build_error(tmp_path, unique_images, cache_volume):
    builder_image, portage_image = unique_images
    spec = staves.ImageSpec(name="staves-test/missing", packages=["app-misc/does-not-exist"])
    out = tmp_path / "never.tar"
    builder = staves.DockerBuilder(builder_image, portage_image=portage_image, build_cache=cache_volume)
    with pytest.raises(staves.BuildError) as info:
        staves.build(spec, builder, [f"oci-archive:{out}"])
    assert info.value.exit_code == 4
    assert "does-not-exist" in str(info.value)
    assert not out.exists()
    assert containers_from(builder_image, portage_image) == []


def test_a_cancel_token_cancelled_from_another_thread_stops_the_build(tmp_path, unique_images, cache_volume):
    builder_image, portage_image = unique_images
    out = tmp_path / "never.tar"
    token = staves.CancelToken()
    first_line = threading.Event()
    while_running = []

    def cancel_once_running():
        if first_line.wait(timeout=600):
            while_running.append(containers_from(builder_image, portage_image))
            token.cancel()

    canceller = threading.Thread(target=cancel_once_running)
    canceller.start()
    builder = staves.DockerBuilder(builder_image, portage_image=portage_image, build_cache=cache_volume)
    try:
        with pytest.raises(staves.BuildError) as info:
            staves.build(
                staves.ImageSpec.from_file(HELLO), builder, [f"oci-archive:{out}"],
                on_log=lambda line: first_line.set(), cancel=token,
            )
    finally:
        first_line.set()
        canceller.join()
    assert while_running and while_running[0], "no build container while the build ran"
    assert "interrupted" in str(info.value)
    assert token.is_cancelled()
    assert not out.exists()
    assert containers_from(builder_image, portage_image) == [], "the cancelled build left containers behind"


def test_cancelling_the_build_async_task_removes_the_containers(tmp_path, unique_images, cache_volume):
    builder_image, portage_image = unique_images
    out = tmp_path / "never.tar"
    builder = staves.DockerBuilder(builder_image, portage_image=portage_image, build_cache=cache_volume)
    spec = staves.ImageSpec.from_file(HELLO)

    async def main():
        first_line = asyncio.Event()
        task = asyncio.create_task(
            staves.build_async(spec, builder, [f"oci-archive:{out}"], lambda line: first_line.set())
        )
        await asyncio.wait_for(first_line.wait(), timeout=600)
        running = containers_from(builder_image, portage_image)
        task.cancel()
        cancelled_at = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await task
        return running, time.monotonic() - cancelled_at, containers_from(builder_image, portage_image)

    running, seconds, left = asyncio.run(main())
    assert running, "no build container while the build ran"
    assert left == [], "the cancelled build left containers behind"
    # The 5 s bound is a speed target, measured in BENCHMARKS.md, not asserted here (no timed assertions
    # in tests: these machines are noisy). A slow cancellation still shows up in the test's output.
    if seconds >= 5:
        warnings.warn(f"cancelling build_async took {seconds:.1f}s (target: under 5 s)")
    assert not out.exists()


def test_an_unreachable_engine_is_a_docker_error(tmp_path):
    builder = staves.DockerBuilder("staves-test/stage3:latest", docker_host=f"unix://{tmp_path}/no-engine.sock")
    with pytest.raises(staves.DockerError) as info:
        staves.build(staves.ImageSpec.from_file(HELLO), builder, [f"oci-archive:{tmp_path / 'x.tar'}"])
    assert info.value.exit_code == 3


CHILD = textwrap.dedent(
    """
    import sys
    import staves

    builder_image, portage_image, spec_path, out, cache_volume = sys.argv[1:]
    first = []

    def on_log(line):
        if not first:
            first.append(line)
            print("FIRST-LOG-LINE", flush=True)

    builder = staves.DockerBuilder(builder_image, portage_image=portage_image, build_cache=cache_volume)
    staves.build(staves.ImageSpec.from_file(spec_path), builder, ["oci-archive:" + out], on_log=on_log)
    print("BUILD-FINISHED", flush=True)
    """
)


def test_keyboard_interrupt_cancels_the_build_and_leaves_no_container(tmp_path, unique_images, cache_volume):
    builder_image, portage_image = unique_images
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    out = tmp_path / "never.tar"
    child = subprocess.Popen(
        [sys.executable, str(script), builder_image, portage_image, str(HELLO), str(out), cache_volume],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        line = child.stdout.readline()
        assert line.strip() == "FIRST-LOG-LINE", f"child said {line!r}, stderr: {child.stderr.read()}"
        assert containers_from(builder_image, portage_image), "no build container while the build runs"
        child.send_signal(signal.SIGINT)
        stdout, stderr = child.communicate(timeout=300)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert "BUILD-FINISHED" not in stdout
    assert "KeyboardInterrupt" in stderr, stderr
    assert child.returncode != 0
    assert not out.exists()
    assert containers_from(builder_image, portage_image) == [], "the interrupted build left containers behind"


@pytest.mark.parametrize("script", ["build_hello.py", "build_hello_async.py"])
def test_the_example_scripts_build_hello(tmp_path, unique_images, cache_volume, script):
    builder_image, portage_image = unique_images
    out = tmp_path / "example.tar"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / "python" / script),
            "--builder", builder_image,
            "--portage", portage_image,
            "--output", f"oci-archive:{out}",
            "--build-cache", cache_volume,
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"step \d+/\d+: Install runtime dependencies into the rootfs", proc.stdout), proc.stdout
    assert "app-misc/hello-" in proc.stdout
    assert out.exists()
    assert containers_from(builder_image, portage_image) == []


def containers_created(since, until, *images):
    """Containers created from any of `images` between the unix times `since` and `until`, from the engine's events."""
    args = ["docker", "events", "--since", f"{since:.3f}", "--until", f"{until:.3f}", "--format", "{{.ID}}"]
    args += ["--filter", "type=container", "--filter", "event=create"]
    for image in images:
        args += ["--filter", f"image={image}"]
    proc = subprocess.run(args, capture_output=True, text=True, check=True)
    return proc.stdout.split()


def test_a_local_image_store_serves_an_unchanged_spec_without_a_container(tmp_path, unique_images, cache_volume):
    builder_image, portage_image = unique_images
    store = tmp_path / "store"
    builder = staves.DockerBuilder(builder_image, portage_image=portage_image, build_cache=cache_volume)
    spec = staves.ImageSpec.from_file(HELLO)

    first = staves.build(spec, builder, [f"oci-archive:{tmp_path / 'first.tar'}"], cache_dir=store)
    assert first.reused is None
    assert first.steps and first.build_key and first.build_key.startswith("sha256:")

    # The same spec again: written from the store, with no container and no step, and the same image.
    started = time.time()
    events = []
    second = staves.build(
        spec, builder, [f"oci-archive:{tmp_path / 'second.tar'}"], cache_dir=store, on_event=events.append
    )
    assert second.reused is not None and second.reused.key == first.build_key, second
    assert second.steps == [] and "step-started" not in [e.kind for e in events]
    assert second.image_digest == first.image_digest
    assert (tmp_path / "second.tar").read_bytes() == (tmp_path / "first.tar").read_bytes()
    assert [p.cpv for p in second.packages] == [p.cpv for p in first.packages]
    assert containers_created(started, time.time() + 1, builder_image, portage_image) == []

    # rebuild=True builds anyway; without cache_dir there is no store at all.
    again = staves.build(spec, builder, [f"oci-archive:{tmp_path / 'again.tar'}"], cache_dir=store, rebuild=True)
    assert again.reused is None and again.steps
    assert again.image_digest == first.image_digest
    plain = staves.build(spec, builder, [f"oci-archive:{tmp_path / 'plain.tar'}"])
    assert plain.reused is None and plain.build_key is None and plain.steps
    assert containers_from(builder_image, portage_image) == []

