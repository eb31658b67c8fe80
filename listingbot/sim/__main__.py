"""``python -m listingbot.sim``: the same as ``listingbot sim``."""

from listingbot.sim.cli import main

raise SystemExit(main())
