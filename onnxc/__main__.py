"""Lets ``python -m onnxc`` work like the ``onnxc`` command."""
from onnxc.cli import main

raise SystemExit(main())
