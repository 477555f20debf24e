# Copyright 2026 Staves authors
# Distributed under the terms of the MIT license
# Test fixture of the Staves project: no downloads, builds in seconds.

EAPI=8

DESCRIPTION="Test fixture: only keyworded ~amd64 (needs package.accept_keywords)"
HOMEPAGE="https://example.invalid/staves"
S="${WORKDIR}"

LICENSE="MIT"
SLOT="0"
KEYWORDS="~amd64"

src_install() {
	newbin - unstable <<-'EOT'
		#!/bin/sh
		echo "unstable 2"
	EOT
}
