"""roar: the science of removal-based attribution benchmarks (no Ray here)."""
__version__ = "0.1.0"
