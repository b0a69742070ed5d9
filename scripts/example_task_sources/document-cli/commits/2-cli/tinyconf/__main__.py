import sys

from tinyconf.cli import main

sys.exit(main())
