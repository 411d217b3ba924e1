"""dim-desktop benchmarks: `bin/bench [--quick] [--json FILE]` (see docs/performance.md)."""
