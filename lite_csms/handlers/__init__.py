"""Domain logic, one module per OCPP functional block.

Every function here is synchronous and runs inside the store writer's group commit, so what it
writes is durable before the station is answered. The version modules call these.
"""
