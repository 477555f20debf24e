# Copyright 2026 Staves authors
# Distributed under the terms of the MIT license
# Test fixture of the Staves project: no downloads, builds in seconds.

EAPI=8

DESCRIPTION="Test fixture: a package with two versions (2 is in tests/repo-versions), for the staves.lock tests"
HOMEPAGE="https://example.invalid/staves"
S="${WORKDIR}"

LICENSE="MIT"
SLOT="0"
KEYWORDS="amd64"

src_install() {
	# The version this image got, for tests to read back.
	insinto /usr/share/versioned
	newins - version <<<"${PV}"
}
