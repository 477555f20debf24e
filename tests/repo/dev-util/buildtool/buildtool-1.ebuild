# Copyright 2026 Staves authors
# Distributed under the terms of the MIT license
# Test fixture of the Staves project: no downloads, builds in seconds.

EAPI=8

DESCRIPTION="Test fixture: a build-only dependency that must never reach an image"
HOMEPAGE="https://example.invalid/staves"
S="${WORKDIR}"

LICENSE="MIT"
SLOT="0"
KEYWORDS="amd64"

src_install() {
	newbin - buildtool <<-'EOT'
		#!/bin/sh
		echo "buildtool 1"
	EOT
}
