"""Fault tests: network, process, database and load faults, on loopback (issue #9)."""
