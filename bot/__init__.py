"""wirewatch, the application: settings, store, schedule, feed server, Telegram, command line."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("wirewatch")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
