"""The original papers' experiments as runnable scripts (see the README's Examples section).

Each script has absl flags and a `main(argv)` that tests call, and trains with
`model.fit` and Keras callbacks; `common` holds the flags and the data,
`training` the schedule, callbacks, resume and outputs they share.
"""
