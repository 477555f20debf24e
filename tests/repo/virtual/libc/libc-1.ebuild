# Copyright 2026 Staves authors
# Distributed under the terms of the MIT license
# Test fixture of the Staves project: no downloads, builds in seconds.

EAPI=8

DESCRIPTION="Test fixture: virtual for the C library (sys-libs/glibc on elibc_glibc)"
S="${WORKDIR}"

SLOT="0"
KEYWORDS="amd64"

# As Gentoo's virtual/libc; the test repository has no musl.
RDEPEND="elibc_glibc? ( sys-libs/glibc:2.2 )"
