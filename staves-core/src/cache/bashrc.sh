# Staves records the build environment each package starts with into its binary package (STAVES_BUILD_ENV), so a
# later build can tell whether the binary package was built with the environment its spec gives it.
# The record is taken the first time this file is sourced for a package (Portage sources it before the ebuild,
# so nothing the ebuild or an eclass changes later is recorded) and copied into build-info/ in later phases.
if [[ ${EMERGE_FROM} != binary && -n ${T} && -d ${T} ]]; then
	if [[ ! -e ${T}/environment && ! -e ${T}/staves-build-env && -r /var/tmp/staves/build-env-vars ]]; then
		(
			IFS=$' \t\n'
			set -f
			echo "staves-build-env 1"
			while read -r __staves_name; do
				[[ ${__staves_name} =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || continue
				if [[ ${__staves_name} == FEATURES ]]; then
					__staves_value=$(for __staves_t in ${FEATURES}; do
						case ${__staves_t} in
							compressdebug|dedupdebug|installsources|nodoc|noinfo|noman|nostrip|splitdebug) echo "${__staves_t}" ;;
						esac
					done | LC_ALL=C sort -u | tr '\n' ' ')
				else
					printf -v __staves_value '%s ' ${!__staves_name}
				fi
				__staves_value=${__staves_value% }
				if [[ -n ${__staves_value} ]]; then
					printf '%s=%s\n' "${__staves_name}" "${__staves_value}"
				fi
			done < /var/tmp/staves/build-env-vars
		) > "${T}/staves-build-env.tmp" && mv "${T}/staves-build-env.tmp" "${T}/staves-build-env"
		cp /var/tmp/staves/build-nonce "${T}/staves-build" 2>/dev/null
	fi
	if [[ -s ${T}/staves-build-env && -d ${PORTAGE_BUILDDIR}/build-info ]]; then
		cp "${T}/staves-build-env" "${PORTAGE_BUILDDIR}/build-info/STAVES_BUILD_ENV"
		if [[ -s ${T}/staves-build ]]; then
			cp "${T}/staves-build" "${PORTAGE_BUILDDIR}/build-info/STAVES_BUILD"
		fi
	fi
fi
true
