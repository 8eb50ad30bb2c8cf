"""The approval broker: rules (who may ask, who approves), the request lifecycle, the store.

Importing this package imports neither SQLAlchemy nor Azure: `rules` and `lifecycle` are
pure (their schema is jitctl/approvalschema.py); `store` brings in SQLAlchemy only when a
caller imports it.
"""

from __future__ import annotations
