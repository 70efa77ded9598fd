"""The original papers' experiments as runnable scripts (see `examples/README_SECTION.md`).

Each script has absl flags and a `main(argv)` that tests call; `common` holds
the plumbing they share (flags, data, the resumable training loop, outputs).
"""
