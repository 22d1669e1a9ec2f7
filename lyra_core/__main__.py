from lyra_core.cli import main

raise SystemExit(main())
