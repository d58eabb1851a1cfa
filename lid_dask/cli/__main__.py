import sys

from lid_dask.cli import main

sys.exit(main())
