"""Experiments that show what the seed teaches: pure functions that return results, plus
plots and tables. The command line (``descend gd``, ``descend optim paths|compare``) wires them.

* `descend.experiments.gd`: BGD, SGD and MBGD side by side (SPEC §1).
* `descend.experiments.paths`: optimizer paths on 2-D test functions (SPEC §2).
* `descend.experiments.compare`: one training per optimizer, curves overlaid (SPEC §2).
"""
