# Copyright 2026 Staves authors
# Distributed under the terms of the MIT license
# Test fixture of the Staves project: no downloads, builds in seconds.

EAPI=8

DESCRIPTION="Test fixture: empty virtual/libc (test images hold only static binaries)"
S="${WORKDIR}"

SLOT="0"
KEYWORDS="amd64"
