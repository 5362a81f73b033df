"""Which interpreter runs this test: exactly the pinned CPython, from the store."""

import os
import platform
import sys


def test_version_is_the_pinned_one():
    assert sys.version_info[:3] == (3, 11, 2)
    assert platform.python_implementation() == "CPython"


def test_interpreter_lives_in_the_store():
    store = os.environ.get("NIX_STORE", "/store")
    assert sys.executable.startswith(store + "/"), sys.executable
    assert os.path.realpath(sys.executable).startswith(store + "/")
    assert sys.prefix.startswith(store + "/")


def test_no_host_site_packages():
    store = os.environ.get("NIX_STORE", "/store")
    for entry in sys.path:
        if entry and "site-packages" in entry:
            assert entry.startswith(store + "/"), entry
