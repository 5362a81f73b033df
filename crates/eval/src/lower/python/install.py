# drv's installer of one Python distribution into its own store path, run by
# the pinned interpreter itself (`python -I -c`), with only its standard
# library. Environment: out, src (the wheel or sdist), pythonFile (its name
# on the index); for an sdist, buildBackend, backendPath (one directory a
# line) and buildInputs (installed build requirements); for a wheel with
# compiled code, DRV_LIBC (the closure's C library, for RUNPATH).
#
# A wheel is installed as PEP 427 and PEP 491 say (the layout pip and
# pypa/installer produce): every file checked against RECORD first (hash
# and size; nothing unlisted), `.data/` scheme directories moved to their
# places, console and GUI scripts written from entry_points.txt with this
# interpreter in the shebang, RECORD rewritten with INSTALLER = drv. Byte
# code is compiled with hash-checked .pyc files, so no time stamp enters.
# An sdist is built into a wheel first through its PEP 517 backend.
import base64, compileall, configparser, csv, hashlib, io, os, py_compile, subprocess, sys, zipfile

out = os.environ["out"]
src = os.environ["src"]
file_name = os.environ["pythonFile"]
version = "%d.%d" % sys.version_info[:2]
site = os.path.join(out, "lib", "python" + version, "site-packages")
bindir = os.path.join(out, "bin")


def fail(message):
    sys.stderr.write("drv: %s: %s\n" % (file_name, message))
    sys.exit(1)


def inside(base, rel):
    """base/rel, refusing absolute paths and `..` (a hostile archive)."""
    if rel.startswith("/") or ".." in rel.split("/") or "\\" in rel:
        fail("refusing the member %r: outside the install" % rel)
    return os.path.join(base, rel)


def record_hash(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel():
    """PEP 517: unpack the sdist, import its backend, build_wheel()."""
    work = os.path.join(os.getcwd(), "sdist")
    os.mkdir(work)
    if src.endswith(".zip"):
        with zipfile.ZipFile(src) as z:
            for name in z.namelist():
                inside(work, name)
            z.extractall(work)
    else:
        import tarfile
        with tarfile.open(src) as t:
            for m in t.getmembers():
                inside(work, m.name)
                if not (m.isfile() or m.isdir()):
                    fail("refusing the member %r: only files and directories" % m.name)
            t.extractall(work)
    tops = os.listdir(work)
    tree = os.path.join(work, tops[0]) if len(tops) == 1 and os.path.isdir(os.path.join(work, tops[0])) else work
    os.chdir(tree)
    for p in reversed([p for p in os.environ.get("buildInputs", "").split() if p]):
        sys.path.insert(0, os.path.join(p, "lib", "python" + version, "site-packages"))
    for d in reversed([d for d in os.environ.get("backendPath", "").split("\n") if d]):
        sys.path.insert(0, os.path.join(tree, d))
    module, _, obj = os.environ["buildBackend"].partition(":")
    import importlib
    backend = importlib.import_module(module)
    for part in obj.split(".") if obj else []:
        backend = getattr(backend, part)
    dist = os.path.join(os.path.dirname(work), "dist")
    os.mkdir(dist)
    name = backend.build_wheel(dist)
    sys.path[:] = [p for p in sys.path if not p.startswith(tree)]
    return os.path.join(dist, name)


def install(wheel):
    try:
        z = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile as e:
        fail("not a wheel (zip archive): %s" % e)
    names = [n for n in z.namelist() if not n.endswith("/")]
    infos = [n for n in names if n.count("/") == 1 and n.split("/")[0].endswith(".dist-info") and n.endswith("/WHEEL")]
    if len(infos) != 1:
        fail("not one .dist-info directory with a WHEEL file")
    dist_info = infos[0].split("/")[0]
    data_dir = dist_info[: -len(".dist-info")] + ".data"
    wheel_meta = z.read(dist_info + "/WHEEL").decode()
    if not any(l.strip().startswith("Wheel-Version: 1.") for l in wheel_meta.splitlines()):
        fail("WHEEL does not say Wheel-Version 1.x")

    # RECORD first: every file listed, every listed file present and intact.
    record = {}
    if dist_info + "/RECORD" not in names:
        fail("no %s/RECORD: a wheel lists its files with their hashes" % dist_info)
    for row in csv.reader(io.StringIO(z.read(dist_info + "/RECORD").decode())):
        if row:
            record[row[0]] = row[1:]
    unsigned = {dist_info + "/RECORD", dist_info + "/RECORD.jws", dist_info + "/RECORD.p7s"}
    for n in names:
        if n in unsigned:
            continue
        if n not in record:
            fail("%s is not listed in RECORD" % n)
        digest, size = (record[n] + ["", ""])[:2]
        if not digest:
            fail("RECORD lists %s without a hash" % n)
        data = z.read(n)
        algorithm, _, value = digest.partition("=")
        if algorithm not in ("sha256", "sha384", "sha512"):
            fail("RECORD hashes %s with %r, not sha256 or stronger" % (n, algorithm))
        expected = base64.urlsafe_b64encode(hashlib.new(algorithm, data).digest()).rstrip(b"=").decode()
        if value != expected:
            fail("%s does not match its hash in RECORD" % n)
        if size and int(size) != len(data):
            fail("%s is not the size RECORD says" % n)
    for n in record:
        if n not in names and n not in unsigned:
            fail("RECORD lists %s, which the wheel does not have" % n)

    schemes = {
        "purelib": site,
        "platlib": site,
        "scripts": bindir,
        "headers": os.path.join(out, "include", "python" + version, dist_info.split("-")[0]),
        "data": out,
    }
    installed = []
    for n in sorted(names):
        if n in unsigned:
            continue
        target = None
        if n.startswith(data_dir + "/"):
            scheme, _, rest = n[len(data_dir) + 1 :].partition("/")
            if scheme not in schemes:
                fail("unknown scheme %r in %s" % (scheme, n))
            target = inside(schemes[scheme], rest)
        else:
            target = inside(site, n)
        data = z.read(n)
        mode = (z.getinfo(n).external_attr >> 16) & 0o777
        if target.startswith(bindir + "/") and data.startswith(b"#!python"):
            # PEP 427: `#!python` means the interpreter that installs it.
            _, _, rest = data.partition(b"\n")
            data = b"#!" + sys.executable.encode() + b"\n" + rest
            mode |= 0o755
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as f:
            f.write(data)
        os.chmod(target, 0o755 if mode & 0o111 else 0o644)
        installed.append(target)

    entry_points = os.path.join(site, dist_info, "entry_points.txt")
    if os.path.exists(entry_points):
        cp = configparser.ConfigParser(delimiters=("=",))
        cp.optionxform = str
        cp.read(entry_points, encoding="utf-8")
        for section in ("console_scripts", "gui_scripts"):
            if not cp.has_section(section):
                continue
            for script, ref in sorted(cp.items(section)):
                module, _, attrs = ref.partition(":")
                module, attrs = module.strip(), attrs.split("[")[0].strip()
                if "/" in script or not module:
                    fail("bad entry point %s = %s" % (script, ref))
                if not attrs:
                    fail("entry point %s = %s names no object" % (script, ref))
                # pip's launcher, byte for byte but the interpreter.
                text = (
                    "#!%s\n# -*- coding: utf-8 -*-\nimport re\nimport sys\nfrom %s import %s\n"
                    "if __name__ == \"__main__\":\n"
                    "    sys.argv[0] = re.sub(r\"(-script\\.pyw|\\.exe)?$\", \"\", sys.argv[0])\n"
                    "    sys.exit(%s())\n" % (sys.executable, module, attrs.split(".")[0], attrs)
                )
                target = os.path.join(bindir, script)
                os.makedirs(bindir, exist_ok=True)
                with open(target, "w") as f:
                    f.write(text)
                os.chmod(target, 0o755)
                installed.append(target)

    with open(os.path.join(site, dist_info, "INSTALLER"), "w") as f:
        f.write("drv\n")
    installed.append(os.path.join(site, dist_info, "INSTALLER"))

    # Compiled code finds the closure's C library, not the host's (as
    # nixpkgs' autoPatchelfHook does for prebuilt binaries).
    libc = os.environ.get("DRV_LIBC")
    if libc:
        for path in sorted(installed):
            with open(path, "rb") as f:
                if f.read(4) != b"\x7fELF":
                    continue
            subprocess.run(["patchelf", "--add-rpath", libc + "/lib", path], check=True)

    # Byte code: hash-checked, so the .pyc files do not depend on when the
    # build ran. A file this interpreter cannot compile (wheels carry
    # modules for other versions) is left as source, as pip leaves it.
    if os.path.isdir(site):
        if not compileall.compile_dir(site, quiet=1, invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH, workers=1):
            sys.stderr.write("drv: %s: some modules do not compile for Python %s; they stay source only\n" % (file_name, version))

    # RECORD of what was installed (paths relative to site-packages).
    rows = []
    for root, dirs, files in os.walk(out):
        dirs.sort()
        for fn in sorted(files):
            path = os.path.join(root, fn)
            rel = os.path.relpath(path, site)
            if rel == dist_info + "/RECORD":
                continue
            with open(path, "rb") as f:
                data = f.read()
            rows.append((rel, record_hash(data), str(len(data))))
    rows.append((dist_info + "/RECORD", "", ""))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for r in sorted(rows):
        w.writerow(r)
    with open(os.path.join(site, dist_info, "RECORD"), "w") as f:
        f.write(buf.getvalue())


wheel = src
if not file_name.endswith(".whl"):
    wheel = build_wheel()
install(wheel)
