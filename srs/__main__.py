import sys

from srs.cli.main import main

sys.exit(main())
