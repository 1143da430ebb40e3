import sys

from calfwd.cli import main

sys.exit(main())
