"""Scripted fault drills against the simulators, used by the tests and bench/fault_table."""
