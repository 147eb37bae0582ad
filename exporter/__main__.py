import sys

from llm_cost_exporter.cli import main

sys.exit(main())
