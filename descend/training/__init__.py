"""Training a classifier, in three rooms and one entry.

- `trainer`: the entry, ``train()``: resolve the settings, plan the run, build it, fit it.
- `planning/`: what a run will be, decided before it starts: the settings resolved from flags,
  file, resumed state and starting weights (`resolve`), the recipe, the probes that time
  steps, the time budget, ``--lr auto``.
- `fitting/`: the epoch loop and what runs inside it: the step (`loop`), the `Run` it works on,
  callbacks, schedules, the cached head, torchrun.
- `keeping/`: a run on disk: its folder, and how it resumes.

Rooms import downward only: keeping < fitting < planning < trainer (tests/test_layers.py).
"""
