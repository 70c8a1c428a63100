"""Test helpers imported by the tests as ``tests.helpers.X`` (the repository root is on pytest's pythonpath).

:mod:`.plumbing`: the runtime's PLUMBING fixture model (real I/O contract, not a face model), blob frames and
videos, a blob detector. :mod:`.tiny_aligner`: a tiny torch model with the real model's output contract, for
the export tests (needs torch).
"""
