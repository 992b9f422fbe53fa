"""Sessions, execution plans, executables and artifacts."""
