"""Utilities every layer may use: user-facing errors, atomic file writes, where files live."""
