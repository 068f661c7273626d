"""Feature-negotiation experiments over many cells (``vnetbench matrix``): feature sets ×
workloads × device profiles, each cell an emulated pair running one workload, with its
correctness and cost recorded; see docs/experiments.md.

- :mod:`testbench.matrix.cells`: the feature families, valid subsets, the cells;
- :mod:`testbench.matrix.workloads`: the UDP workloads (TCP is testbench/tcp_bulk.py);
- :mod:`testbench.matrix.runner`: one cell, and all of them across processes;
- :mod:`testbench.matrix.selection`: the selection options, shared by the CLI and the suite;
- :mod:`testbench.matrix.outputs`: CSV, JSON, markdown, PNG heatmaps;
- :mod:`testbench.matrix.suite` (with :mod:`testbench.matrix.pytest_matrix`): one pytest
  test per cell, for pytest-xdist; :mod:`testbench.matrix.collect` reads back its records.
"""
