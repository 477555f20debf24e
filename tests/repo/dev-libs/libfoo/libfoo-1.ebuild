# Copyright 2026 Staves authors
# Distributed under the terms of the MIT license
# Test fixture of the Staves project: no downloads, builds in seconds.

EAPI=8

DESCRIPTION="Test fixture: a runtime dependency (installs a data file)"
HOMEPAGE="https://example.invalid/staves"
S="${WORKDIR}"

LICENSE="MIT"
SLOT="0"
KEYWORDS="amd64"

src_install() {
	insinto /usr/share/libfoo
	newins - libfoo.txt <<<"libfoo 1"
	# Owned by the portage group (gid 250): images must keep numeric ownership (the original lost it).
	newins - group-owned.txt <<<"owned by gid 250"
	fowners root:portage /usr/share/libfoo/group-owned.txt
	fperms 0640 /usr/share/libfoo/group-owned.txt
}
