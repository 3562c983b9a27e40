import sys

from curvewatch.trainer.cli import main

sys.exit(main())
