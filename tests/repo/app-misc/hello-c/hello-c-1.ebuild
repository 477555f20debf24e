# Copyright 2026 Staves authors
# Distributed under the terms of the MIT license
# Test fixture of the Staves project: no downloads, builds in seconds.

EAPI=8

DESCRIPTION="Test fixture: a C program linked against libfoo and glibc (prints its CFLAGS with --flags)"
HOMEPAGE="https://example.invalid/staves"
S="${WORKDIR}"

LICENSE="MIT"
SLOT="0"
KEYWORDS="amd64"

RDEPEND="dev-libs/libfoo"
DEPEND="${RDEPEND}"

src_compile() {
	[[ -n ${CC} ]] || die "CC is not set: the builder's make.conf names the C compiler (tests/fixtures/build-images.sh)"
	# The CFLAGS of this build, as a C string literal, for `hello-c --flags`.
	local quoted=${CFLAGS//\\/\\\\}
	quoted=${quoted//\"/\\\"}
	printf '#define HELLO_C_CFLAGS "%s"\n' "${quoted}" > flags.h || die
	# shellcheck disable=SC2086 # the flags are word lists
	${CC} ${CFLAGS} ${CPPFLAGS} -I. ${LDFLAGS} -o hello-c "${FILESDIR}"/hello-c.c -lfoo ||
		die "compiling hello-c failed"
}

src_install() {
	dobin hello-c
}
