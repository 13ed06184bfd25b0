import sys

from sksurvfusion.cli import main

sys.exit(main())
