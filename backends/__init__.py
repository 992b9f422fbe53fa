"""Code generators, one folder per target. Imported lazily by the runtime."""
TARGETS = ("cpu", "cuda", "cuda-sim")
