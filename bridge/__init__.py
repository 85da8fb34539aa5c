"""fin2mqtt: bridges finance platforms to MQTT."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fin2mqtt")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
