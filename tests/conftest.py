"""Shared fixtures. The emulator fixtures live with the emulator."""

from tests.emulator.fixtures import emulator, emulator_url  # noqa: F401
