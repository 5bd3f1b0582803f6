"""Test-session settings shared by every test module."""

import os

# `engine="auto"` would otherwise time the kernels on first use per shape (slow, and the choice would
# depend on the machine's load): tests get the fixed rule; tests/test_autotune.py switches timing on
# with a fake clock and a private cache file.
os.environ.setdefault("LSTMLAB_AUTOTUNE", "0")
