"""Make the function-scoped ``emulator`` fixture available to the emulator's own tests."""

from tests.emulator.fixtures import emulator  # noqa: F401
