import sys

from unlearnlm.cli import main

sys.exit(main())
