"""The admin HTTP API: Starlette served by Hypercorn's trio worker, in the CSMS process."""
