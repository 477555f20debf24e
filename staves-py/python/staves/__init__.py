"""Staves: build minimal container images with Gentoo's Portage, from Python.

Everything here is a thin binding of the Rust library ``staves_core``; the ``staves`` CLI makes the same calls.

>>> import staves
>>> spec = staves.ImageSpec(name="staves/bash", packages=["app-shells/bash"])
>>> [d.message for d in spec.validate() if d.severity == "error"]
[]
"""

from staves._staves import (
    BUILD_LABEL,
    DEFAULT_BUILDER_IMAGE,
    DEFAULT_PORTAGE_IMAGE,
    BuildError,
    BuildPlan,
    BuildReport,
    Diagnostic,
    DockerBuilder,
    DockerError,
    ImageReport,
    ImageSpec,
    MockBuilder,
    SpecError,
    StavesError,
    Step,
    assemble,
    build,
    plan,
)

__all__ = [
    "BUILD_LABEL",
    "DEFAULT_BUILDER_IMAGE",
    "DEFAULT_PORTAGE_IMAGE",
    "BuildError",
    "BuildPlan",
    "BuildReport",
    "Diagnostic",
    "DockerBuilder",
    "DockerError",
    "ImageReport",
    "ImageSpec",
    "MockBuilder",
    "SpecError",
    "StavesError",
    "Step",
    "assemble",
    "build",
    "plan",
]
