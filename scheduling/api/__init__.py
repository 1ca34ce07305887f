"""The scheduling REST API (INT-2): slots and appointments, over the same gates, services and audit as the pages."""
