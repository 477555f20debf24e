# Copyright 2026 Staves authors
# Distributed under the terms of the MIT license
# Test fixture of the Staves project: no downloads, builds in seconds.

EAPI=8

DESCRIPTION="Test fixture: a static busybox as /bin/sh, so test images can run"
HOMEPAGE="https://busybox.net/"
S="${WORKDIR}"

LICENSE="MIT"
SLOT="0"
KEYWORDS="amd64"
# A prebuilt static binary: do not strip it, and skip the QA checks for prebuilt files.
RESTRICT="strip"
QA_PREBUILT="*"

# Where the binary comes from: FILESDIR. The binary is NOT committed; tests/fixtures/build-images.sh copies the host's
# static busybox (Debian's busybox-static, /bin/busybox) to files/busybox in the copy of this repository that goes into
# the staves-test/portage snapshot image. Taking it from FILESDIR (and not from the builder's own filesystem) keeps the
# package independent of what the builder happens to have installed, as a real ebuild would be.
src_install() {
	[[ -f ${FILESDIR}/busybox ]] || die "${FILESDIR}/busybox is missing: build the repository with tests/fixtures/build-images.sh"
	exeinto /bin
	newexe "${FILESDIR}/busybox" busybox
	dosym busybox /bin/sh
}
