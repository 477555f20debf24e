# Copyright 2026 Staves authors
# Distributed under the terms of the MIT license
# Test fixture of the Staves project: no downloads, builds in seconds.

EAPI=8

DESCRIPTION="Test fixture: a C++ program that throws and catches (needs libstdc++.so.6 and libgcc_s.so.1)"
HOMEPAGE="https://example.invalid/staves"
S="${WORKDIR}"

LICENSE="MIT"
SLOT="0"
KEYWORDS="amd64"

src_compile() {
	[[ -n ${CXX} ]] || die "CXX is not set: the builder's make.conf names the C++ compiler (tests/fixtures/build-images.sh)"
	# shellcheck disable=SC2086 # the flags are word lists
	${CXX} ${CXXFLAGS} ${CPPFLAGS} ${LDFLAGS} -o hello-cxx "${FILESDIR}"/hello-cxx.cpp ||
		die "compiling hello-cxx failed"
}

src_install() {
	dobin hello-cxx
}
