import sys

from semcomm_ros.cli import main

sys.exit(main())
