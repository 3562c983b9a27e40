import sys

from curvewatch.commands import SHELL_TRAINER

from .cli import main

sys.exit(main(prog=SHELL_TRAINER))
