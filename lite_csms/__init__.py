"""lite-csms: a lightweight, low-bandwidth OCPP-J Charging Station Management System."""

__version__ = "0.3.0"
