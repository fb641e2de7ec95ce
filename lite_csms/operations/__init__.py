"""Remote operations: one version-neutral request, translated per OCPP version.

Each operation builds the CALL for the station's version and, where the answer teaches us
something (a configuration value), records it.
"""
