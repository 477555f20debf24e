#!/usr/bin/env python3
"""Build the hello image from an asyncio program, with a time limit and progress on the event loop.

    pip install ./staves-py
    python examples/python/build_hello_async.py --output oci-archive:hello.tar --timeout 600

`await staves.build_async(...)` runs the build in a worker thread and keeps the event loop free. Cancelling the
task (here through asyncio.wait_for's time limit, or Ctrl-C under asyncio.run) removes the build's containers
before CancelledError reaches the caller. It uses the offline fixture images by default (make them with
tests/fixtures/build-images.sh); point it at others with --builder and --portage.
"""

import argparse
import asyncio
import sys
from pathlib import Path

import staves

HERE = Path(__file__).resolve().parent
DEFAULT_SPEC = HERE.parent / "hello" / "staves.toml"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=DEFAULT_SPEC, help="the staves.toml to build")
    parser.add_argument("--builder", default="staves-test/stage3:latest", help="the builder image")
    parser.add_argument("--portage", default="staves-test/portage:latest", help="the Portage snapshot image")
    parser.add_argument("--output", action="append", help="docker (default), oci:DIR, oci-archive:FILE, ...")
    parser.add_argument("--build-cache", default=staves.DEFAULT_BUILD_CACHE, help="binary-package cache volume")
    parser.add_argument("--timeout", type=float, default=None, help="give up after this many seconds")
    return parser.parse_args()


def show(event: staves.Event) -> None:
    """Progress, printed on the event loop's thread (build_async delivers events there)."""
    # `kind` is a Literal on each event class, so a type checker narrows `event` in every branch.
    if event.kind == "step-started":
        print(f"step {event.index}/{event.total}: {event.label}", flush=True)
    elif event.kind == "package":
        print(f"  {event.cpv} ({'binary package' if event.binary else 'source'})", flush=True)
    elif event.kind == "step-finished":
        print(f"  done in {event.seconds:.1f}s", flush=True)


async def main() -> int:
    args = parse_args()
    spec = staves.ImageSpec.from_file(args.config)
    builder = staves.DockerBuilder(args.builder, portage_image=args.portage, build_cache=args.build_cache)
    outputs: list[str] = args.output or ["docker"]
    try:
        report = await asyncio.wait_for(staves.build_async(spec, builder, outputs, on_event=show), args.timeout)
    except asyncio.TimeoutError:
        print(f"gave up after {args.timeout}s; the build's containers were removed", file=sys.stderr)
        return 1
    except staves.StavesError as err:
        print(f"build failed: {err}", file=sys.stderr)
        return err.exit_code
    print(f"{report.image.tag} {report.image_digest}")
    for package in report.packages:
        print(f"  {package.cpv} from {package.repository}")
    for output in report.outputs:
        print(f"  -> {output.output} ({output.size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
