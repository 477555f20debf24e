# Copyright 2026 Staves authors
# Distributed under the terms of the MIT license
# Test fixture of the Staves project: no downloads, builds in seconds.

EAPI=8

DESCRIPTION="Test fixture: under an EULA licence (needs package.license)"
HOMEPAGE="https://example.invalid/staves"
S="${WORKDIR}"

LICENSE="Staves-Test-EULA"
SLOT="0"
KEYWORDS="amd64"

src_install() {
	newbin - eula <<-'EOT'
		#!/bin/sh
		echo "eula 1"
	EOT
}
