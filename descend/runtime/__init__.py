"""What every command that runs a model stands on: the device (`device`), the number format
(`precision`), the checkpoint file (`checkpoint`, with `migrate` reading the files an older
descend wrote as today's) and batched inference (`inference`).

It sits below training, evaluation, export, serving and the audit, so that each of them can
load and run a model without importing the trainer.
"""
