"""Bad input: the bottom layer, imported by anyone.

Every command raises UsageError for it; cli.main turns it into one line on stderr and exit 2,
before anything is written.
"""

from __future__ import annotations


class UsageError(Exception):
    """What was wrong with the input (a file, an option, a value) and the valid choices."""
