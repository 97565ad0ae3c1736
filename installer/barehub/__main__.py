import sys

from barehub.cli import main

sys.exit(main())
