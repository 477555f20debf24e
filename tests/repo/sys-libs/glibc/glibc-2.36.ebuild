# Copyright 2026 Staves authors
# Distributed under the terms of the MIT license
# Test fixture of the Staves project: no downloads, builds in seconds.

EAPI=8

DESCRIPTION="Test fixture: the builder's GNU C library runtime, laid out as Gentoo's glibc installs it"
HOMEPAGE="https://www.gnu.org/software/libc/"
S="${WORKDIR}"

# The licence expression of Gentoo's sys-libs/glibc, so that SBOM tests have a real multi-licence package.
LICENSE="LGPL-2.1+ BSD HPND ISC inner-net rc PCRE"
SLOT="2.2"
KEYWORDS="amd64"
# Prebuilt binaries (the builder's own C library): do not strip them, and skip the QA checks for prebuilt files.
RESTRICT="strip"
QA_PREBUILT="*"

# Where the builder keeps its C library. The fixture builder is Debian bookworm (tests/fixtures/build-images.sh),
# whose glibc is multiarch; compiled programs ask for the loader at /lib64/ld-linux-x86-64.so.2 either way.
GLIBC_BUILDER_LIBDIR=/usr/lib/x86_64-linux-gnu

# The runtime libraries of glibc 2.36 (Debian's libc6 without the gconv modules and the memusage/pcprofile
# preload libraries). A real glibc installs them into /lib64 on amd64, the loader included.
GLIBC_RUNTIME=(
	ld-linux-x86-64.so.2
	libc.so.6
	libm.so.6
	libmvec.so.1
	libpthread.so.0
	libdl.so.2
	librt.so.1
	libresolv.so.2
	libutil.so.1
	libanl.so.1
	libnsl.so.1
	libnss_compat.so.2
	libnss_dns.so.2
	libnss_files.so.2
	libnss_hesiod.so.2
	libBrokenLocale.so.1
	libthread_db.so.1
	libc_malloc_debug.so.0
)

# A binary package of this ebuild holds the builder's libraries, so it must come from a builder with the same glibc:
# compiled programs need at least the version they were linked against.
pkg_setup() {
	local have
	have=$(getconf GNU_LIBC_VERSION) || die "getconf GNU_LIBC_VERSION failed in the builder"
	[[ ${have} == "glibc ${PV}" ]] ||
		die "the builder's C library is '${have}' but this fixture is ${CATEGORY}/${PN}-${PV}: rename tests/repo/sys-libs/glibc/${PN}-${PV}.ebuild to the builder's version"
}

src_install() {
	local lib
	for lib in "${GLIBC_RUNTIME[@]}"; do
		[[ -f ${GLIBC_BUILDER_LIBDIR}/${lib} ]] ||
			die "${GLIBC_BUILDER_LIBDIR}/${lib} is missing from the builder (Debian's libc6 should have it)"
	done
	into /
	( cd "${GLIBC_BUILDER_LIBDIR}" && dolib.so "${GLIBC_RUNTIME[@]}" ) || die
	[[ -f ${ED}/lib64/ld-linux-x86-64.so.2 ]] ||
		die "the loader did not land in /lib64: the profile must set ABI=amd64 and LIBDIR_amd64=lib64"

	# ldconfig, which Portage runs after every merge into a root that has /sbin/ldconfig (env-update), and which
	# writes /etc/ld.so.cache. Debian's is a static-pie binary, like Gentoo's.
	dosbin /sbin/ldconfig

	# env-update turns LDPATH into /etc/ld.so.conf. Gentoo's glibc installs LDPATH="include ld.so.conf.d/*.conf"
	# and baselayout adds the lib directories; this fixture has no baselayout, so it names them itself.
	newenvd - 00glibc <<-'EOT'
		LDPATH="/lib64:/usr/lib64"
	EOT

	insinto /etc
	doins "${FILESDIR}"/nsswitch.conf
}
