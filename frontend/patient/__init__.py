"""The patient's own pages under /mine/: consents, who opened my record, data-protection requests and export."""
