import sys

from recommend import main

sys.exit(main())
