# Copyright 2026 Staves authors
# Distributed under the terms of the MIT license
# Test fixture of the Staves project: no downloads, builds in seconds.

EAPI=8

DESCRIPTION="Test fixture: a package whose build always fails"
HOMEPAGE="https://example.invalid/staves"
S="${WORKDIR}"

LICENSE="MIT"
SLOT="0"
KEYWORDS="amd64"

RDEPEND="dev-libs/libfoo"
DEPEND="${RDEPEND}"

src_compile() {
	die "app-misc/broken fails on purpose (Staves test fixture for build failures)"
}
