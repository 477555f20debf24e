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
#
# Exit codes: 0 ok, 1 failure (message on stderr), 97 this Python cannot import Portage (the caller tries another).
import hashlib
import json
import os
import re
import sys
import tempfile
import time

try:
    import portage
    import portage.binpkg
    import portage.gpkg
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


def main(argv):
    if not argv:
        fail("usage: binpkg-env.py check VAR... | verify ROOT... | list | prune JSON | du | clear [--dry-run]")
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
    else:
        fail(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv[1:])
