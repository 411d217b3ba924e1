import sys

from dim_actors.app.main import main

sys.exit(main())
