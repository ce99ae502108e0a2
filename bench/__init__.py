"""Benchmarks of the real connector against the loopback simulators (issue 7). See bench/README.md."""
