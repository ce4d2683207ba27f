"""Arrays stay arrays: array parameters and data, matrix products, layers, reductions.

The array path of the pipeline: :mod:`graph` (the node DAG), :mod:`ops` (notation),
:mod:`autodiff` (exact reverse mode and tangents on whole arrays), :mod:`problem` (validation and
packing), :mod:`codegen` (module text: BLAS calls and fused loops), :mod:`kernel` (the compiled
:class:`ArrayKernel`).
"""
