"""Speed benchmarks of dwpose-ctrl against the alternatives (``python -m benchmarks``)."""
