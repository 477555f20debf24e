# Copyright 2026 Staves authors
# Distributed under the terms of the MIT license
# Test fixture of the Staves project: no downloads, builds in seconds.

EAPI=8

DESCRIPTION="Test fixture: prints Hello, world (USE=nls adds a message catalog)"
HOMEPAGE="https://example.invalid/staves"
S="${WORKDIR}"

LICENSE="MIT"
SLOT="0"
KEYWORDS="amd64"
IUSE="+nls"

RDEPEND="
	dev-libs/libfoo
	app-shells/tinysh
"
BDEPEND="dev-util/buildtool"

src_compile() {
	# Proves that the build-only dependency is present in the builder.
	buildtool > buildtool.log || die "buildtool from dev-util/buildtool is missing from the builder"

	printf '#!/bin/sh\necho "Hello, world"\n' > hello || die
	# Records the flags this package was built with, so tests can check package.env.
	{
		echo "CFLAGS=${CFLAGS}"
		echo "USE=${USE}"
	} > build-info.txt || die
}

src_install() {
	dobin hello
	insinto /usr/share/hello
	doins build-info.txt
	if use nls; then
		insinto /usr/share/locale/de/LC_MESSAGES
		newins - hello.mo <<<"Hallo, Welt"
	fi
}
