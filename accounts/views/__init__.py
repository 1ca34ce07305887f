"""Views of the accounts app: signing in, the account's security, staff administration."""
