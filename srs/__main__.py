import sys

from srs.cli import main

sys.exit(main())
