# Copyright 2026 Staves authors
# Distributed under the terms of the MIT license
# Test fixture of the Staves project: no downloads, builds in seconds.

EAPI=8

DESCRIPTION="Test fixture: a package from a second repository (::staves-extra)"
HOMEPAGE="https://example.invalid/staves"
S="${WORKDIR}"

LICENSE="MIT"
SLOT="0"
KEYWORDS="amd64"

# From the master repository (::gentoo), so the image can run /usr/bin/extra.
RDEPEND="app-shells/tinysh"

src_install() {
	newbin - extra <<-'EOT'
		#!/bin/sh
		echo "extra 1"
	EOT
}
