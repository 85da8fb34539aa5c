"""Test fixtures shared by the core's and the plugins' tests."""

pytest_plugins = ["bridge.testing.fixtures"]
