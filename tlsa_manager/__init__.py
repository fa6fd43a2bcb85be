"""tlsa-manager: DANE TLSA records for mail servers that survive every renewal."""

__version__ = "0.1.0"
