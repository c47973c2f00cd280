from nnopt.cli import main

raise SystemExit(main())
