"""Tests of the command-line tools, run as subprocesses."""
