# Staves: binary packages and the build environment they were built with.
#
# Run inside a builder container by Staves (never on the host). Each binary package that a Staves build creates
# carries the build environment its package started with (the STAVES_BUILD_ENV file in its metadata, written by
# the /etc/portage/bashrc block). This script compares that record with the environment each package gets from
# the current configuration (Portage's own config.setcpv(), which applies make.conf, the profile and package.env),
# and masks, by build ID, every binary package instance whose record is missing or different, so that Portage's
# resolution never picks it.
#
#   check VAR...     mask stale instances for this build; write the variable list the bashrc block records
#   verify ROOT...   after the emerge steps: every package merged from a binary package in this build has a
#                    matching record (a concurrent build may have added an instance after `check`); record usage
#   list             every instance as JSON (cpv, build ID, USE, fingerprint, size, build time, last use)
#   prune JSON       remove instances ({"keep_last": N} or {"older_than": UNIX}, "dry_run"), through Portage so
#                    the index stays consistent
#   du               bytes, files and binary packages under PKGDIR, as JSON
#   clear            remove everything under PKGDIR (the volume itself stays), as JSON
#   merge ROOT FILE  before the rootfs emerge: merge the binary packages of the resolution in FILE (the check's
#                    `emerge --pretend` output) that need no ebuild phase into ROOT directly, the way Portage's
#                    merge does for an empty ROOT; the emerge that follows merges the rest and checks the result
#
# Exit codes: 0 ok, 1 failure (message on stderr), 97 this Python cannot import Portage (the caller tries another).
import hashlib
import json
import os
import re
import stat
import sys
import tempfile
import time

try:
    import portage
    import portage.binpkg
    import portage.gpkg
    import portage.versions
    import portage.xpak
except ImportError:
    sys.exit(97)

RECORD_KEY = "STAVES_BUILD_ENV"
RECORD_HEADER = "staves-build-env 1"
STATE_DIR = "/var/tmp/staves"
VARS_FILE = STATE_DIR + "/build-env-vars"
STARTED_FILE = STATE_DIR + "/binpkg-check-started"
NONCE_FILE = STATE_DIR + "/build-nonce"
NONCE_KEY = "STAVES_BUILD"
MASK_FILE = "/etc/portage/package.mask/staves-binpkg-env"
MAKE_CONF = "/etc/portage/make.conf"
EXCLUDE_BEGIN = "# BEGIN staves-binpkg-env: written by the binary package check of each build"
EXCLUDE_END = "# END staves-binpkg-env"
USABLE_FILE = STATE_DIR + "/binpkg-usable"
# FEATURES tokens that change what a package installs; the others steer Portage itself.
OUTPUT_FEATURES = frozenset(
    "compressdebug dedupdebug installsources nodoc noinfo noman nostrip splitdebug".split()
)
WHITESPACE = re.compile(r"[ \t\n]+")
# What config.setcpv() reads about a package (its _setcpv_aux_keys) and USE, from the package database.
VDB_KEYS = (
    "BDEPEND DEFINED_PHASES DEPEND EAPI IDEPEND INHERITED IUSE REQUIRED_USE KEYWORDS LICENSE PDEPEND "
    "PROPERTIES RDEPEND SLOT repository RESTRICT USE"
).split()


def fail(message):
    sys.stderr.write("staves: " + message + "\n")
    sys.exit(1)


def normalize(value):
    """Whitespace collapsed, as the bashrc block writes it (bash word splitting on space, tab, newline)."""
    return " ".join(w for w in WHITESPACE.split(value or "") if w)


def current_value(settings, name):
    if name == "FEATURES":
        return " ".join(sorted(t for t in settings.features if t in OUTPUT_FEATURES))
    return normalize(settings.get(name, ""))


def expected_env(settings, names, pkg, mydb):
    """The environment `pkg` gets now: {NAME: value} for every name with a non-empty value."""
    settings.setcpv(pkg, mydb=mydb)
    env = {}
    for name in names:
        value = current_value(settings, name)
        if value:
            env[name] = value
    return env


def parse_record(text):
    """{NAME: value} from a STAVES_BUILD_ENV file, or None when it is not one."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != RECORD_HEADER:
        return None
    env = {}
    for line in lines[1:]:
        name, sep, value = line.partition("=")
        if sep and name:
            env[name] = value
    return env


def fingerprint(env):
    """A short, stable name for a recorded environment."""
    text = "".join(f"{k}={env[k]}\n" for k in sorted(env))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def differences(settings, names, recorded, pkg, mydb):
    """The names whose value differs between the record and the environment `pkg` gets now."""
    now = expected_env(settings, names, pkg, mydb)
    diff = []
    for name in sorted(set(now) | set(recorded)):
        value = now.get(name)
        if value is None and name not in names:
            # A variable recorded then but not named now: compare with its current value all the same.
            value = current_value(settings, name) or None
        if value != recorded.get(name):
            diff.append(name)
    return diff


class RecordCache:
    """Records read from binary package files, kept in PKGDIR/.staves/records.json keyed by path, size and mtime.

    Reading a record decompresses the package's metadata; the cache makes warm checks cheap. It only ever holds what
    the file itself says, so a stale or lost cache costs time, never correctness."""

    def __init__(self, pkgdir, writable):
        self.path = os.path.join(pkgdir, ".staves", "records.json")
        self.writable = writable
        self.dirty = False
        try:
            with open(self.path, encoding="utf-8") as f:
                self.entries = json.load(f)
            if not isinstance(self.entries, dict):
                self.entries = {}
        except (OSError, ValueError):
            self.entries = {}

    def record(self, settings, pkgdir, path, cpv):
        try:
            st = os.stat(path)
        except OSError:
            return None
        key = os.path.relpath(path, pkgdir)
        stamp = [st.st_size, st.st_mtime_ns]
        entry = self.entries.get(key)
        if isinstance(entry, dict) and entry.get("stamp") == stamp:
            text = entry.get("record")
        else:
            text = read_record_file(settings, path, cpv)
            self.entries[key] = {"stamp": stamp, "record": text}
            self.dirty = True
        return None if text is None else parse_record(text)

    def save(self, live_keys):
        if not self.writable:
            return
        stale = set(self.entries) - set(live_keys)
        for key in stale:
            del self.entries[key]
        if not (self.dirty or stale):
            return
        directory = os.path.dirname(self.path)
        try:
            os.makedirs(directory, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".records.")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.entries, f, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError as e:
            sys.stderr.write(f"staves: warning: could not save {self.path}: {e}\n")


def read_record_file(settings, path, cpv):
    """The STAVES_BUILD_ENV text stored in a binary package's metadata, or None."""
    try:
        fmt = portage.binpkg.get_binpkg_format(path)
        if fmt == "gpkg":
            value = portage.gpkg.gpkg(settings, cpv, path).get_metadata(RECORD_KEY)
        elif fmt == "xpak":
            value = portage.xpak.tbz2(path).getfile(RECORD_KEY)
        else:
            return None
    except Exception as e:  # a damaged package has no usable record
        sys.stderr.write(f"staves: warning: cannot read the metadata of {path}: {e}\n")
        return None
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value


def open_bintree(writable):
    settings = portage.config(clone=portage.settings)
    bintree = portage.db[portage.root]["bintree"]
    bintree.populate()
    return settings, bintree, RecordCache(bintree.pkgdir, writable)


def fingerprint_names(settings, requested):
    """The variables recorded and compared: the requested ones, less USE and the USE_EXPAND variables (binary
    packages are already matched on USE by --binpkg-respect-use)."""
    use_expand = set(settings.get("USE_EXPAND", "").split())
    use_expand |= set(settings.get("USE_EXPAND_UNPREFIXED", "").split())
    return sorted({n for n in requested if n and n != "USE" and n not in use_expand})


def write_atomically(path, text):
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".staves-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def cmd_check(requested):
    started = time.time()
    settings, bintree, cache = open_bintree(writable=True)
    names = fingerprint_names(settings, requested)
    write_atomically(VARS_FILE, "".join(n + "\n" for n in names))
    write_atomically(STARTED_FILE, f"{started}\n")
    write_atomically(NONCE_FILE, os.urandom(16).hex() + "\n")
    masks, excludes, stale = [], set(), []
    instances = bintree.dbapi.cpv_all()
    live = []
    for cpv in sorted(instances, key=str):
        path = bintree.getname(cpv)
        live.append(os.path.relpath(path, bintree.pkgdir))
        recorded = cache.record(settings, bintree.pkgdir, path, cpv)
        if recorded is None:
            reason = "no build environment recorded"
        else:
            diff = differences(settings, names, recorded, cpv, bintree.dbapi)
            if not diff:
                continue
            reason = "built with other " + ", ".join(diff)
        build_id = getattr(cpv, "build_id", None)
        if build_id:
            masks.append(f"={cpv}-{build_id}")
            stale.append((f"{cpv}-{build_id}", reason))
        else:
            # No build ID (written without binpkg-multi-instance): a mask would hide the ebuild too.
            excludes.add(cpv.cp)
            stale.append((str(cpv), reason + "; no build ID, so every binary package of " + cpv.cp + " is skipped"))
    cache.save(live)
    write_atomically(
        MASK_FILE,
        "# Written by Staves for this build: binary packages built with another environment.\n"
        + "".join(m + "\n" for m in masks),
    )
    write_excludes(sorted(excludes))
    write_atomically(USABLE_FILE, f"{len(instances) - len(stale)}\n")
    print(
        f"staves: {len(instances)} binary package(s) in the cache; "
        f"{len(instances) - len(stale)} built with the environment this spec gives them"
    )
    for name, reason in stale:
        print(f"staves: not using {name}: {reason}")
    print("staves: compared variables: " + " ".join(names))


def write_excludes(excludes):
    """Give every emerge of this build `--usepkg-exclude` for `excludes`, in a marked block of make.conf."""
    block = ""
    if excludes:
        block = (
            f"{EXCLUDE_BEGIN}\n"
            + 'EMERGE_DEFAULT_OPTS="${EMERGE_DEFAULT_OPTS}'
            + "".join(f" --usepkg-exclude={cp}" for cp in excludes)
            + '"\n'
            + f"{EXCLUDE_END}\n"
        )
    if os.path.isdir(MAKE_CONF):
        path = os.path.join(MAKE_CONF, "zz-staves-binpkg-env.conf")
        if block:
            write_atomically(path, block)
        elif os.path.exists(path):
            os.remove(path)
        return
    try:
        with open(MAKE_CONF, encoding="utf-8") as f:
            lines = f.read().splitlines(keepends=True)
    except FileNotFoundError:
        lines = []
    kept, inside = [], False
    for line in lines:
        if line.rstrip("\n") == EXCLUDE_BEGIN:
            inside = True
        elif inside and line.rstrip("\n") == EXCLUDE_END:
            inside = False
        elif not inside:
            kept.append(line)
    text = "".join(kept)
    if block and text and not text.endswith("\n"):
        text += "\n"
    new = text + block
    if new != "".join(lines):
        write_atomically(MAKE_CONF, new)


def vdb_entries(root):
    vdb = os.path.join(root, portage.const.VDB_PATH)
    try:
        categories = sorted(os.listdir(vdb))
    except OSError:
        return
    for category in categories:
        cdir = os.path.join(vdb, category)
        if category.startswith(".") or not os.path.isdir(cdir):
            continue
        for pf in sorted(os.listdir(cdir)):
            pdir = os.path.join(cdir, pf)
            if not pf.startswith("-MERGING-") and os.path.isdir(pdir):
                yield f"{category}/{pf}", pdir


def read_text(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return ""


def cmd_verify(roots):
    try:
        started = float(read_text(STARTED_FILE))
    except ValueError:
        fail(f"{STARTED_FILE} is missing: the binary package check did not run in this builder")
    nonce = read_text(NONCE_FILE)
    try:
        with open(VARS_FILE, encoding="utf-8") as f:
            names = [line.strip() for line in f if line.strip()]
    except OSError:
        fail(f"{VARS_FILE} is missing: the binary package check did not run in this builder")
    settings = portage.config(clone=portage.settings)
    used, stale = [], []
    for root in roots:
        for cpv, pdir in vdb_entries(root):
            record_text = None
            try:
                if os.stat(pdir).st_mtime < started:
                    continue  # installed before this build (the builder image's own packages)
                with open(os.path.join(pdir, RECORD_KEY), encoding="utf-8") as f:
                    record_text = f.read()
            except OSError:
                pass
            build_id = read_text(os.path.join(pdir, "BUILD_ID"))
            if build_id:
                used.append(f"{cpv}-{build_id}")
            if nonce and read_text(os.path.join(pdir, NONCE_KEY)) == nonce:
                continue  # built from source in this build, with this environment
            recorded = None if record_text is None else parse_record(record_text)
            # The package's metadata as config.setcpv() reads it from a dbapi (the package database's files).
            metadata = {key: read_text(os.path.join(pdir, key)) for key in VDB_KEYS}
            metadata["SLOT"] = metadata["SLOT"] or "0"
            if recorded is None:
                stale.append(f"{cpv} in {root}: merged from a binary package with no recorded build environment")
                continue
            diff = differences(settings, names, recorded, cpv, metadata)
            if diff:
                stale.append(f"{cpv} in {root}: merged from a binary package built with other " + ", ".join(diff))
    record_usage(settings, used)
    if stale:
        fail(
            "these packages came from binary packages built with another environment (another build added them "
            "to the cache while this one ran); run the build again:\n  " + "\n  ".join(stale)
        )
    print(f"staves: every package merged from a binary package has the environment this spec gives it")


def record_usage(settings, used):
    """Remember which instances this build used, for `staves cache prune --keep-last N`."""
    pkgdir = settings.get("PKGDIR", "/var/cache/binpkgs")
    directory = os.path.join(pkgdir, ".staves", "usage")
    try:
        os.makedirs(directory, exist_ok=True)
        stamp = time.time()
        name = f"{int(stamp * 1000):015d}-{os.getpid()}-{os.urandom(4).hex()}.json"
        write_atomically(os.path.join(directory, name), json.dumps({"time": stamp, "instances": sorted(set(used))}))
    except OSError as e:
        sys.stderr.write(f"staves: warning: could not record the packages this build used: {e}\n")


def load_usage(pkgdir):
    directory = os.path.join(pkgdir, ".staves", "usage")
    builds = []
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return builds
    for name in names:
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(directory, name), encoding="utf-8") as f:
                data = json.load(f)
            builds.append((float(data["time"]), set(data["instances"]), name))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    builds.sort(key=lambda b: b[0])
    return builds


def instance_rows(settings, bintree, cache):
    builds = load_usage(bintree.pkgdir)
    last_used = {}
    for when, instances, _ in builds:
        for key in instances:
            last_used[key] = max(when, last_used.get(key, 0))
    rows = []
    for cpv in sorted(bintree.dbapi.cpv_all(), key=str):
        path = bintree.getname(cpv)
        build_id = getattr(cpv, "build_id", None)
        key = f"{cpv}-{build_id}" if build_id else str(cpv)
        use, iuse, build_time = bintree.dbapi.aux_get(cpv, ["USE", "IUSE", "BUILD_TIME"])
        iuse_names = {f.lstrip("+-") for f in iuse.split()}
        recorded = cache.record(settings, bintree.pkgdir, path, cpv)
        try:
            size = os.stat(path).st_size
        except OSError:
            size = 0
        rows.append(
            {
                "cpv": str(cpv),
                "build_id": build_id,
                "path": os.path.relpath(path, bintree.pkgdir),
                "use": sorted(f for f in use.split() if f in iuse_names),
                "fingerprint": None if recorded is None else fingerprint(recorded),
                "environment": recorded,
                "size": size,
                "build_time": int(build_time) if build_time.isdigit() else None,
                "last_used": last_used.get(key),
                "key": key,
            }
        )
    return rows, builds


def cmd_list():
    settings, bintree, cache = open_bintree(writable=False)
    rows, builds = instance_rows(settings, bintree, cache)
    json.dump({"pkgdir": bintree.pkgdir, "builds": len(builds), "packages": rows}, sys.stdout)
    sys.stdout.write("\n")


def cmd_prune(args):
    try:
        options = json.loads(args[0] if args else "{}")
    except ValueError as e:
        fail(f"prune options are not JSON: {e}")
    if not isinstance(options, dict) or (options.get("keep_last") is None) == (options.get("older_than") is None):
        fail("prune needs exactly one of keep_last and older_than")
    keep_last = options.get("keep_last")
    older_than = options.get("older_than")
    dry_run = bool(options.get("dry_run"))
    settings, bintree, cache = open_bintree(writable=not dry_run)
    rows, builds = instance_rows(settings, bintree, cache)
    keep = set()
    if keep_last is not None:
        for _, instances, _ in builds[-keep_last:] if keep_last > 0 else []:
            keep |= instances
    removed, kept = [], []
    by_key = {str(c) if not getattr(c, "build_id", None) else f"{c}-{c.build_id}": c for c in bintree.dbapi.cpv_all()}
    for row in rows:
        if keep_last is not None:
            drop = row["key"] not in keep
        else:
            last = max(row["last_used"] or 0, row["build_time"] or 0)
            drop = last < older_than
        (removed if drop else kept).append(row)
    if not dry_run:
        for row in removed:
            cpv = by_key.get(row["key"])
            if cpv is not None:
                bintree.remove(cpv)
        cache.save([r["path"] for r in kept])
        if keep_last is not None:
            # Usage records older than the ones kept say nothing any more.
            for _, _, name in builds[: max(len(builds) - keep_last, 0)]:
                try:
                    os.remove(os.path.join(bintree.pkgdir, ".staves", "usage", name))
                except OSError:
                    pass
    json.dump({"removed": removed, "kept": len(kept), "dry_run": dry_run}, sys.stdout)
    sys.stdout.write("\n")


BINPKG_SUFFIXES = (".gpkg.tar", ".xpak", ".tbz2")


def walk_pkgdir(pkgdir):
    """(path, size, is a binary package) of every file under PKGDIR."""
    for root, _, files in os.walk(pkgdir):
        for name in files:
            path = os.path.join(root, name)
            try:
                size = os.lstat(path).st_size
            except OSError:
                continue
            yield path, size, name.endswith(BINPKG_SUFFIXES)


def pkgdir_of():
    return portage.settings.get("PKGDIR") or "/var/cache/binpkgs"


def cmd_du():
    pkgdir = pkgdir_of()
    total = files = packages = 0
    for _, size, binary in walk_pkgdir(pkgdir):
        total += size
        files += 1
        packages += binary
    json.dump({"pkgdir": pkgdir, "bytes": total, "files": files, "packages": packages}, sys.stdout)
    sys.stdout.write("\n")


def cmd_clear(args):
    dry_run = args[:1] == ["--dry-run"]
    pkgdir = pkgdir_of()
    total = files = packages = 0
    for path, size, binary in list(walk_pkgdir(pkgdir)):
        if not dry_run:
            try:
                os.remove(path)
            except OSError as e:
                fail(f"cannot remove {path}: {e}")
        total += size
        files += 1
        packages += binary
    if not dry_run:
        for root, dirs, _ in os.walk(pkgdir, topdown=False):
            for name in dirs:
                try:
                    os.rmdir(os.path.join(root, name))
                except OSError:
                    pass
    json.dump({"freed_bytes": total, "files": files, "packages": packages, "dry_run": dry_run}, sys.stdout)
    sys.stdout.write("\n")


# ---------------------------------------------------------------------------------------------------------------
# The direct merge of binary packages into the (empty) rootfs.
#
# Portage merges a binary package in about a second even when nothing of the ebuild runs: it spawns bash for the
# setup, preinst and postinst phases (plus their QA and misc functions) and cleans up after each. For a package
# that defines none of those phases, and a builder with no bashrc hooks and no FEATURES that act in them, those
# spawns do nothing to the files. This merge does what is left, as Portage's dblink does it for an empty ROOT:
# unpack the binary package with Portage's own code, apply INSTALL_MASK with Portage's own code, move the image into
# ROOT (renames: modes, owners, mtimes and hard links are kept), record CONTENTS, COUNTER and the metadata in the
# package database, and run env-update once at the end. Anything else is left to the emerge that runs next (it sees
# the merged packages as installed and merges the rest, or nothing, so Portage itself checks the result).

MERGED_FILE = STATE_DIR + "/rootfs-direct-merged"
# Phases Portage runs for a binary package (pkg_config is never run by emerge; prerm/postrm only on unmerge).
BINARY_PHASES = frozenset("pretend setup preinst postinst".split())
# FEATURES that act during those phases (preinst_sfperms, preinst_suid_scan, preinst_selinux_labels, bsdflags).
PHASE_FEATURES = frozenset("sfperms suidctl selinux chflags".split())
# Without these, Portage strips or compresses at install time (instprep), in bash.
INSTALL_TIME_FEATURES = ("binpkg-dostrip", "binpkg-docompress")
PRETEND_LINE = re.compile(r"^\[(\w+)[^\]]*\]\s+(\S+)\s+to\s+(\S+)")
STAVES_BLOCK = re.compile(r"^# BEGIN staves: .*?^# END staves$", re.S | re.M)


def bashrc_hooks(settings):
    """Why ebuild.sh could do more than the ebuild's own phases for every package (a reason), or None.

    profile.bashrc files and /etc/portage/bashrc (beyond Staves' block) can define phase hooks or change
    INSTALL_MASK in bash; Staves cannot tell what they do without running them, so their presence sends every
    package through Portage. (Per-package bashrcs are checked by package_hooks.)"""
    for profile in getattr(settings, "profiles", ()):
        path = os.path.join(profile, "profile.bashrc")
        if os.path.exists(path):
            return f"the profile has {path}"
    path = os.path.join(settings["PORTAGE_CONFIGROOT"], "etc/portage/bashrc")
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            rest = STAVES_BLOCK.sub("", f.read())
    except OSError:
        rest = ""
    if any(line.strip() and not line.lstrip().startswith("#") for line in rest.splitlines()):
        return f"{path} has lines besides Staves' block"
    return None


def package_hooks(settings, cpv):
    """Why this package's ebuild environment could run more than its phases (a reason), or None. Call after
    settings.setcpv(cpv): a profile.bashrc or package.bashrc that applies to it (config._pbashrc, what Portage
    passes as PORTAGE_BASHRC_FILES), or an /etc/portage/env/CATEGORY/{PN,PN:SLOT,P,PF} hook file (sourced by
    ebuild.sh from PM_EBUILD_HOOK_DIR)."""
    if not hasattr(settings, "_pbashrc"):
        return "this Portage does not say which bashrcs apply to a package"
    bashrcs = [f for f in settings._pbashrc if f]
    if bashrcs:
        return f"{bashrcs[0]} is sourced in its phases"
    category, pn, version, revision = portage.versions.catpkgsplit(str(cpv))
    p = f"{pn}-{version}"
    pf = p if revision == "r0" else f"{p}-{revision}"
    slot = (getattr(cpv, "slot", None) or "0").split("/", 1)[0]
    hook_dir = os.path.join(settings["PORTAGE_CONFIGROOT"], "etc/portage/env", category)
    for name in (pn, f"{pn}:{slot}", p, pf):
        path = os.path.join(hook_dir, name)
        if os.path.isfile(path):
            return f"{path} is sourced in its phases"
    return None


def resolution(path, root, bintree):
    """The binary package instances of the check's `emerge --pretend` output, in merge order, or a reason."""
    by_name = {}
    for cpv in bintree.dbapi.cpv_all():
        build_id = getattr(cpv, "build_id", None)
        by_name[f"{cpv}-{build_id}" if build_id else str(cpv)] = cpv
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None, f"{path} is missing"
    wanted = os.path.normpath(root)
    order = []
    for line in lines:
        m = PRETEND_LINE.match(line)
        if not m:
            continue
        kind, name, target = m.groups()
        if kind != "binary":
            return None, f"the resolution has a [{kind}] entry ({name})"
        if os.path.normpath(target) != wanted:
            return None, f"{name} goes to {target}, not {root}"
        name, _, repo = name.partition("::")
        name = name.split(":", 1)[0]  # the slot, when emerge shows it
        cpv = by_name.get(name)
        if cpv is None or (repo and getattr(cpv, "repo", None) not in (None, repo)):
            return None, f"{name} is not a binary package in {bintree.pkgdir}"
        order.append(cpv)
    if not order:
        return None, "the resolution lists no binary package"
    return order, None


def install_mask(settings):
    """INSTALL_MASK as preinst_mask computes it (FEATURES nodoc/noman/noinfo add their directories)."""
    mask = normalize(settings.get("INSTALL_MASK", ""))
    for f in ("man", "info", "doc"):
        if "no" + f in settings.features:
            mask = (mask + " " + settings["EPREFIX"] + "/usr/share/" + f).strip()
    return mask


def image_entries(image):
    """(relative path, lstat) of everything under `image`, parents before children, sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(image):
        dirnames.sort()
        for name in sorted(dirnames) + sorted(filenames):
            full = os.path.join(dirpath, name)
            out.append((os.path.relpath(full, image), os.lstat(full)))
    out.sort(key=lambda e: e[0].split(os.sep))
    return out


def collision(root, entries):
    """The first path of the image that ROOT already has as something a merge would replace, or None."""
    for rel, st in entries:
        dest = os.path.join(root, rel)
        if not os.path.lexists(dest):
            continue
        if stat.S_ISDIR(st.st_mode) and os.path.isdir(dest):
            continue  # an existing directory (or a symlink to one) is merged into, as Portage does
        return "/" + rel
    return None


def merge_image(image, root, entries):
    """Move the image into ROOT; the CONTENTS lines, in Portage's format."""
    from portage.checksum import perform_md5

    contents = []
    for rel, st in entries:
        src, dest = os.path.join(image, rel), os.path.join(root, rel)
        path = "/" + rel
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            if not os.path.isdir(dest):
                os.mkdir(dest)
                os.chown(dest, st.st_uid, st.st_gid)
                os.chmod(dest, stat.S_IMODE(mode))
            contents.append(f"dir {path}")
        elif stat.S_ISLNK(mode):
            target = os.readlink(src)
            os.rename(src, dest)
            contents.append(f"sym {path} -> {target} {int(os.lstat(dest).st_mtime)}")
        elif stat.S_ISREG(mode):
            md5 = perform_md5(src)
            os.rename(src, dest)
            contents.append(f"obj {path} {md5} {int(os.lstat(dest).st_mtime)}")
        elif stat.S_ISFIFO(mode):
            os.rename(src, dest)
            contents.append(f"fif {path}")
        else:
            os.rename(src, dest)
            contents.append(f"dev {path}")
    return contents


def record_package(root, vardb, cpv, infloc, contents):
    """Write the package database entry the way dblink.treewalk does: the metadata files, COUNTER, CONTENTS."""
    import shutil

    category = cpv.cp.split("/", 1)[0]
    pf = infloc_read(infloc, "PF") or cpv.split("/", 1)[1]
    catdir = os.path.join(root, portage.const.VDB_PATH, category)
    os.makedirs(catdir, exist_ok=True)
    tmp = os.path.join(catdir, "-MERGING-" + pf)
    if os.path.lexists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    for name in os.listdir(infloc):
        src = os.path.join(infloc, name)
        if os.path.isfile(src):
            shutil.copyfile(src, os.path.join(tmp, name))
    with open(os.path.join(tmp, "COUNTER"), "w", encoding="utf-8") as f:
        f.write(f"{vardb.counter_tick()}")
    with open(os.path.join(tmp, "CONTENTS"), "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in contents))
    consolidate = getattr(portage.dbapi.vartree, "_consolidate_to_metadata_file", None)
    if consolidate is not None:
        consolidate(tmp)
    os.rename(tmp, os.path.join(catdir, pf))


def infloc_read(infloc, name):
    return read_text(os.path.join(infloc, name))


def cmd_merge(args):
    import shutil

    if len(args) != 2:
        fail("usage: binpkg-env.py merge ROOT PRETEND_FILE")
    root, pretend = os.path.normpath(args[0]), args[1]
    write_atomically(MERGED_FILE, "")
    os.environ["ROOT"] = root
    try:
        import portage.dbapi.bintree
        import portage.dbapi.vartree
        from portage.util.env_update import env_update  # noqa: F401 (checked here, used below)
        from portage.util.futures import asyncio as pasyncio
        from portage.util.install_mask import InstallMask, install_mask_dir
    except ImportError as e:
        print(f"staves: every package is merged by emerge: this Portage ({portage.VERSION}) lacks {e.name}")
        return
    # The Portage functions the merge calls besides its public ones; Portage 3.0.83 has them all.
    gaps = [
        name
        for owner, name in (
            (pasyncio, "_safe_loop"),
            (portage.config, "_init_dirs"),
            (portage.dbapi.bintree.bindbapi, "unpack_metadata"),
            (portage.dbapi.bintree.bindbapi, "unpack_contents"),
            (portage, "MtimeDB"),
        )
        if not hasattr(owner, name)
    ]
    if gaps:
        print(f"staves: every package is merged by emerge: this Portage ({portage.VERSION}) lacks " + ", ".join(gaps))
        return

    trees = portage.create_trees(target_root=root)
    eroot = next(iter(k for k in trees if os.path.normpath(k) == root), None)
    if eroot is None:
        fail(f"Portage has no tree for {root}")
    # As emerge's load_emerge_config: the directories Portage keeps in every root (tmp, var/lib/portage, ...).
    trees[eroot]["vartree"].settings._init_dirs()
    settings = portage.config(clone=trees[eroot]["vartree"].settings)
    bintree = trees[eroot]["bintree"]
    bintree.populate()
    vardb = trees[eroot]["vartree"].dbapi

    def everything_through_portage(reason):
        print(f"staves: every package is merged by emerge: {reason}")

    reason = bashrc_hooks(settings)
    if reason is None:
        missing = [f for f in INSTALL_TIME_FEATURES if f not in settings.features]
        acting = sorted(f for f in PHASE_FEATURES if f in settings.features)
        if missing:
            reason = "FEATURES lacks " + " ".join(missing) + " (Portage strips or compresses at install time)"
        elif acting:
            reason = "FEATURES has " + " ".join(acting) + " (acts in the preinst phase)"
        elif settings["EPREFIX"]:
            reason = "EPREFIX is set"
    order = None
    if reason is None:
        order, reason = resolution(pretend, root, bintree)
    if reason is not None:
        everything_through_portage(reason)
        return
    if os.stat(os.path.dirname(root) or "/").st_dev != os.stat(settings["PORTAGE_TMPDIR"]).st_dev:
        everything_through_portage(f"{settings['PORTAGE_TMPDIR']} and {root} are on different filesystems")
        return

    loop = pasyncio._safe_loop()
    # Portage loads and stores the preserved-libs registry before every merge (creating its file, under its lock).
    plib_registry = getattr(vardb, "_plib_registry", None)
    workdir = tempfile.mkdtemp(prefix="staves-merge-", dir=settings["PORTAGE_TMPDIR"])
    merged, deferred = [], []
    total = len(order)
    try:
        # Which packages qualify, in merge order.
        candidates = []
        for index, cpv in enumerate(order, 1):
            path = bintree.getname(cpv)
            name = f"{cpv}::{cpv.repo}" if getattr(cpv, "repo", None) else str(cpv)
            phases = set(bintree.dbapi.aux_get(cpv, ["DEFINED_PHASES"])[0].split()) - {"-"}
            settings.setcpv(cpv, mydb=bintree.dbapi)
            if phases & BINARY_PHASES:
                why = "defines pkg_" + ", pkg_".join(sorted(phases & BINARY_PHASES))
            elif portage.binpkg.get_binpkg_format(path) != "gpkg":
                why = "not a gpkg binary package"
            else:
                why = package_hooks(settings, cpv)
            if why is not None:
                deferred.append((name, why))
                continue
            pkgdir = os.path.join(workdir, str(index))
            candidates.append((index, cpv, name, os.path.join(pkgdir, "build-info"), os.path.join(pkgdir, "image")))

        # Unpack them all at once, with Portage's own unpackers (each runs in a forked process).
        async def unpack(cpv, infloc, image):
            os.makedirs(infloc)
            os.makedirs(image)
            await bintree.dbapi.unpack_metadata(cpv, infloc, loop=loop)
            await bintree.dbapi.unpack_contents(cpv, image, loop=loop)

        async def unpack_all():
            futures = [pasyncio.ensure_future(unpack(c[1], c[3], c[4]), loop=loop) for c in candidates]
            for future in futures:
                await future

        try:
            loop.run_until_complete(unpack_all())
        except Exception as e:  # nothing is in the rootfs yet: emerge merges everything
            print(f"staves: every package is merged by emerge: unpacking a binary package failed: {e}")
            return

        # Merge them one by one, in order.
        for index, cpv, name, infloc, image in candidates:
            path = bintree.getname(cpv)
            settings.setcpv(cpv, mydb=bintree.dbapi)
            if infloc_read(infloc, "EPREFIX"):
                deferred.append((name, "built for another EPREFIX"))
                continue
            for key, value in (("CATEGORY", cpv.cp.split("/", 1)[0]), ("PF", cpv.split("/", 1)[1])):
                if not infloc_read(infloc, key):
                    with open(os.path.join(infloc, key), "w", encoding="utf-8") as f:
                        f.write(value + "\n")
            md5 = bintree.dbapi.aux_get(cpv, ["MD5"])[0] or portage.checksum.perform_md5(path)
            with open(os.path.join(infloc, "BINPKGMD5"), "w", encoding="utf-8") as f:
                f.write(f"{md5}\n")
            mask = install_mask(settings)
            if mask:
                with open(os.path.join(infloc, "INSTALL_MASK"), "w", encoding="utf-8") as f:
                    f.write(mask + "\n")
                install_mask_dir(image, InstallMask(mask))
                if any(x in settings.features for x in ("nodoc", "noman", "noinfo")):
                    try:
                        os.rmdir(os.path.join(image, "usr", "share"))
                    except OSError:
                        pass
            entries = image_entries(image)
            clash = collision(root, entries)
            if clash is not None:
                deferred.append((name, f"{clash} is already in the rootfs (Portage decides the collision)"))
                continue
            print(f">>> Emerging binary ({index} of {total}) {name} for {root}/ (merged directly)", flush=True)
            if plib_registry:
                plib_registry.lock()
                try:
                    plib_registry.load()
                    plib_registry.store()
                finally:
                    plib_registry.unlock()
            contents = merge_image(image, root, entries)
            record_package(root, vardb, cpv, infloc, contents)
            merged.append(name)
            shutil.rmtree(os.path.dirname(image), ignore_errors=True)
        if merged:
            mtimedb = portage.MtimeDB(os.path.join(eroot, portage.const.CACHE_PATH, "mtimedb"))
            env_update(
                target_root=root,
                prev_mtimes=mtimedb["ldpath"],
                contents=None,
                env=settings,
                writemsg_level=portage.util.writemsg_level,
            )
            mtimedb.commit()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    write_atomically(MERGED_FILE, "".join(m + "\n" for m in merged))
    print(f"staves: merged {len(merged)} of {total} binary package(s) directly")
    for name, why in deferred:
        print(f"staves: {name} is merged by emerge: {why}")


def main(argv):
    if not argv:
        fail("usage: binpkg-env.py check VAR... | verify ROOT... | list | prune JSON | du | clear [--dry-run] | merge ROOT FILE")
    mode, args = argv[0], argv[1:]
    if mode == "check":
        cmd_check(args)
    elif mode == "verify":
        cmd_verify(args or ["/"])
    elif mode == "list":
        cmd_list()
    elif mode == "prune":
        cmd_prune(args)
    elif mode == "du":
        cmd_du()
    elif mode == "clear":
        cmd_clear(args)
    elif mode == "merge":
        cmd_merge(args)
    else:
        fail(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv[1:])
