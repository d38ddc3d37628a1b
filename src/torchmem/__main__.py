"""``python -m torchmem ...`` is the ``torchmem`` command."""

from .cli import main

raise SystemExit(main())
