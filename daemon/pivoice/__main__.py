from pivoice.cli import main

raise SystemExit(main())
