# Copyright 2026 Staves authors
# Distributed under the terms of the MIT license
# Test fixture of the Staves project: no downloads, builds in seconds.

EAPI=8

DESCRIPTION="Test fixture: a runtime dependency (a C shared library, libfoo.so.1, and data files)"
HOMEPAGE="https://example.invalid/staves"
S="${WORKDIR}"

LICENSE="MIT"
SLOT="0"
KEYWORDS="amd64"

src_compile() {
	[[ -n ${CC} ]] || die "CC is not set: the builder's make.conf names the C compiler (tests/fixtures/build-images.sh)"
	# shellcheck disable=SC2086 # the flags are word lists
	${CC} ${CFLAGS} ${CPPFLAGS} -fPIC -shared ${LDFLAGS} -Wl,-soname,libfoo.so.1 \
		-o libfoo.so.1 "${FILESDIR}"/foo.c || die "compiling libfoo.so.1 failed"
}

src_install() {
	dolib.so libfoo.so.1
	dosym libfoo.so.1 "/usr/$(get_libdir)/libfoo.so"
	doheader "${FILESDIR}"/foo.h

	insinto /usr/share/libfoo
	newins - libfoo.txt <<<"libfoo 1"
	# Owned by the portage group (gid 250): images must keep numeric ownership (the original lost it).
	newins - group-owned.txt <<<"owned by gid 250"
	fowners root:portage /usr/share/libfoo/group-owned.txt
	fperms 0640 /usr/share/libfoo/group-owned.txt
}
