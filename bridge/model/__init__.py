"""The normalized event model, Home Assistant entity specs, and the error tree."""
