"""What a plugin implements against: the provider base, connection specs, parse helpers."""
