"""``python -m dim_actors.devgateway``; also the ``dim-gateway`` console entry point."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
