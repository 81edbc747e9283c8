import sys

from invoke_shell.cli import main

sys.exit(main())
