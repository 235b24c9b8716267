import sys

from nbmill.cli import main

sys.exit(main())
