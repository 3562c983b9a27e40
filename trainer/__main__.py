import sys

from curvewatch.trainer.cli import main

# the checkout's shim: its hints name the command typed here, which only a checkout has
sys.exit(main(prog="python -m trainer"))
