#!/usr/bin/env python3
"""Build the hello image from Python: validate the spec, show the plan, build with progress output.

    pip install ./staves-py
    python examples/python/build_hello.py                      # into the Docker engine as staves-test/hello
    python examples/python/build_hello.py --output oci-archive:hello.tar

It uses the offline fixture images by default (make them with tests/fixtures/build-images.sh); point it at the
official images with --builder gentoo/stage3:latest --portage gentoo/portage:latest, or with the STAVES_BUILDER and
STAVES_PORTAGE environment variables. Ctrl-C stops the build and removes its containers.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import staves

HERE = Path(__file__).resolve().parent
DEFAULT_SPEC = HERE.parent / "hello" / "staves.toml"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=DEFAULT_SPEC, help="the staves.toml to build")
    parser.add_argument("--builder", default=os.environ.get("STAVES_BUILDER", "staves-test/stage3:latest"))
    parser.add_argument("--portage", default=os.environ.get("STAVES_PORTAGE", "staves-test/portage:latest"))
    parser.add_argument(
        "--output", action="append", help="docker (default), oci:DIR, oci-archive:FILE, docker-archive:FILE, rootfs:FILE"
    )
    parser.add_argument("--build-cache", default=None, help="binary-package cache volume (default: staves-binpkgs)")
    parser.add_argument("--jobs", type=int, default=None, help="parallel jobs (default: one per CPU)")
    parser.add_argument("--verbose", "-v", action="store_true", help="print every line the build prints")
    return parser.parse_args()


def main():
    args = parse_args()

    # 1. Parse the spec. A malformed file raises staves.SpecError with the position of the first error.
    try:
        spec = staves.ImageSpec.from_file(args.config)
    except staves.SpecError as err:
        print(f"{err.path}:{err.line}:{err.column}: {err.diagnostics[0].message}", file=sys.stderr)
        return 1

    # 2. Validate it: errors stop us, warnings are only shown. Each diagnostic prints rustc-style.
    diagnostics = spec.validate()
    for diagnostic in diagnostics:
        print(diagnostic, file=sys.stderr)
    if any(d.is_error for d in diagnostics):
        return 1

    # 3. Show the plan: the Portage files the build writes and the commands it runs.
    plan = staves.plan(spec, jobs=args.jobs)
    print(f"== {spec.name}:{spec.version}: {', '.join(spec.packages)}")
    for path, content in plan.files.items():
        print(f"-- {path}")
        print(content.rstrip())
    for number, step in enumerate(plan.steps, 1):
        print(f"{number}. {step.label}")

    # 4. Build. The GIL is released while the build runs; these callbacks are called from the build's threads,
    #    as lines and events happen.
    started = time.monotonic()

    def on_event(event):
        kind = event["kind"]
        elapsed = f"[{time.monotonic() - started:6.1f}s]"
        if kind == "step-started":
            print(f"{elapsed} step {event['index']}/{event['total']}: {event['label']}", flush=True)
        elif kind == "package":
            source = "binary package" if event["binary"] else "source"
            print(f"{elapsed}   package {event['index']} of {event['total']}: {event['cpv']} ({source})", flush=True)
        elif kind == "exporting":
            print(f"{elapsed} writing the image", flush=True)

    def on_log(line):
        if args.verbose:
            print(f"    | {line}", flush=True)

    builder = staves.DockerBuilder(args.builder, portage_image=args.portage, build_cache=args.build_cache)
    try:
        report = staves.build(
            spec, builder, args.output or ["docker"], on_log=on_log, on_event=on_event, jobs=args.jobs
        )
    except staves.BuildError as err:
        print(f"build failed: {err}", file=sys.stderr)
        return err.exit_code
    except staves.DockerError as err:
        print(f"Docker engine: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted: the build's containers were removed", file=sys.stderr)
        return 130

    # 5. The result: the image digest, what is in it, where it went.
    print(f"== {report.image.tag} {report.image_digest} in {report.total_seconds:.1f}s")
    for package in report.packages:
        print(f"   {package['cpv']}  USE=\"{' '.join(package['use'])}\"")
    for output in report.outputs:
        print(f"   -> {output['output']} ({output['size']} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
