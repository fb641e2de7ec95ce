from lite_csms.cli.main import main

raise SystemExit(main())
