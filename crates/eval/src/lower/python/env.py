# drv's Python environment builder, run by the pinned interpreter itself
# (`python -I -c`). Environment: out, python (the interpreter's store
# path), pythonPackages (the installed packages' store paths).
#
# The output is a virtual environment over the interpreter (PEP 405):
# pyvenv.cfg, bin/python* linking to the interpreter, and
# lib/pythonX.Y/site-packages joining the packages' own site-packages with
# symlinks (a directory two packages share becomes a real directory, as
# nixpkgs' buildEnv does). Scripts whose shebang names the interpreter are
# rewritten to name the environment's, so they run inside it; share/ and
# include/ are joined too. Two packages with different files at one path
# are an error naming both.
import os, sys

out = os.environ["out"]
python = os.environ["python"]
packages = os.environ.get("pythonPackages", "").split()
version = "%d.%d" % sys.version_info[:2]
site_rel = os.path.join("lib", "python" + version, "site-packages")


def fail(message):
    sys.stderr.write("drv: python environment: %s\n" % message)
    sys.exit(1)


def same(a, b):
    if os.path.isdir(a) or os.path.isdir(b):
        return False
    with open(a, "rb") as x, open(b, "rb") as y:
        return x.read() == y.read()


def join(source, target):
    """Link every entry of `source` into `target` (a real directory)."""
    for name in sorted(os.listdir(source)):
        s, t = os.path.join(source, name), os.path.join(target, name)
        if not os.path.lexists(t):
            os.symlink(s, t)
            continue
        if os.path.islink(t) and os.path.isdir(t) and os.path.isdir(s) and not os.path.islink(s):
            # Two packages share the directory: make it real, link both in.
            first = os.readlink(t)
            os.unlink(t)
            os.mkdir(t)
            join(first, t)
            join(s, t)
        elif os.path.isdir(t) and not os.path.islink(t) and os.path.isdir(s):
            join(s, t)
        elif not same(os.path.realpath(t), s):
            fail("%s is in two packages with different contents: %s and %s" % (os.path.relpath(t, out), os.path.realpath(t), s))


os.makedirs(os.path.join(out, site_rel))
os.makedirs(os.path.join(out, "bin"))
real = os.path.realpath(os.path.join(python, "bin", "python" + version))
for name in ("python", "python3", "python" + version):
    os.symlink(real, os.path.join(out, "bin", name))
with open(os.path.join(out, "pyvenv.cfg"), "w") as f:
    f.write("home = %s\ninclude-system-site-packages = false\nversion = %s\n" % (os.path.join(python, "bin"), sys.version.split()[0]))

shebang = b"#!" + python.encode() + b"/"
for p in packages:
    for part in (site_rel, "share", "include"):
        source = os.path.join(p, part)
        if os.path.isdir(source):
            target = os.path.join(out, part)
            os.makedirs(target, exist_ok=True)
            join(source, target)
    bindir = os.path.join(p, "bin")
    if not os.path.isdir(bindir):
        continue
    for name in sorted(os.listdir(bindir)):
        s, t = os.path.join(bindir, name), os.path.join(out, "bin", name)
        with open(s, "rb") as f:
            data = f.read()
        if data.startswith(shebang):
            first, _, rest = data.partition(b"\n")
            data = b"#!" + os.path.join(out, "bin", "python" + version).encode() + b"\n" + rest
        if os.path.lexists(t):
            with open(t, "rb") as f:
                if f.read() != data:
                    fail("bin/%s is in two packages with different contents (one of them %s)" % (name, p))
            continue
        with open(t, "wb") as f:
            f.write(data)
        os.chmod(t, 0o755)
