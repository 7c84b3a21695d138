from tram.cli import main

raise SystemExit(main())
