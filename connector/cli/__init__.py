"""The command line: parsing, exit codes and process concerns (signals, locks). Business logic lives
elsewhere; only this package imports :mod:`connector.wiring`.
"""
