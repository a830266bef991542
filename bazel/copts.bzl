"""Compiler options for the project's own code: warnings are errors here."""

APPLIANCE_COPTS = [
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wno-unused-parameter",
]
