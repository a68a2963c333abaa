"""The pure pipeline: fetch, parse, clean, match, render Atom. Never imports `bot`."""
