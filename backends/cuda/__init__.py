"""The cuda backend: kernel IR -> CUDA C (codegen) -> cubin/PTX through nvcc (compiler).

``sim`` runs the same CUDA C on the CPU ("cuda-sim"), so CI checks generated kernels without a
GPU. Nothing here imports pycuda (or any CUDA driver binding) at import time.
"""
from __future__ import annotations

from .codegen import CudaModule, Launch, launch_config, render_kernel, render_module
from .compiler import compile_cuda, find_nvcc

__all__ = ["CudaModule", "Launch", "launch_config", "render_kernel", "render_module",
           "compile_cuda", "find_nvcc"]
