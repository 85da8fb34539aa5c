"""A plugin whose import fails, to test how the core reports it."""

raise ImportError("this plugin is broken on purpose (needs a library that is not installed)")
