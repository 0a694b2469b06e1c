"""What the command lines share: a usage mistake is one ``error:`` line and exit code 2."""
from __future__ import annotations

import argparse
import sys


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, whose mistakes (an unknown option, a missing value) print one
    ``error:`` line naming the command, like every other bad input, instead of the usage
    block followed by the message."""

    def error(self, message: str):
        one_line = message.replace("\r", "\\r").replace("\n", "\\n")  # an argument may hold a line break
        print(f"error: {one_line} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)
